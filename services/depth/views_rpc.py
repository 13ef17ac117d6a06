"""``DepthService.LiftViews``: N images of one scene -> posed views from the geometry model (VGGT).

Errors: no geometry model configured -> FAILED_PRECONDITION naming ``--geometry-model``; empty batch, a
bad image, bad sizes or percentile -> INVALID_ARGUMENT naming the field; over ``max_images`` /
``max_pixels`` -> RESOURCE_EXHAUSTED; device out of memory -> RESOURCE_EXHAUSTED.
"""

from __future__ import annotations

import logging
import math
import time

import grpc
import numpy as np
import torch

from objvid.depth.geometry import DEFAULT_CONFIDENCE_PERCENTILE
from objvid.runtime import wire
from objvid.runtime.errors import Cancelled, FailedPrecondition, InvalidArgument, ResourceExhausted
from objvid.serving import status
from objvid.v1 import depth_pb2

log = logging.getLogger("objvid.depth.views")


def handle(servicer, request: depth_pb2.LiftViewsRequest, context: grpc.ServicerContext):
    """One LiftViews call: every failure becomes one status (``objvid.serving.status``)."""
    start = time.perf_counter()
    try:
        status.check_deadline(context)
        response = lift_views(servicer, request, context.is_active)
    except Exception as exc:  # never let one request take the server down
        if isinstance(exc, torch.cuda.OutOfMemoryError):
            torch.cuda.empty_cache()
        code, message = status.failure("LiftViews", exc, log)
        context.abort(code, message)
    log.info("event=lift_views images=%d ms=%.1f", len(request.images), (time.perf_counter() - start) * 1e3)
    return response


def lift_views(servicer, request: depth_pb2.LiftViewsRequest, is_active=None) -> depth_pb2.LiftViewsResponse:
    model = servicer.geometry_model
    if model is None:
        raise FailedPrecondition("LiftViews: this server has no geometry model (start it with --geometry-model, "
                                 "e.g. facebook/VGGT-1B)")  # fmt: skip
    s = servicer.settings
    n = len(request.images)
    if n == 0:
        raise InvalidArgument("images: empty batch; send the views of one scene")
    if n > s.max_images:
        raise ResourceExhausted(f"images: {n} images exceed the limit of {s.max_images} per request")  # fmt: skip
    W = int(request.width) or s.working_hw[1]
    H = int(request.height) or s.working_hw[0]
    if W < 16 or H < 16:
        raise InvalidArgument(f"width/height: working size must be at least 16x16, got {W}x{H}")
    if W * H > s.max_pixels:
        raise ResourceExhausted(f"width/height: working size {W}x{H} exceeds the pixel limit {s.max_pixels}")  # fmt: skip
    pct = request.confidence_percentile or DEFAULT_CONFIDENCE_PERCENTILE
    if not (math.isfinite(pct) and 0.0 <= pct < 100.0):
        raise InvalidArgument(f"confidence_percentile: must be in [0, 100) (0 = default), got {pct}")
    images = []
    for i, im in enumerate(request.images):
        if im.WhichOneof("content") is None:
            raise InvalidArgument(f"images[{i}]: missing (set `encoded` or `pixels`)")
        try:
            rgb = wire.decode_image(im, f"images[{i}]")
        except ValueError as exc:
            raise InvalidArgument(str(exc)) from None
        if rgb.shape[0] * rgb.shape[1] > s.max_pixels:
            raise ResourceExhausted(f"images[{i}]: {rgb.shape[1]}x{rgb.shape[0]} exceeds the pixel limit {s.max_pixels}")  # fmt: skip
        images.append(rgb)
    if is_active is not None and not is_active():
        raise Cancelled("request cancelled or past its deadline")
    views = servicer.inference.call(model.lift_views, images, (H, W), pct)
    resp = depth_pb2.LiftViewsResponse(model=str(model.name))
    for v in views:
        lifted = depth_pb2.LiftedView(
            depth=wire.encode_tensor(np.ascontiguousarray(v.depth, np.float32)),
            mask=wire.encode_tensor(np.ascontiguousarray(v.mask, bool)),
            intrinsics=np.asarray(v.K, np.float64).ravel().tolist(),
            width=W,
            height=H,
        )
        if not request.omit_image:
            lifted.image.CopyFrom(wire.encode_image(v.image))
        posed = resp.views.add(view=lifted, world_to_camera=np.asarray(v.w2c, np.float64).ravel().tolist())
        if request.include_confidence:
            posed.confidence.CopyFrom(wire.encode_tensor(np.ascontiguousarray(v.confidence, np.float32)))
    return resp
