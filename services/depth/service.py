"""The ``objvid.v1.DepthService`` servicer: decode, lift with GEN3C's conventions, encode.

Threads: a gRPC thread per request validates and decodes (a batch's images in parallel on the decode pool),
hands each micro-batch to the one inference thread (``inference.py``: upload, MoGe, GEN3C post-processing,
downloads started), waits for the downloads and encodes. So while one request's model call runs, other
requests decode, download and encode.

Errors (the server keeps serving after each): empty batch, a missing/corrupt/non-image entry, bad sizes
-> INVALID_ARGUMENT naming the field (``images[i]``, ``width``...); an image or working size above
``max_pixels``, a batch above ``max_images`` or ``max_request_pixels`` (all images together, read from
their headers before any is decoded: a 116 KB PNG can hold 36 M pixels), or a request that would take
the process over its host-memory budget (``objvid.runtime.memguard``) -> RESOURCE_EXHAUSTED; a request
that is not a LiftRequest -> INVALID_ARGUMENT; model still loading -> UNAVAILABLE;
device out of memory -> RESOURCE_EXHAUSTED; anything unexpected -> INTERNAL (``objvid.serving.status``:
one log line, the traceback at debug level).
"""

from __future__ import annotations

import io
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import grpc
import numpy as np
import torch

from objvid.depth import lift
from objvid.depth.encode import build_response, encode_response
from objvid.depth.inference import InferenceThread
from objvid.depth.metrics import DepthMetrics
from objvid.runtime import protowire, wire
from objvid.runtime.errors import Cancelled, InvalidArgument, ResourceExhausted, Unavailable
from objvid.runtime.requests import BadRequest, lenient
from objvid.runtime.requests import check as check_request
from objvid.serving import status
from objvid.v1 import depth_pb2, depth_pb2_grpc, types_pb2

log = logging.getLogger("objvid.depth.service")

SERVICE_NAME = "objvid.v1.DepthService"


@dataclass(frozen=True)
class LiftSettings:
    """Server-side lifting defaults and limits.

    working_hw / infer_hw: (H, W) defaults (GEN3C: 704x1280 / 720x1280). max_pixels: limit on input images
    and on the working size (H * W). max_images: images per request. max_request_pixels: decoded pixels of
    all images of one request together. micro_batch: images per model call.
    """

    working_hw: tuple[int, int] = lift.GEN3C_WORKING_HW
    infer_hw: tuple[int, int] = lift.GEN3C_INFER_HW
    max_pixels: int = 40_000_000
    max_images: int = 32
    max_request_pixels: int = 72_000_000
    micro_batch: int = 4


#: Host bytes a request holds per input pixel while decoding and resizing (RGB, Pillow's copy, the resize).
HOST_BYTES_PER_PIXEL = 12


@dataclass
class _Decoded:
    """One decoded image: ``rgb`` (h, w, 3) uint8 already at ``infer_hw``; ``working_hw`` its output size."""

    rgb: np.ndarray
    infer_hw: tuple[int, int]
    working_hw: tuple[int, int]


def _peek_size(data: bytes, name: str) -> tuple[int, int]:
    """(H, W) from an encoded image's header, without decoding the pixels."""
    from PIL import Image as PILImage

    if not data:
        raise InvalidArgument(f"{name}: empty image bytes")
    try:
        with PILImage.open(io.BytesIO(data)) as im:
            w, h = im.size
    except PILImage.DecompressionBombError as exc:
        raise ResourceExhausted(f"{name}: {exc}") from None
    except Exception as exc:  # PIL raises several types for garbage
        raise InvalidArgument(f"{name}: not a decodable image ({type(exc).__name__}: {exc})") from None
    return h, w


