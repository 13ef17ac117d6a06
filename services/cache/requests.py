"""Request decoding for the cache service: protobuf fields -> checked core values, errors naming the field.

Each function raises ``ValueError("<field>: <reason>")`` (INVALID_ARGUMENT) or ``LimitExceeded``
(RESOURCE_EXHAUSTED, naming the ``--max-*`` flag). The camera / transform rules themselves live in
``objvid.runtime.geometry`` (shared with the client); the image / tensor codecs in ``objvid.runtime.wire``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from objvid.runtime import limits as runtime_limits
from objvid.runtime import shm, trajectory, wire
from objvid.runtime.geometry import check_intrinsics, check_transform, pose_matrix
from objvid.runtime.limits import over, pixels_over
from objvid.v1 import cache_pb2, types_pb2

from .io import DEFAULT_COLOR, MAX_ABS_COORD
from .store import LimitExceeded, Precondition


@dataclass
class Limits:
    """Per-request limits (flags ``--max-*``). Exceeding one is RESOURCE_EXHAUSTED."""

    max_image_pixels: int = runtime_limits.MAX_IMAGE_PIXELS
    max_points: int = 20_000_000
    max_objects: int = 256
    max_cameras: int = runtime_limits.MAX_CAMERAS


# ---------------------------------------------------------------------------------------------------
# Ids and scalar fields


def scene_id(request) -> str:
    """``request.scene_id`` (required)."""
    if not request.scene_id:
        raise ValueError("scene_id: missing")
    return request.scene_id


def object_id(request) -> int:
    """``request.object_id`` (>= 0)."""
    if request.object_id < 0:
        raise ValueError(f"object_id: must be >= 0, got {request.object_id}")
    return request.object_id


def filter_threshold(request: cache_pb2.CreateSceneRequest) -> float | None:
    """CreateScene's ``filter_points_threshold``: None for 0 (off), else the finite positive value."""
    threshold = request.filter_points_threshold
    if not math.isfinite(threshold) or threshold < 0:
        raise ValueError(f"filter_points_threshold: must be finite and >= 0 (0 = off), got {threshold}")
    return threshold or None


def decode_placement(
    request: cache_pb2.PlaceObjectRequest,
) -> tuple[tuple | None, float | None, float | None]:
    """PlaceObject's optional fields -> (anchor (u, v) pixels or None, height or None, scale or None)."""
    has_u, has_v = request.HasField("anchor_u"), request.HasField("anchor_v")
    if has_u != has_v:
        raise ValueError("anchor_u: set both anchor_u and anchor_v, or neither")
    anchor = (request.anchor_u, request.anchor_v) if has_u else None
    if anchor is not None and not all(math.isfinite(a) for a in anchor):
        raise ValueError("anchor_u: anchor coordinates must be finite")
    height = request.height if request.HasField("height") else None
    if height is not None and not (math.isfinite(height) and height > 0):
        raise ValueError(f"height: must be finite and > 0, got {height}")
    scale = request.scale if request.HasField("scale") else None
    if scale is not None and not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale: must be finite and > 0, got {scale}")
    return anchor, height, scale


# ---------------------------------------------------------------------------------------------------
# Cameras, transforms, clouds, views


