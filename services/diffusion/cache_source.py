"""The diffusion model fetches a chunk's renders from the cache service itself (issue 18: no detour).

Without it, a chunk's renders travel cache -> client -> Triton: for a 2-slot 121-frame 704x1280 chunk
~1.1 GB into the client and ~0.9 GB out again. With a ``RENDER_SOURCE`` input (a serialized
``objvid.v1.RenderSource``: scene id, cameras, render options) instead of RENDERS + MASKS, the model's
adapter calls the cache's ``RenderTrajectory`` directly, asking only for rgb + bit-packed masks (no
object masks, no depth), and the client sends a few kilobytes.

The cache address comes from the server's configuration, never from the request (a request must not
make the model connect anywhere it likes): the Triton model parameter ``cache_address`` (and
``cache_token``), else the environment variables ``OBJVID_DIFFUSION_CACHE_ADDRESS`` /
``OBJVID_DIFFUSION_CACHE_TOKEN`` (PyTriton server and python-backend alike). Or, for a cache started
beside the model with ``--port 0`` (the client's local stack starts both in parallel), the cache's ready
file: model parameter ``cache_ready_file`` / ``OBJVID_DIFFUSION_CACHE_READY_FILE``, read when a
RENDER_SOURCE request arrives; its host must be loopback (the file names a local server, never another
machine). Neither set: RENDER_SOURCE is refused with INVALID_ARGUMENT ("no cache address").
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from objvid.v1 import cache_pb2, diffusion_pb2

ADDRESS_ENV, TOKEN_ENV = "OBJVID_DIFFUSION_CACHE_ADDRESS", "OBJVID_DIFFUSION_CACHE_TOKEN"
READY_FILE_ENV = "OBJVID_DIFFUSION_CACHE_READY_FILE"
#: Hosts a ready file may name (it points at a server on this machine).
LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass
class CacheSource:
    """Where the model fetches renders: a cache gRPC address (host:port, plaintext or ``tls_ca``), or
    ``ready_file``: the JSON a local cache server writes once it listens (``{"host", "port", ...}``),
    read at each fetch (the cache may still be starting when the model is)."""

    address: str
    token: str | None = None
    tls_ca: bytes | None = None
    timeout_per_frame: float = 5.0
    ready_file: str = ""

    @classmethod
    def from_config(cls, params: dict | None = None) -> CacheSource | None:
        """From model parameters ``cache_address`` / ``cache_token`` / ``cache_ready_file``, else the
        environment; an address wins over a ready file; None if neither is set."""
        params = params or {}
        token = params.get("cache_token") or os.environ.get(TOKEN_ENV) or None
        address = params.get("cache_address") or os.environ.get(ADDRESS_ENV, "")
        if address:
            return cls(address, token)
        ready = params.get("cache_ready_file") or os.environ.get(READY_FILE_ENV, "")
        return cls("", token, ready_file=ready) if ready else None

    def resolve(self) -> str:
        """The cache address: ``address``, or host:port from ``ready_file`` (RuntimeError when it is not
        there yet or names a non-loopback host)."""
        if self.address:
            return self.address
        try:
            info = json.loads(Path(self.ready_file).read_text())
            host, port = str(info.get("host") or "127.0.0.1"), int(info["port"])
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise RuntimeError(
                f"RENDER_SOURCE: the cache ready file {self.ready_file} is not readable: {err}"
            ) from None
        if host not in LOOPBACK or not 0 < port < 65536:
            raise RuntimeError(
                f"RENDER_SOURCE: the cache ready file {self.ready_file} names {host}:{port}; only a loopback "
                f"host ({', '.join(LOOPBACK)}) is accepted"
            )
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def fetch(self, source: diffusion_pb2.RenderSource) -> tuple[np.ndarray, np.ndarray]:
        """Render ``source`` on the cache: (renders (T, N, H, W, 3) uint8, masks (T, N, H, W) uint8 0/1).

        ValueError naming ``RENDER_SOURCE.<field>`` for a bad source; the cache's own refusals
        (unknown scene, bad camera) come back as ValueError with its message.
        """
        import grpc

        from objvid.runtime import channels, wire
        from objvid.runtime.frames import decode_frame_bytes

        if not source.scene_id:
            raise ValueError("RENDER_SOURCE.scene_id: missing")
        if not source.cameras:
            raise ValueError("RENDER_SOURCE.cameras: empty (one camera per frame)")
        options = cache_pb2.RenderOptions()
        options.CopyFrom(source.options)
        del options.outputs[:]
        options.outputs.extend([cache_pb2.RENDER_OUTPUT_RGB, cache_pb2.RENDER_OUTPUT_MASK])
        options.encoding = cache_pb2.IMAGE_ENCODING_RAW
        options.pack_masks = True
        request = cache_pb2.RenderTrajectoryRequest(
            scene_id=source.scene_id, cameras=source.cameras, options=options,
            start_frame=source.start_frame, object_tracks=source.object_tracks,
        )  # fmt: skip
        address = self.resolve()
        channel = channels.make_channel(address, tls_ca=self.tls_ca)
        try:
            stream = channel.unary_stream(
                "/objvid.v1.CacheService/RenderTrajectory",
                request_serializer=cache_pb2.RenderTrajectoryRequest.SerializeToString,
                response_deserializer=None,
            )
            total = len(source.cameras)
            renders = masks = None
            got = 0
            try:
                for data in stream(request, timeout=30 + self.timeout_per_frame * total,
                                   metadata=wire.bearer_metadata(self.token)):  # fmt: skip
                    frame = decode_frame_bytes(data, "RenderTrajectory")
                    if renders is None:
                        n, h, w = frame["mask"].shape
                        renders = np.empty((total, n, h, w, 3), np.uint8)
                        masks = np.empty((total, n, h, w), np.uint8)
                    renders[frame["index"]] = frame["rgb"]
                    masks[frame["index"]] = frame["mask"]
                    got += 1
            except grpc.RpcError as err:
                code = err.code()
                reason = f"RENDER_SOURCE: the cache at {address} answered {code.name}: {err.details()}"
                if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND):
                    raise ValueError(reason) from None
                raise RuntimeError(reason) from None
            if got != total:
                raise RuntimeError(f"RENDER_SOURCE: the cache sent {got} of {total} frames")
            return renders, masks
        finally:
            channel.close()


def decode_source(value) -> diffusion_pb2.RenderSource:
    """RENDER_SOURCE tensor ([1] BYTES) -> RenderSource (ValueError naming the input when malformed)."""
    array = np.asarray(value, dtype=object).reshape(-1)
    if array.size != 1:
        raise ValueError(f"RENDER_SOURCE must hold exactly one element, got {array.size}")
    raw = array[0]
    if isinstance(raw, str):
        raw = raw.encode()
    if not isinstance(raw, bytes | bytearray):
        raise ValueError("RENDER_SOURCE must be BYTES (a serialized objvid.v1.RenderSource)")
    try:
        return diffusion_pb2.RenderSource.FromString(bytes(raw))
    except Exception as err:  # noqa: BLE001 - protobuf's DecodeError
        raise ValueError(f"RENDER_SOURCE is not a serialized objvid.v1.RenderSource: {err}") from None
