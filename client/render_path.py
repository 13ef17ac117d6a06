"""How a chunk's renders reach the diffusion model (``generate --render-source auto|on|off``, issue 18).

``client`` path (``off``, as before): the client sends the renders it streamed from the cache as RENDERS +
MASKS (~875 MB per 2-slot 121-frame 704x1280 chunk). ``direct`` path (``on``): the client sends a
``RenderSource`` (scene id + cameras + render options, a few KB) and the model fetches the renders from
its own cache (``objvid.diffusion.cache_source``). Either way the client still streams the chunk's renders
itself: its outputs need them (the first frame, renders.mp4, the masks npz, the fidelity stage, the
scene update's object mask), so the outputs are the same on both paths.

``auto`` (default) tries the direct path: the local stack wires its diffusion server to its cache
(``objvid.client.stack.wire_cache``); a remote Triton is tried once. Not with the local stack's
``preview`` model: on the direct path the cache renders each chunk twice (once for the client's outputs,
once for the model), which on a GPU costs ~0.6 s per chunk against ~1 s of upload saved, but with the
CPU preview stack (the demo, tests) costs a whole CPU render to save a localhost copy. A refusal about RENDER_SOURCE
(no cache address, a cache that does not know the scene, a server without the input) comes back before
the model starts, and the client, which holds the renders anyway, resends the chunk on the client path
and stays on it for the rest of the run (the reason goes to the manifest). ``on`` turns that refusal into
the run's error, naming the flag.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from objvid.client.errors import ObjvidError, ServiceError
from objvid.client.triton import input_bytes
from objvid.v1 import diffusion_pb2

log = logging.getLogger("objvid.client.render_path")

#: What every RENDER_SOURCE refusal of the server names (``objvid.diffusion.triton_io`` /
#: ``cache_source``; Triton's own "unexpected input" of an older model names the input too).
REFUSAL_MARK = "RENDER_SOURCE"


def refused(err: ServiceError) -> bool:
    """True when the model refused the request's RENDER_SOURCE (before generating anything)."""
    return REFUSAL_MARK in err.details


class RenderPath:
    """Per run: which path each chunk takes. ``mode``: auto | on | off; ``services``: the manifest's
    services record (``model_cache`` is set when the local stack wired the model to its cache);
    ``backend``: the Triton model name."""

    def __init__(self, mode: str, services: dict, backend: str | None = None):
        self.mode = mode
        self.wired = services.get("model_cache") == "local stack"
        local_preview = self.wired and backend == "preview"  # see the module doc
        self.direct = mode == "on" or (mode == "auto" and not local_preview)
        self.fallback: str | None = None  # why auto left the direct path

    def record(self) -> dict:
        """The manifest's ``render_path`` record."""
        out = {"mode": self.mode, "model_cache": "local stack" if self.wired else "server configuration"}
        if self.fallback:
            out["fallback"] = self.fallback
        return out

    def send(self, client, model: str, first: np.ndarray, rgb: np.ndarray, mask: np.ndarray,
             options: diffusion_pb2.GenerateOptions, source: Callable[[], diffusion_pb2.RenderSource],
             on_progress=None) -> tuple[np.ndarray, diffusion_pb2.GenerateProgress | None, dict]:  # fmt: skip
        """One chunk to the model -> (video (T, H, W, 3) uint8, the last progress message, the chunk's
        record: ``render_path`` "direct" | "client", ``bytes_to_model`` (tensor bytes of every request sent
        for it, a refused direct try included)). rgb (T, N, H, W, 3) / mask (T, N, H, W) uint8: the
        client's renders (sent on the client path only); ``source()``: the same renders by reference."""
        sent = 0
        if self.direct:
            src = source()
            sent += input_bytes(first, None, None, options, src)
            try:
                video, last = client.generate_chunk(model, first, None, None, options, on_progress, src)
                return video, last, {"render_path": "direct", "bytes_to_model": sent}
            except ServiceError as err:
                if not refused(err):
                    raise
                if self.mode == "on":
                    raise ObjvidError("diffusion", f"--render-source on: the model cannot fetch the renders "
                                                   f"itself: {err.details} (--render-source auto or off sends "
                                                   "them from the client)") from None  # fmt: skip
                self.direct, self.fallback = False, err.details
                log.info("event=render_path_fallback reason=%r", err.details)
        video, last = client.generate_chunk(model, first, rgb, mask, options, on_progress)
        sent += input_bytes(first, rgb, mask, options)
        return video, last, {"render_path": "client", "bytes_to_model": sent}