def decode_camera(
    msg: types_pb2.Camera, name: str, limits: Limits
) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Camera -> (K (3, 3), w2c (4, 4), width, height), fully checked."""
    K, w2c, width, height = wire.decode_camera(msg, name)
    if width * height > limits.max_image_pixels:
        raise LimitExceeded(pixels_over(name, width, height, limits.max_image_pixels))
    check_intrinsics(K, f"{name}.intrinsics")
    check_transform(w2c, f"{name}.world_to_camera")
    return K, w2c, width, height


def decode_transform(msg: types_pb2.Transform, name: str) -> np.ndarray:
    """Transform (matrix or pose) -> (4, 4) float64 similarity, checked."""
    kind = msg.WhichOneof("kind")
    if kind == "matrix":
        T = wire.decode_matrix(msg.matrix.values, 4, 4, f"{name}.matrix.values")
        check_transform(T, f"{name}.matrix", allow_scale=True)
        return T
    if kind == "pose":
        pose = msg.pose
        if pose.scale < 0 or not math.isfinite(pose.scale):
            raise ValueError(f"{name}.pose.scale: must be finite and > 0 (0 means 1), got {pose.scale}")
        return pose_matrix(
            list(pose.translation) or (0.0, 0.0, 0.0),
            list(pose.rotation_deg) or (0.0, 0.0, 0.0),
            pose.scale or 1.0,
            name=f"{name}.pose",
        )
    raise ValueError(f"{name}: missing (set `matrix` or `pose`)")


def decode_cloud(msg: types_pb2.PointCloud, name: str, limits: Limits) -> tuple[np.ndarray, np.ndarray]:
    """PointCloud -> (points (N, 3) float32 finite, colors (N, 3) uint8). Missing colours: the loaders' grey."""
    if not msg.HasField("positions"):
        raise ValueError(f"{name}.positions: missing")
    dims = list(msg.positions.shape)
    if len(dims) == 2 and dims[0] > limits.max_points:
        raise LimitExceeded(
            f"{name}.positions: {dims[0]} points is over the limit of {limits.max_points} (--max-points)"
        )
    pts = wire.decode_tensor(msg.positions, f"{name}.positions", dtype=[np.float32, np.float64], ndim=2)
    if pts.shape[1] != 3 or pts.shape[0] == 0:
        raise ValueError(f"{name}.positions: expected shape (N, 3) with N > 0, got {list(pts.shape)}")
    pts = pts.astype(np.float32, copy=False)
    if not np.isfinite(pts).all():
        raise ValueError(f"{name}.positions: values must be finite")
    big = float(np.abs(pts).max())
    if big > MAX_ABS_COORD:
        raise ValueError(f"{name}.positions: values up to {big:.3g} are beyond +-{MAX_ABS_COORD:g} (rescale)")
    if msg.HasField("colors"):
        col = wire.decode_tensor(msg.colors, f"{name}.colors", dtype=np.uint8, shape=[pts.shape[0], 3])
    else:
        col = np.broadcast_to(np.asarray(DEFAULT_COLOR, np.uint8), pts.shape)
    return pts, col


def _check_size(name: str, width: int, height: int, limits: Limits) -> None:
    if width * height > limits.max_image_pixels:
        raise LimitExceeded(pixels_over(name, width, height, limits.max_image_pixels))


def _encoded_size(data: bytes, name: str) -> tuple[int, int]:
    """(width, height) from an encoded image's header, without decoding the pixels."""
    import io

    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.size
    except Image.DecompressionBombError as exc:
        raise LimitExceeded(f"{name}: refused as a decompression bomb ({exc})") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise ValueError(f"{name}: not a decodable image ({exc.__class__.__name__})") from None


def view_pixels(msg: cache_pb2.RgbdView, name: str, limits: Limits) -> int:
    """Pixels of a view from its camera (checked against ``max_image_pixels``), before anything is decoded."""
    w, h = max(0, msg.camera.width), max(0, msg.camera.height)
    _check_size(f"{name}.camera", w, h, limits)
    return w * h


def fingerprint(request) -> str:
    """Identity of a request for idempotency keys: a hash of its bytes without the key."""
    import hashlib

    clone = type(request)()
    clone.CopyFrom(request)
    clone.idempotency_key = ""
    return hashlib.blake2b(clone.SerializeToString(deterministic=True), digest_size=16).hexdigest()


