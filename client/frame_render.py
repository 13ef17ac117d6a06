"""Per-frame ``Render`` calls, over shared memory when the cache server runs on this host.

``transport``:
- ``"auto"`` (default): a loopback cache address (127.0.0.0/8, ``localhost``, ``[::1]``, ``unix:``) tries
  the shared-memory path: each calling thread owns a region in /dev/shm (:class:`objvid.runtime.shm.ClientRegion`),
  names it in ``RenderRequest.shm``, and the server writes the frame there (no 7 MB response through
  gRPC). When the server cannot use the region (another host or container: ``INVALID_ARGUMENT`` naming
  ``shm.name`` / ``shm.key``) or /dev/shm is unusable here, the renderer falls back to gRPC bytes for good.
  A frame larger than the region grows it once and retries.
- ``"shm"``: shared memory or the error; ``"grpc"``: always bytes over gRPC.

Both paths decode the same serialized ``RenderResponse`` with ``decode_frame_bytes``, so the arrays are
equal bit for bit. ``copy=False`` returns views of the thread's region, valid until that thread's next
``render`` (the default copies them).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable

import grpc

from objvid.client.calls import service_error
from objvid.client.frames import RenderedFrame, frame_from_bytes
from objvid.runtime import shm
from objvid.v1 import cache_pb2

log = logging.getLogger("objvid.client")

TRANSPORTS = ("auto", "shm", "grpc")
_NEEDS = re.compile(r"frame needs (\d+) bytes")


def is_loopback(address: str) -> bool:
    """True for cache addresses on this host (where /dev/shm is shared with the server, unless containers
    separate them: the negotiation then falls back)."""
    host = address.rsplit(":", 1)[0].strip("[]") if not address.startswith("unix:") else "unix"
    return host in ("unix", "localhost", "::1") or host.startswith("127.")


class FrameRenderer:
    """``Render`` calls on ``channel`` with the transport negotiated (see module docstring)."""

    def __init__(self, channel: grpc.Channel, address: str, metadata, timeout: float,
                 transport: str = "auto", connect: Callable[[], None] | None = None,
                 slots_hint: int = 2):  # fmt: skip
        if transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {', '.join(TRANSPORTS)}, got {transport!r}")
        self._channel, self._metadata, self.timeout = channel, metadata, timeout
        self._connect = connect  # waits until the server accepts calls (the SDK's Connections)
        self._call = channel.unary_unary(
            "/objvid.v1.CacheService/Render",
            request_serializer=cache_pb2.RenderRequest.SerializeToString,
            response_deserializer=None,  # raw bytes: the zero-copy frame decoder reads them
        )
        self.requested = transport
        self.use_shm = transport == "shm" or (transport == "auto" and is_loopback(address))
        self.slots_hint = slots_hint
        self._local = threading.local()
        self._regions: list[shm.ClientRegion] = []
        self._lock = threading.Lock()

    @property
    def transport(self) -> str:
        """The transport in use now: ``"shm"`` or ``"grpc"``."""
        return "shm" if self.use_shm else "grpc"

    def _region(self, need: int) -> shm.ClientRegion:
        region = getattr(self._local, "region", None)
        if region is not None and region.capacity >= need:
            return region
        new = shm.ClientRegion(need)
        with self._lock:
            if region is not None:
                self._regions.remove(region)
                region.close()
            self._regions.append(new)
        self._local.region = new
        return new

    def render(self, request: cache_pb2.RenderRequest, copy: bool = True) -> RenderedFrame:
        """One ``Render`` call (``request.shm`` is filled here) -> RenderedFrame (index 0)."""
        if self._connect is not None:
            self._connect()
        if self.use_shm:
            frame = self._render_shm(request, copy)
            if frame is not None:
                return frame
        try:
            data = self._call(request, timeout=self.timeout, metadata=self._metadata)
        except grpc.RpcError as err:
            raise service_error("cache", "Render", err) from None
        return frame_from_bytes(data, 0, "Render")

    def _render_shm(self, request: cache_pb2.RenderRequest, copy: bool) -> RenderedFrame | None:
        cam = request.camera
        need = shm.frame_bytes_estimate(cam.width, cam.height, self.slots_hint, request.options)
        for _ in range(3):
            try:
                region = self._region(need)
            except OSError as exc:
                return self._give_up(f"cannot create a region in {shm.SHM_DIR} ({exc.strerror})")
            req = cache_pb2.RenderRequest()
            req.CopyFrom(request)
            req.shm.name, req.shm.size, req.shm.key = region.name, region.size, region.key
            try:
                data = self._call(req, timeout=self.timeout, metadata=self._metadata)
            except grpc.RpcError as err:
                details = err.details() or ""
                if err.code() != grpc.StatusCode.INVALID_ARGUMENT or not details.startswith("shm."):
                    raise service_error("cache", "Render", err) from None
                grow = _NEEDS.search(details)
                if details.startswith("shm.size") and grow:
                    need = int(grow.group(1))
                    continue
                if self.requested == "shm":
                    raise service_error("cache", "Render", err) from None
                return self._give_up(details)
            nbytes = shm.response_shm_bytes(data)
            if nbytes == 0:  # a server without the shared-memory transport answered with the frame itself
                self._give_up("the server ignores RenderRequest.shm")
                return frame_from_bytes(data, 0, "Render")
            frame = frame_from_bytes(region.view(nbytes), 0, "Render(shm)")
            if copy:
                for name in ("rgb", "mask", "depth", "object_mask"):
                    arr = getattr(frame, name)
                    if arr is not None and not arr.flags.owndata:
                        setattr(frame, name, arr.copy())
            return frame
        return self._give_up("the frame outgrew the region three times")

    def _give_up(self, why: str) -> None:
        if self.requested == "shm":
            raise ValueError(f"shared-memory transport unavailable: {why}")
        log.info("event=render_shm_fallback reason=%r", why)
        self.use_shm = False
        return None

    def close(self) -> None:
        with self._lock:
            for region in self._regions:
                region.close()
            self._regions.clear()
