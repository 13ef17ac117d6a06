"""objvid client: the ``objvid-client`` CLI and the Python SDK.

from objvid.client import ObjvidClient, GenerateConfig, generate
"""

from objvid.client.calls import Deadlines, RetryPolicy
from objvid.client.errors import ObjvidError, ServiceError
from objvid.client.frames import LiftedView, RenderedFrame
from objvid.client.pipeline import GenerateConfig, Reporter, generate, lift, render
from objvid.client.sdk import ObjvidClient
from objvid.client.session import SceneSession
from objvid.client.stack import LocalStack, StackConfig

__all__ = [
    "Deadlines",
    "GenerateConfig",
    "LiftedView",
    "LocalStack",
    "ObjvidClient",
    "ObjvidError",
    "RenderedFrame",
    "Reporter",
    "RetryPolicy",
    "SceneSession",
    "ServiceError",
    "StackConfig",
    "generate",
    "lift",
    "render",
]