def decode_view(msg: cache_pb2.RgbdView, name: str, limits: Limits):
    """RgbdView -> (image (H, W, 3) uint8, depth (H, W) float32, mask (H, W) bool | None, K, w2c)."""
    if not msg.HasField("camera"):
        raise ValueError(f"{name}.camera: missing")
    K, w2c, width, height = decode_camera(msg.camera, f"{name}.camera", limits)
    kind = msg.image.WhichOneof("content")
    if kind == "encoded":
        w, h = _encoded_size(msg.image.encoded, f"{name}.image")
        _check_size(f"{name}.image", w, h, limits)
    elif kind == "pixels" and len(msg.image.pixels.shape) == 3:
        h, w = msg.image.pixels.shape[:2]
        _check_size(f"{name}.image", w, h, limits)
    image = wire.decode_image(msg.image, f"{name}.image")
    if image.shape[:2] != (height, width):
        raise ValueError(
            f"{name}.image: size {image.shape[1]}x{image.shape[0]} does not match the camera's {width}x{height}"
        )
    if not msg.HasField("depth"):
        raise ValueError(f"{name}.depth: missing")
    depth = wire.decode_tensor(
        msg.depth, f"{name}.depth", dtype=[np.float32, np.float64, np.float16], shape=[height, width]
    ).astype(np.float32, copy=False)
    mask = None
    if msg.HasField("mask"):
        mask = (
            wire.decode_tensor(msg.mask, f"{name}.mask", dtype=[np.bool_, np.uint8], shape=[height, width])
            != 0
        )
    return image, depth, mask, K, w2c


# ---------------------------------------------------------------------------------------------------
# Render options and output encoding

_MODES = {0: "fused", 1: "fused", 2: "full", 3: "scene", 4: "objects"}
_SPLATS = {0: "gen3c", 1: "gen3c", 2: "zbuffer"}
_OUTPUTS = {1: "rgb", 2: "mask", 3: "depth", 4: "object_mask"}


@dataclass(frozen=True)
class RenderSpec:
    mode: str = "fused"
    splat: str = "gen3c"
    outputs: tuple[str, ...] = ("rgb", "mask")
    png: bool = False
    footprint: int = 2
    object_radius_px: float | None = None
    foreground_masking: bool = False
    #: Compact wire encodings (raw only): bit-packed masks, float16 depth.
    pack_masks: bool = False
    depth_fp16: bool = False
    #: object_mask for the newest k slots only (0 = all).
    object_mask_slots: int = 0

    def wire_kwargs(self) -> dict:
        """The compact encodings, as ``frames.outputs_to_host`` keywords."""
        return {"pack_masks": self.pack_masks, "depth_fp16": self.depth_fp16,
                "object_mask_slots": self.object_mask_slots}  # fmt: skip

    def kwargs(self) -> dict:
        kw = {"mode": self.mode, "splat": self.splat, "footprint": self.footprint, "outputs": self.outputs}
        if self.foreground_masking:
            kw["foreground_masking"] = True
        if self.object_radius_px is not None:
            kw["object_radius_px"] = self.object_radius_px
        return kw


def parse_options(opts: cache_pb2.RenderOptions, name: str = "options") -> RenderSpec:
    if opts.mode not in _MODES:
        raise ValueError(f"{name}.mode: unknown value {opts.mode}")
    if opts.splat not in _SPLATS:
        raise ValueError(f"{name}.splat: unknown value {opts.splat}")
    outputs: list[str] = []
    for i, o in enumerate(opts.outputs):
        if o not in _OUTPUTS:
            raise ValueError(f"{name}.outputs[{i}]: unknown value {o}")
        if _OUTPUTS[o] not in outputs:
            outputs.append(_OUTPUTS[o])
    if opts.encoding not in (0, 1, 2):
        raise ValueError(f"{name}.encoding: unknown value {opts.encoding}")
    footprint = opts.footprint or 2
    if not 1 <= footprint <= 15:
        raise ValueError(f"{name}.footprint: must be in 1..15 (0 = 2), got {opts.footprint}")
    radius = opts.object_radius_px
    if not math.isfinite(radius) or radius < 0 or radius > 7:
        raise ValueError(f"{name}.object_radius_px: must be in [0, 7] (0 = server default), got {radius}")
    order = [o for o in ("rgb", "mask", "depth", "object_mask") if o in outputs] or ["rgb", "mask"]
    png = opts.encoding == 2
    return RenderSpec(
        _MODES[opts.mode], _SPLATS[opts.splat], tuple(order), png, footprint, radius or None,
        bool(opts.foreground_masking), pack_masks=opts.pack_masks and not png, depth_fp16=opts.depth_fp16,
        object_mask_slots=opts.object_mask_slots,
    )  # fmt: skip