class DepthServicer(depth_pb2_grpc.DepthServiceServicer):
    """Lift servicer. ``set_model`` once loaded; until then Lift answers UNAVAILABLE."""

    def __init__(
        self,
        settings: LiftSettings | None = None,
        metrics: DepthMetrics | None = None,
        decode_threads: int = 4,
        host_guard=None,
    ):
        from objvid.runtime.memguard import HostMemoryGuard

        self.settings = settings or LiftSettings()
        self.host_guard = host_guard or HostMemoryGuard(0)
        self.metrics = metrics or DepthMetrics()
        self._model = None
        self.geometry_model = None  # objvid.depth.geometry.GeometryModel for LiftViews (optional)
        self._pool = ThreadPoolExecutor(max_workers=max(1, decode_threads), thread_name_prefix="depth-decode")
        self.inference = InferenceThread()

    @property
    def model(self):
        return self._model

    def set_model(self, model) -> None:
        """``model``: callable (B, 3, h, w) float [0, 1] -> ``lift.Prediction``, with ``device`` and ``name``."""
        self._model = model

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.inference.close()

    def warm_up(self, model, batch_sizes) -> float:
        """Lift gray images at the default sizes for each of ``batch_sizes`` on the inference thread, so
        that requests find cuDNN's plans tuned there; returns the seconds it took."""
        s = self.settings
        gray = np.full((*s.infer_hw, 3), 128, dtype=np.uint8)
        start = time.perf_counter()
        for b in batch_sizes:
            self.inference.call(lift.lift_batch, model, [gray] * b, s.working_hw, model.device)
        return time.perf_counter() - start

    # -------------------------------------------------------------------------------------------------
    # gRPC entry point

    def Lift(self, request: depth_pb2.LiftRequest, context: grpc.ServicerContext) -> depth_pb2.LiftResponse:
        """Lift answering protobuf objects (for the generated ``add_DepthServiceServicer_to_server``)."""
        return self._handle(request, context, build_response)

    def LiftViews(self, request: depth_pb2.LiftViewsRequest, context: grpc.ServicerContext):
        """N views of one scene -> posed views (``views_rpc``; needs a geometry model)."""
        from objvid.depth import views_rpc

        return views_rpc.handle(self, request, context)

    def LiftEncoded(self, request: depth_pb2.LiftRequest, context: grpc.ServicerContext) -> bytes:
        """Lift answering the serialised LiftResponse directly (registered by ``add_to_server``)."""
        return self._handle(request, context, encode_response)

    def _handle(self, request: depth_pb2.LiftRequest, context: grpc.ServicerContext, encode):
        start = time.perf_counter()
        code, message, response = grpc.StatusCode.OK, "", None
        try:
            check_request(request)
            status.check_deadline(context)
            response = self.lift(request, context.is_active, encode)
        except Exception as exc:  # never let one request take the server down: one status, one message
            if isinstance(exc, torch.cuda.OutOfMemoryError):
                torch.cuda.empty_cache()
            code, message = status.failure("Lift", exc, log)
        seconds = time.perf_counter() - start
        n = 0 if isinstance(request, BadRequest) else len(request.images)
        self.metrics.observe(code.name, seconds, n if code == grpc.StatusCode.OK else 0)
        log.debug("event=lift images=%d code=%s ms=%.1f", n, code.name, seconds * 1e3)
        if code != grpc.StatusCode.OK:
            context.abort(code, message)
        return response

    # -------------------------------------------------------------------------------------------------
    # Work

    def lift(self, request: depth_pb2.LiftRequest, is_active=None, encode=build_response):
        """Validate, decode, lift and encode one request; raises ``objvid.runtime.errors`` types.

        is_active: optional callable; when it turns False (client gone, deadline passed) no further model
        call is started for this request. encode: ``build_response`` (LiftResponse objects) or
        ``encode_response`` (serialised bytes); views carry no ``image`` when ``request.omit_image``.
        """
        model = self._model
        if model is None:
            raise Unavailable("model is still loading; retry when health is SERVING")
        s = self.settings
        n = len(request.images)
        if n == 0:
            raise InvalidArgument("images: empty batch; send at least one image")
        if n > s.max_images:
            raise ResourceExhausted(
                f"images: {n} images exceed the limit of {s.max_images} per request",
            )
        width, height, keep = int(request.width), int(request.height), bool(request.keep_aspect)
        try:
            lift.working_size((1, 1), width, height, keep, s.working_hw)  # request-level checks only
        except ValueError as exc:
            raise InvalidArgument(str(exc)) from None
        if not keep and width * height > s.max_pixels:
            raise ResourceExhausted(
                f"width/height: working size {width}x{height} exceeds the pixel limit {s.max_pixels}",
            )

        total = sum(h * w for h, w in (self._size(i, im) for i, im in enumerate(request.images)))
        if total > s.max_request_pixels:
            raise ResourceExhausted(
                f"images: {total} pixels in all {n} images together exceed the limit of "
                f"{s.max_request_pixels} per request (--max-request-pixels); send fewer or smaller images",
            )
        t0 = time.perf_counter()
        with self.host_guard.reserve(HOST_BYTES_PER_PIXEL * total, "images"):
            if n == 1:
                decoded = [self._decode(0, request.images[0], width, height, keep)]
            else:
                futures = [
                    self._pool.submit(self._decode, i, im, width, height, keep)
                    for i, im in enumerate(request.images)
                ]
                decoded = [f.result() for f in futures]  # in index order: the first bad image is reported
        self.metrics.stage("decode", time.perf_counter() - t0)

        views: list[lift.LiftedView | None] = [None] * n
        groups: dict[tuple, list[int]] = {}
        for i, d in enumerate(decoded):
            groups.setdefault((d.infer_hw, d.working_hw), []).append(i)
        jobs = []  # every micro-batch is queued at once: the next one runs while this one downloads
        for (_infer_hw, working_hw), idx in groups.items():
            for k in range(0, len(idx), s.micro_batch):
                chunk = idx[k : k + s.micro_batch]
                rgbs = [decoded[i].rgb for i in chunk]
                future = self.inference.submit(
                    self._start_lift, model, rgbs, working_hw, is_active, time.perf_counter()
                )
                jobs.append((chunk, future))
        try:
            for chunk, future in jobs:
                pending = future.result()
                t0 = time.perf_counter()
                out = pending.result()
                self.metrics.stage("download", time.perf_counter() - t0)
                for i, view in zip(chunk, out, strict=True):
                    views[i] = view
        finally:
            for _chunk, future in jobs:
                future.cancel()  # after a failure: drop the micro-batches that have not started

        t0 = time.perf_counter()
        response = encode(views, str(getattr(model, "name", "")), omit_image=bool(request.omit_image))
        self.metrics.stage("encode", time.perf_counter() - t0)
        return response

    def _start_lift(self, model, rgbs, working_hw, is_active, submitted: float) -> lift.PendingLift:
        """On the inference thread: upload, model call, post-processing; downloads left in flight."""
        start = time.perf_counter()
        self.metrics.stage("queue", start - submitted)
        if is_active is not None and not is_active():
            raise Cancelled("request cancelled or past its deadline")
        pending = lift.start_lift(model, rgbs, working_hw, model.device)
        self.metrics.stage("lift", time.perf_counter() - start)
        return pending

    def _size(self, index: int, image: types_pb2.Image) -> tuple[int, int]:
        """(H, W) of images[index] from its header or tensor shape, checked against ``max_pixels``."""
        s = self.settings
        name = f"images[{index}]"
        kind = image.WhichOneof("content")
        if kind is None:
            raise InvalidArgument(f"{name}: missing (set `encoded` or `pixels`)")
        if kind == "pixels":
            shape = list(image.pixels.shape)
            if len(shape) != 3 or shape[2] != 3:
                raise InvalidArgument(f"{name}: raw pixels must be (H, W, 3), got {shape}")
            h, w = shape[0], shape[1]
        else:
            h, w = _peek_size(image.encoded, name)
        if h < 1 or w < 1:
            raise InvalidArgument(f"{name}: empty image ({h}x{w})")
        if h * w > s.max_pixels:
            raise ResourceExhausted(
                f"{name}: {w}x{h} = {h * w} pixels exceeds the limit {s.max_pixels}",
            )
        return h, w

    def _decode(
        self, index: int, image: types_pb2.Image, width: int, height: int, keep_aspect: bool
    ) -> _Decoded:
        """images[index] -> pixels at the inference size, with the limits checked before decoding."""
        s = self.settings
        name = f"images[{index}]"
        self._size(index, image)
        try:
            rgb = wire.decode_image(image, name)
        except ValueError as exc:
            raise InvalidArgument(str(exc)) from None
        hw = rgb.shape[:2]
        working_hw = lift.working_size(hw, width, height, keep_aspect, s.working_hw)
        if working_hw[0] * working_hw[1] > s.max_pixels:
            raise ResourceExhausted(
                f"{name}: working size {working_hw[1]}x{working_hw[0]} exceeds the pixel limit {s.max_pixels}",
            )
        infer_hw = lift.inference_size(hw, keep_aspect, s.infer_hw)
        return _Decoded(lift.resize_for_inference(rgb, infer_hw), infer_hw, working_hw)


def add_to_server(servicer: DepthServicer, server: grpc.Server) -> None:
    """Register ``objvid.v1.DepthService`` with the direct-encoding Lift (same wire format as the
    generated registration, one copy less per response)."""
    handler = grpc.unary_unary_rpc_method_handler(
        servicer.LiftEncoded,
        request_deserializer=lenient(depth_pb2.LiftRequest),
        response_serializer=protowire.passthrough,
    )
    views = grpc.unary_unary_rpc_method_handler(
        servicer.LiftViews,
        request_deserializer=depth_pb2.LiftViewsRequest.FromString,
        response_serializer=depth_pb2.LiftViewsResponse.SerializeToString,
    )
    handlers = {"Lift": handler, "LiftViews": views}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
