"""The service flags shared by the client's commands, declared once (``--depth-addr`` ... ``--device``).

``@service_options(...)`` on a typer command adds the flags the command takes to its signature, in one
fixed order, just before its output flags (``--quiet`` / ``--json`` / ``--verbose``), and calls the
command with them gathered into ``services: Services`` (objvid.client.connect). The flags, their help and
their environment variables (``OBJVID_CLIENT_<FLAG>``) come from ``cli_options``, so every command's
``--help`` lists them the same way.

    @app.command()
    @service_options(triton=False)
    def render(image: o.Image = None, ..., services: Services = None, quiet: o.Quiet = False): ...
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable

from objvid.client import cli_options as o
from objvid.client.connect import Services
from objvid.client.stack import DEFAULT_DEPTH_MODEL

#: flag parameter -> (typer annotation, default), in the order ``--help`` lists them.
SERVICE_FLAGS: dict[str, tuple[object, object]] = {
    "depth_addr": (o.DepthAddr, None),
    "cache_addr": (o.CacheAddr, None),
    "triton_addr": (o.TritonAddr, None),
    "token": (o.Token, None),
    "tls_ca": (o.TlsCa, None),
    "tls_cert": (o.TlsCert, None),
    "tls_key": (o.TlsKey, None),
    "allow_insecure_token": (o.AllowInsecureToken, False),
    "connect_timeout": (o.ConnectTimeout, None),
    "depth_model": (o.DepthModel, DEFAULT_DEPTH_MODEL),
    "gen3c_weights": (o.Weights, None),
    "device": (o.Device, "auto"),
}
#: The command parameters the service flags are listed before (the first one the command has).
OUTPUT_FLAGS = ("quiet", "as_json", "verbose")


def service_flags(*, cache: bool = True, triton: bool = True, mtls: bool = True) -> list[str]:
    """The flag parameters of a command: all but the cache address (``cache=False``), the Triton address and
    GEN3C weights (``triton=False``), the client certificate and plaintext-token opt-in (``mtls=False``)."""
    skip = set()
    if not cache:
        skip.add("cache_addr")
    if not triton:
        skip |= {"triton_addr", "gen3c_weights"}
    if not mtls:
        skip |= {"tls_cert", "tls_key", "allow_insecure_token"}
    return [name for name in SERVICE_FLAGS if name not in skip]


def service_options(*, cache: bool = True, triton: bool = True, mtls: bool = True) -> Callable:
    """Decorator: the command gets the service flags (see :func:`service_flags`) as ``services``."""
    names = service_flags(cache=cache, triton=triton, mtls=mtls)

    def decorate(command: Callable) -> Callable:
        sig = inspect.signature(command, eval_str=True)
        if "services" not in sig.parameters:
            raise TypeError(f"{command.__name__}: a @service_options command takes `services`")
        own = [p for p in sig.parameters.values() if p.name != "services"]
        flags = [
            inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=SERVICE_FLAGS[n][1], annotation=SERVICE_FLAGS[n][0])
            for n in names
        ]  # fmt: skip
        at = next((i for i, p in enumerate(own) if p.name in OUTPUT_FLAGS), len(own))
        kw = inspect.Parameter.KEYWORD_ONLY
        params = [p.replace(kind=kw) for p in own[:at]] + flags + [p.replace(kind=kw) for p in own[at:]]

        @functools.wraps(command)
        def wrapper(**kwargs):
            services = Services(**{n: kwargs.pop(n) for n in names})
            return command(services=services, **kwargs)

        wrapper.__signature__ = sig.replace(parameters=params)
        wrapper.__annotations__ = {p.name: p.annotation for p in params}
        return wrapper

    return decorate