def check_shm_request(request: cache_pb2.RenderRequest, spec: RenderSpec) -> cache_pb2.SharedMemoryRegion:
    """``RenderRequest.shm`` checked before rendering (name, key, size; raw encoding only); the region
    itself is opened and checked when the frame is written (``objvid.runtime.shm.RegionWriter``)."""
    region = request.shm
    shm.region_path(region.name, "shm.name")
    if len(region.key) != shm.KEY_BYTES:
        raise ValueError(f"shm.key: must be {shm.KEY_BYTES} bytes, got {len(region.key)}")
    if region.size <= shm.HEADER:
        raise ValueError(f"shm.size: must exceed the {shm.HEADER}-byte header, got {region.size}")
    if spec.png:
        raise ValueError("options.encoding: PNG frames cannot go through shared memory (use raw)")
    return region


# ---------------------------------------------------------------------------------------------------
# Trajectories


def trajectory_cameras(
    request: cache_pb2.RenderTrajectoryRequest, seed: dict | None, scene_id: str, limits: Limits
) -> tuple[np.ndarray, np.ndarray, int, int]:
    """(w2cs (T, 4, 4), Ks (T, 3, 3), width, height) from explicit cameras or a TrajectorySpec expanded
    from the scene's seed camera (``seed``: the store's description: K, w2c, width, height)."""
    has_traj = request.HasField("trajectory")
    if request.cameras and has_traj:
        raise ValueError("cameras: give explicit cameras or a trajectory, not both")
    if request.cameras:
        n = len(request.cameras)
        if n > limits.max_cameras:
            raise LimitExceeded(over("cameras", n, limits.max_cameras, "--max-cameras", " cameras"))
        Ks, w2cs = np.empty((n, 3, 3)), np.empty((n, 4, 4))
        size = None
        for i, cam in enumerate(request.cameras):
            Ks[i], w2cs[i], w, h = decode_camera(cam, f"cameras[{i}]", limits)
            if size is None:
                size = (w, h)
            elif (w, h) != size:
                raise ValueError(f"cameras[{i}]: size {w}x{h} differs from cameras[0] ({size[0]}x{size[1]})")
        return w2cs, Ks, size[0], size[1]
    if not has_traj:
        raise ValueError("cameras: missing (give explicit cameras or a trajectory)")
    spec = request.trajectory
    frames = spec.frame_count or trajectory.DEFAULT_NUM_FRAMES
    if frames > limits.max_cameras:
        raise LimitExceeded(over("trajectory.frame_count", frames, limits.max_cameras, "--max-cameras"))
    for fname in ("movement_distance", "center_depth"):
        if not math.isfinite(getattr(spec, fname)):
            raise ValueError(f"trajectory.{fname}: must be finite, got {getattr(spec, fname)}")
    if spec.center_depth < 0:
        raise ValueError(f"trajectory.center_depth: must be > 0, got {spec.center_depth}")
    if not seed:
        raise Precondition(
            f"scene_id: scene {scene_id!r} has no seed camera (built from points): pass explicit cameras"
        )
    K0 = np.array(seed["K"], np.float64).reshape(3, 3)
    w2c0 = np.array(seed["w2c"], np.float64).reshape(4, 4)
    w2cs, Ks = trajectory.trajectory_from_spec(spec, w2c0, K0)
    w2cs = np.asarray(w2cs, np.float64).reshape(-1, 4, 4)
    Ks = np.asarray(Ks, np.float64).reshape(-1, 3, 3)
    for i in range(len(w2cs)):
        check_transform(w2cs[i], f"trajectory: generated camera {i}")
    return w2cs, Ks, seed["width"], seed["height"]
