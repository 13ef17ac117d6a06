"""objvid.cache: GPU-resident GEN3C-style 3D cache with objects, and its renderers (core library).

Public API: ``Scene``, ``RenderOutput``, ``ObjectNotFoundError``; loaders in ``objvid.cache.io``
(``load_object``); placement in ``objvid.cache.placement``; checks in ``objvid.cache.validate``.
See docs/renderer.md.
"""

from .render_common import RenderOutput
from .scene import ObjectNotFoundError, Scene

__all__ = ["Scene", "RenderOutput", "ObjectNotFoundError"]
