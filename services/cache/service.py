"""gRPC adapter of the cache renderer: ``objvid.v1.CacheService`` over ``objvid.cache.Scene``.

Error mapping (every RPC): a bad field -> INVALID_ARGUMENT naming it (``"cameras[3].world_to_camera: not a
rigid transform ..."``); an unknown scene or object -> NOT_FOUND (for scenes: "create it again"); over a
limit or the memory budget -> RESOURCE_EXHAUSTED; a deadline that passes while queued -> DEADLINE_EXCEEDED;
anything unexpected -> INTERNAL with a message, logged with its traceback. The server never dies on a
request.

Hot path (``Render``): decode + check the camera (tens of us), one library render of only the requested outputs
under the FIFO device lock, one device->host copy of all of them (CUDA), then the response bytes are
written directly from the host arrays (``frames.py``: one copy of the pixels, no protobuf round trip).
"""

from __future__ import annotations

import functools
import logging
import math
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import grpc
import numpy as np

from objvid import trajectory, wire
from objvid.v1 import cache_pb2, cache_pb2_grpc, types_pb2

from .frames import add_cache_service, encode_render_response, encode_trajectory_response, outputs_to_host
from .io import DEFAULT_COLOR, DEFAULT_SAMPLE_POINTS
from .metrics import CacheMetrics
from .store import (
    Cancelled,
    LimitExceeded,
    Precondition,
    SceneEntry,
    SceneNotFound,
    SceneStore,
    ServiceError,
)

log = logging.getLogger("objvid.cache.service")

SERVICE_NAME = "objvid.v1.CacheService"
#: Device bytes per scene point assumed before a scene exists (xyz float32 + packed colour int32).
BYTES_PER_POINT = 16
#: Cameras rendered per device turn in RenderTrajectory (scaled down for large images).
TRAJECTORY_BATCH = 8
_BATCH_PIXELS = 8 * 704 * 1280
#: Tolerances of the camera / transform checks.
RIGID_TOL = 1e-4


@dataclass
class Limits:
    """Per-request limits (flags ``--max-*``). Exceeding one is RESOURCE_EXHAUSTED."""

    max_image_pixels: int = 4096 * 4096
    max_points: int = 20_000_000
    max_objects: int = 256
    max_cameras: int = 4096


@dataclass
class ServerConfig:
    """Everything ``CacheServer`` needs; the CLI fills it from flags and ``OBJVID_CACHE_*`` variables."""

    host: str = "127.0.0.1"
    port: int = 50052
    device: str = "cpu"
    memory_budget: int = 4 << 30
    snapshot_dir: str | None = None
    metrics_port: int = 0  # 0 = no HTTP endpoint
    metrics_host: str = "0.0.0.0"
    tls_cert: bytes | None = None
    tls_key: bytes | None = None
    tls_client_ca: bytes | None = None
    token: str | None = None
    limits: Limits = field(default_factory=Limits)
    workers: int = 32
    trajectory_batch: int = TRAJECTORY_BATCH


# ---------------------------------------------------------------------------------------------------
# Checks (ValueError naming the field)


def _is_unit_row(row: list[float]) -> bool:
    """``np.allclose(row, (0, ..., 0, 1), atol=1e-9)`` on Python floats (~30x cheaper for one row)."""
    return all(abs(x) <= 1e-9 for x in row[:-1]) and abs(row[-1] - 1.0) <= 1e-9 + 1e-5


def check_intrinsics(K: np.ndarray, name: str) -> None:
    """K (3, 3) float64: last row (0, 0, 1), positive focal lengths, invertible."""
    if not _is_unit_row(K[2].tolist()):
        raise ValueError(f"{name}: last row must be (0, 0, 1), got {K[2].tolist()}")
    if not (K[0, 0] > 0 and K[1, 1] > 0):
        raise ValueError(f"{name}: focal lengths must be positive, got fx={K[0, 0]:g} fy={K[1, 1]:g}")
    det = float(np.linalg.det(K))
    if not math.isfinite(det) or abs(det) < 1e-12:
        raise ValueError(f"{name}: not invertible (det={det:g})")
    s = np.linalg.svd(K, compute_uv=False)  # np.linalg.cond(K) = s[0] / s[-1], without its overhead
    if not s[-1] > 0 or s[0] / s[-1] > 1e12:
        raise ValueError(f"{name}: not invertible (det={det:g})")


def check_transform(T: np.ndarray, name: str, *, allow_scale: bool = False) -> float:
    """T (4, 4) float64: last row (0, 0, 0, 1) and rotation block s*R (R orthonormal, det +1; s == 1 unless
    ``allow_scale``). Returns s."""
    if not _is_unit_row(T[3].tolist()):
        raise ValueError(
            f"{name}: not a rigid transform (last row must be (0, 0, 0, 1), got {T[3].tolist()})"
        )
    M = T[:3, :3]
    det = float(np.linalg.det(M))
    kind = "similarity transform (rotation, translation, uniform scale)" if allow_scale else "rigid transform"
    if not det > 0:
        raise ValueError(f"{name}: not a {kind} (det of the rotation block is {det:g}, must be > 0)")
    s = det ** (1.0 / 3.0)
    if not allow_scale and abs(s - 1.0) > RIGID_TOL:
        raise ValueError(f"{name}: not a {kind} (the rotation block scales by {s:g})")
    R = M / s
    err = float(np.abs(R @ R.T - np.eye(3)).max())
    if err > RIGID_TOL:
        raise ValueError(f"{name}: not a {kind} (rotation block not orthonormal, error {err:.2g})")
    return s


def decode_camera(
    msg: types_pb2.Camera, name: str, limits: Limits
) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Camera -> (K (3, 3), w2c (4, 4), width, height), fully checked."""
    K, w2c, width, height = wire.decode_camera(msg, name)
    if width * height > limits.max_image_pixels:
        raise LimitExceeded(
            f"{name}: {width}x{height} = {width * height} pixels is over the limit of {limits.max_image_pixels} "
            "(--max-image-pixels)"
        )
    check_intrinsics(K, f"{name}.intrinsics")
    check_transform(w2c, f"{name}.world_to_camera")
    return K, w2c, width, height


def _euler_deg(rx: float, ry: float, rz: float) -> np.ndarray:
    ax, ay, az = np.radians([rx, ry, rz])
    Rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    Ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    Rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return Rz @ Ry @ Rx


def decode_transform(msg: types_pb2.Transform, name: str) -> np.ndarray:
    """Transform (matrix or pose) -> (4, 4) float64 similarity, checked."""
    kind = msg.WhichOneof("kind")
    if kind == "matrix":
        T = wire.decode_matrix(msg.matrix.values, 4, 4, f"{name}.matrix.values")
        check_transform(T, f"{name}.matrix", allow_scale=True)
        return T
    if kind == "pose":
        pose = msg.pose
        vals = {}
        for fname in ("translation", "rotation_deg"):
            v = list(getattr(pose, fname))
            if v and len(v) != 3:
                raise ValueError(f"{name}.pose.{fname}: expected 3 values (or none), got {len(v)}")
            v = v or [0.0, 0.0, 0.0]
            if not all(math.isfinite(x) for x in v):
                raise ValueError(f"{name}.pose.{fname}: values must be finite")
            vals[fname] = v
        s = pose.scale or 1.0
        if not (math.isfinite(s) and s > 0):
            raise ValueError(f"{name}.pose.scale: must be finite and > 0 (0 means 1), got {pose.scale}")
        T = np.eye(4)
        T[:3, :3] = s * _euler_deg(*vals["rotation_deg"])
        T[:3, 3] = vals["translation"]
        return T
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
    if msg.HasField("colors"):
        col = wire.decode_tensor(msg.colors, f"{name}.colors", dtype=np.uint8, shape=[pts.shape[0], 3])
    else:
        col = np.broadcast_to(np.asarray(DEFAULT_COLOR, np.uint8), pts.shape)
    return pts, col


def _check_size(name: str, width: int, height: int, limits: Limits) -> None:
    if width * height > limits.max_image_pixels:
        raise LimitExceeded(
            f"{name}: {width}x{height} = {width * height} pixels is over the limit of {limits.max_image_pixels} "
            "(--max-image-pixels)"
        )


def _encoded_size(data: bytes, name: str) -> tuple[int, int]:
    """(width, height) from an encoded image's header, without decoding the pixels."""
    import io

    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.size
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ValueError(f"{name}: not a decodable image ({exc.__class__.__name__})") from None


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

    def kwargs(self) -> dict:
        kw = {"mode": self.mode, "splat": self.splat, "footprint": self.footprint, "outputs": self.outputs}
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
    return RenderSpec(
        _MODES[opts.mode], _SPLATS[opts.splat], tuple(order), opts.encoding == 2, footprint, radius or None
    )


def _ply_vertex_count(ply: bytes) -> int:
    head = ply[: ply.find(b"end_header")]
    for line in head.split(b"\n"):
        if line.startswith(b"element vertex "):
            return int(line.split()[2])
    return 0


# ---------------------------------------------------------------------------------------------------
# Per-stage timing of Render


class RenderStages:
    """Where a per-frame ``Render`` spends its time on the server, per stage:

    ``decode`` (request checks, scene lookup), ``queue`` (waiting for the device), ``render`` (the library
    call: its checks and kernel launches; on CUDA the kernels may still run), ``to_host`` (waits for the
    kernels, packs and copies the outputs to pinned host memory), ``encode`` (the response bytes).
    Exported as ``objvid_cache_render_stage_seconds{stage}`` (a Summary: ``_sum`` / ``_count``; the load
    tool turns them into means) and, at debug level, one ``event=render_stages`` log line per call.
    gRPC's own work (request parsing, copying the response into its buffers, the transport) is outside.
    """

    NAMES = ("decode", "queue", "render", "to_host", "encode")

    def __init__(self, registry) -> None:
        from prometheus_client import Summary

        summary = Summary(
            "objvid_cache_render_stage_seconds",
            "Server time of per-frame Render calls by stage",
            ["stage"],
            registry=registry,
        )
        self._children = [summary.labels(stage=n) for n in self.NAMES]

    def observe(self, scene_id: str, *marks: float) -> None:
        """``marks``: perf_counter() at the start and after each stage (len(NAMES) + 1 values)."""
        for child, a, b in zip(self._children, marks, marks[1:], strict=False):
            child.observe(b - a)
        if log.isEnabledFor(logging.DEBUG):
            ms = " ".join(
                f"{n}_ms={(b - a) * 1e3:.3f}" for n, a, b in zip(self.NAMES, marks, marks[1:], strict=False)
            )
            log.debug("event=render_stages scene=%s %s", scene_id, ms)


class GcPauses:
    """Time Python's garbage collector stops the process, by generation (0, 1, 2), for the p99 picture:
    ``objvid_cache_gc_pause_seconds_total{generation}`` and ``objvid_cache_gc_collections_total``.

    ``gc.callbacks`` is process-wide: ``close()`` unhooks. The callback only adds to plain lists (no locks:
    it runs inside whatever allocation triggered the collection); the gauges read them at scrape time.
    """

    def __init__(self, registry) -> None:
        import gc

        from prometheus_client import Gauge

        self.seconds = [0.0, 0.0, 0.0]
        self.count = [0, 0, 0]
        self._t0 = 0.0
        pause = Gauge(
            "objvid_cache_gc_pause_seconds_total", "Python GC pause time", ["generation"], registry=registry
        )
        runs = Gauge("objvid_cache_gc_collections_total", "Python GC runs", ["generation"], registry=registry)
        for g in range(3):
            pause.labels(generation=str(g)).set_function(lambda g=g: self.seconds[g])
            runs.labels(generation=str(g)).set_function(lambda g=g: self.count[g])
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
        else:
            g = info["generation"]
            self.seconds[g] += time.perf_counter() - self._t0
            self.count[g] += 1

    def close(self) -> None:
        import gc

        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)


# ---------------------------------------------------------------------------------------------------
# Servicer


def _status_of(exc: Exception) -> tuple[grpc.StatusCode, str, bool]:
    """(code, message, unexpected) for an exception raised by a handler."""
    from .scene import ObjectNotFoundError

    if isinstance(exc, ServiceError):
        return exc.code, str(exc), False
    if isinstance(exc, ObjectNotFoundError):
        return grpc.StatusCode.NOT_FOUND, str(exc), False
    if isinstance(exc, ValueError):
        return grpc.StatusCode.INVALID_ARGUMENT, str(exc), False
    if type(exc).__name__ == "OutOfMemoryError":
        return grpc.StatusCode.RESOURCE_EXHAUSTED, f"device out of memory: {exc}".splitlines()[0], False
    return grpc.StatusCode.INTERNAL, "", True


def _rpc(fn):
    """Unary handler wrapper: status mapping, metrics, logs; the server never dies on a request."""
    name = fn.__name__

    def wrapper(self, request, context):
        t0 = time.perf_counter()
        code = grpc.StatusCode.OK
        try:
            self._check_deadline(context)
            return fn(self, request, context)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a status
            code, message = self._failure(name, exc)
            context.abort(code, message)
        finally:
            self._finish(name, code, t0)

    return functools.wraps(fn)(wrapper)


def _rpc_stream(fn):
    """Server-streaming variant of ``_rpc``; a client that goes away ends the generator (CANCELLED)."""
    name = fn.__name__

    def wrapper(self, request, context):
        t0 = time.perf_counter()
        code = grpc.StatusCode.OK
        try:
            self._check_deadline(context)
            yield from fn(self, request, context)
            if not context.is_active():
                code = grpc.StatusCode.CANCELLED
        except GeneratorExit:
            code = grpc.StatusCode.CANCELLED
            raise
        except Exception as exc:  # noqa: BLE001
            code, message = self._failure(name, exc)
            if code == grpc.StatusCode.CANCELLED:
                return
            context.abort(code, message)
        finally:
            self._finish(name, code, t0)

    return functools.wraps(fn)(wrapper)


class CacheServicer(cache_pb2_grpc.CacheServiceServicer):
    """The CacheService RPCs over a SceneStore (see module docstring)."""

    def __init__(
        self,
        device: str = "cpu",
        memory_budget: int = 4 << 30,
        *,
        snapshot_dir: str | None = None,
        limits: Limits | None = None,
        metrics: CacheMetrics | None = None,
        trajectory_batch: int = TRAJECTORY_BATCH,
    ) -> None:
        from .scene import Scene

        self.device = device
        self.limits = limits or Limits()
        self.metrics = metrics or CacheMetrics()
        self.trajectory_batch = max(1, int(trajectory_batch))
        self.frames_rendered = 0  # also in metrics; read by tests
        self.stages = RenderStages(self.metrics.registry)
        self._frames_lock = threading.Lock()
        self.store = SceneStore(
            device,
            memory_budget,
            snapshot_dir=snapshot_dir,
            describe=self._describe,
            scene_factory=Scene.from_state_dict,
            metrics=self.metrics,
        )

    # -- plumbing -------------------------------------------------------------------------------------

    @staticmethod
    def _check_deadline(context) -> None:
        remaining = context.time_remaining()
        if remaining is not None and remaining <= 0:
            from .store import DeadlineExceeded

            raise DeadlineExceeded("deadline exceeded before the request started")

    def _failure(self, method: str, exc: Exception) -> tuple[grpc.StatusCode, str]:
        code, message, unexpected = _status_of(exc)
        if unexpected:
            ref = uuid.uuid4().hex[:12]
            log.error(
                "event=rpc_internal_error method=%s ref=%s error=%s",
                method,
                ref,
                type(exc).__name__,
                exc_info=exc,
            )
            message = (
                f"internal error in {method} ({type(exc).__name__}: {str(exc)[:200]}); server log ref={ref}"
            )
        else:
            log.debug("event=rpc_error method=%s code=%s detail=%s", method, code.name, message)
        return code, message

    def _finish(self, method: str, code: grpc.StatusCode, t0: float) -> None:
        seconds = time.perf_counter() - t0
        self.metrics.observe(method, code.name, seconds)
        log.debug("event=rpc method=%s code=%s ms=%.2f", method, code.name, seconds * 1e3)

    def _count_frames(self, n: int) -> None:
        with self._frames_lock:
            self.frames_rendered += n
        self.metrics.frames.inc(n)

    # -- descriptions ---------------------------------------------------------------------------------

    def _describe(self, scene, entry: SceneEntry) -> dict:
        """JSON-able description kept by the store (and in snapshots) for GetScene / ListScenes."""
        seed = scene.seed_camera
        objects = []
        for oid in scene.object_ids:
            meta = entry.objects.get(oid, {})
            objects.append(
                {
                    "id": int(oid),
                    "name": meta.get("name", ""),
                    "num_points": int(meta.get("num_points", 0)),
                    "transform": np.asarray(scene.get_transform(oid), np.float64).ravel().tolist(),
                }
            )
        return {
            "num_points": int(scene.num_points),
            "num_slots": int(scene.num_slots),
            "device_bytes": int(scene.device_bytes()),
            "device": str(scene.device),
            "seed_camera": None
            if seed is None
            else {
                "K": np.asarray(seed[0], np.float64).ravel().tolist(),
                "w2c": np.asarray(seed[1], np.float64).ravel().tolist(),
                "height": int(seed[2]),
                "width": int(seed[3]),
            },
            "objects": objects,
        }

    @staticmethod
    def _object_info(obj: dict) -> cache_pb2.ObjectInfo:
        return cache_pb2.ObjectInfo(
            object_id=obj["id"],
            name=obj["name"],
            num_points=obj["num_points"],
            transform=types_pb2.Matrix4(values=obj["transform"]),
        )

    def _scene_info(self, entry: SceneEntry) -> cache_pb2.SceneInfo:
        info = entry.info
        msg = cache_pb2.SceneInfo(
            scene_id=entry.scene_id,
            num_points=info.get("num_points", 0),
            num_buffer_slots=info.get("num_slots", 0),
            objects=[self._object_info(o) for o in info.get("objects", [])],
            device_bytes=info.get("device_bytes", entry.nbytes),
            device=info.get("device", self.device),
        )
        seed = info.get("seed_camera")
        if seed:
            msg.seed_camera.CopyFrom(
                wire.encode_camera(
                    np.array(seed["K"]).reshape(3, 3),
                    np.array(seed["w2c"]).reshape(4, 4),
                    seed["width"],
                    seed["height"],
                )
            )
        return msg

    def _object_of(self, entry: SceneEntry, oid: int) -> cache_pb2.ObjectInfo:
        for obj in entry.info.get("objects", []):
            if obj["id"] == oid:
                return self._object_info(obj)
        raise SceneNotFound(f"object_id: scene {entry.scene_id!r} has no object {oid}")

    @staticmethod
    def _require_object(entry: SceneEntry, oid: int) -> None:
        if oid not in entry.scene.object_ids:
            raise SceneNotFound(f"object_id: scene {entry.scene_id!r} has no object {oid}")

    @staticmethod
    def _scene_id(request) -> str:
        if not request.scene_id:
            raise ValueError("scene_id: missing")
        return request.scene_id

    # -- scenes ---------------------------------------------------------------------------------------

    @_rpc
    def CreateScene(self, request, context):
        from .scene import Scene

        threshold = request.filter_points_threshold
        if not math.isfinite(threshold) or threshold < 0:
            raise ValueError(f"filter_points_threshold: must be finite and >= 0 (0 = off), got {threshold}")
        source = request.WhichOneof("source")
        if source == "rgbd":
            image, depth, mask, K, w2c = decode_view(request.rgbd, "rgbd", self.limits)
            npoints = depth.size

            def build():
                return Scene.from_rgbd(
                    image,
                    depth,
                    K,
                    w2c,
                    mask=mask,
                    device=self.device,
                    filter_points_threshold=threshold or None,
                )

        elif source == "points":
            pts, col = decode_cloud(request.points, "points", self.limits)
            npoints = len(pts)

            def build():
                return Scene.from_points(pts, col, device=self.device)

        else:
            raise ValueError("source: missing (set `rgbd` or `points`)")
        if npoints > self.limits.max_points:
            raise LimitExceeded(
                f"{source}: {npoints} points is over the limit of {self.limits.max_points} (--max-points)"
            )
        entry = self.store.create(
            build,
            estimate_bytes=npoints * BYTES_PER_POINT,
            scene_id=request.scene_id or None,
            context=context,
        )
        return cache_pb2.CreateSceneResponse(scene=self._scene_info(entry))

    @_rpc
    def GetScene(self, request, context):
        entry = self.store.entry(self._scene_id(request))
        return cache_pb2.GetSceneResponse(scene=self._scene_info(entry))

    @_rpc
    def ListScenes(self, request, context):
        return cache_pb2.ListScenesResponse(scenes=[self._scene_info(e) for e in self.store.entries()])

    @_rpc
    def DeleteScene(self, request, context):
        self.store.delete(self._scene_id(request))
        return cache_pb2.DeleteSceneResponse()

    @_rpc
    def ExportScene(self, request, context):
        with self.store.use(self._scene_id(request), context) as entry:
            with self.store.device(context):
                ply = entry.scene.export_ply(include_objects=not request.exclude_objects)
        if len(ply) > wire.MAX_MESSAGE_BYTES - 1024:
            raise LimitExceeded(f"scene_id: the export is {len(ply)} bytes, over the message limit")
        return cache_pb2.ExportSceneResponse(ply=ply, num_points=_ply_vertex_count(ply))

    # -- objects --------------------------------------------------------------------------------------

    @_rpc
    def AddObject(self, request, context):
        sid = self._scene_id(request)
        transform = (
            decode_transform(request.transform, "transform") if request.HasField("transform") else None
        )
        source = request.WhichOneof("source")
        if source == "cloud":
            pts, col = decode_cloud(request.cloud, "cloud", self.limits)
        elif source == "file":
            pts, col = self._load_file(request.file)
        else:
            raise ValueError("source: missing (set `cloud` or `file`)")
        if len(request.name) > 256:
            raise ValueError("name: at most 256 characters")
        with self.store.use(sid, context) as entry, entry.lock:
            scene = entry.scene
            if scene.num_objects >= self.limits.max_objects:
                raise LimitExceeded(
                    f"scene_id: scene {sid!r} already has {scene.num_objects} objects, the limit (--max-objects)"
                )
            self.store.make_room(len(pts) * BYTES_PER_POINT + 64, keep=entry, what="object")
            with self.store.device(context):
                oid = scene.add_object(pts, col, transform)
            entry.objects[oid] = {"name": request.name, "num_points": len(pts)}
            self.store.changed(entry)
            return cache_pb2.AddObjectResponse(object=self._object_of(entry, oid))

    def _load_file(self, f: cache_pb2.ObjectFile) -> tuple[np.ndarray, np.ndarray]:
        from .io import load_object

        if not f.data:
            raise ValueError("file.data: empty")
        if not f.filename:
            raise ValueError(
                "file.filename: missing (its extension picks the format: .ply .obj .glb .gltf .stl)"
            )
        samples = f.sample_points or min(DEFAULT_SAMPLE_POINTS, self.limits.max_points)
        if samples > self.limits.max_points:
            raise LimitExceeded(
                f"file.sample_points: {samples} is over the limit of {self.limits.max_points} (--max-points)"
            )
        pts, col = load_object(f.data, filename=f.filename, sample_points=samples)
        if len(pts) > self.limits.max_points:
            raise LimitExceeded(
                f"file: {len(pts)} points is over the limit of {self.limits.max_points} (--max-points)"
            )
        return pts, col

    @staticmethod
    def _object_id(request) -> int:
        if request.object_id < 0:
            raise ValueError(f"object_id: must be >= 0, got {request.object_id}")
        return request.object_id

    @_rpc
    def PlaceObject(self, request, context):
        sid, oid = self._scene_id(request), self._object_id(request)
        has_u, has_v = request.HasField("anchor_u"), request.HasField("anchor_v")
        if has_u != has_v:
            raise ValueError("anchor_u: set both anchor_u and anchor_v, or neither")
        anchor = (request.anchor_u, request.anchor_v) if has_u else None
        if anchor is not None and not all(math.isfinite(a) for a in anchor):
            raise ValueError("anchor_u: anchor coordinates must be finite")
        height = request.height if request.HasField("height") else None
        if height is not None and not (math.isfinite(height) and height > 0):
            raise ValueError(f"height: must be finite and > 0, got {height}")
        with self.store.use(sid, context) as entry, entry.lock:
            self._require_object(entry, oid)
            if entry.scene.seed_camera is None:
                raise Precondition(
                    f"scene_id: scene {sid!r} has no seed view (built from points): use UpdateObject"
                )
            with self.store.device(context):
                entry.scene.place_object(oid, anchor_px=anchor, height=height)
            self.store.changed(entry)
            return cache_pb2.PlaceObjectResponse(object=self._object_of(entry, oid))

    @_rpc
    def UpdateObject(self, request, context):
        sid, oid = self._scene_id(request), self._object_id(request)
        if not request.HasField("transform"):
            raise ValueError("transform: missing")
        transform = decode_transform(request.transform, "transform")
        with self.store.use(sid, context) as entry, entry.lock:
            self._require_object(entry, oid)
            with self.store.device(context):
                entry.scene.set_transform(oid, transform)
            self.store.changed(entry)
            return cache_pb2.UpdateObjectResponse(object=self._object_of(entry, oid))

    @_rpc
    def RemoveObject(self, request, context):
        sid, oid = self._scene_id(request), self._object_id(request)
        with self.store.use(sid, context) as entry, entry.lock:
            self._require_object(entry, oid)
            with self.store.device(context):
                entry.scene.remove_object(oid)
            entry.objects.pop(oid, None)
            self.store.changed(entry)
        return cache_pb2.RemoveObjectResponse()

    # -- rendering ------------------------------------------------------------------------------------

    @_rpc
    def Render(self, request, context):
        t0 = time.perf_counter()
        sid = self._scene_id(request)
        if not request.HasField("camera"):
            raise ValueError("camera: missing")
        K, w2c, width, height = decode_camera(request.camera, "camera", self.limits)
        spec = parse_options(request.options)
        with self.store.use(sid, context) as entry:
            scene = entry.scene
            t1 = time.perf_counter()
            with self.store.device(context):
                t2 = time.perf_counter()
                out = scene.render(w2c[None], K[None], height, width, **spec.kwargs())
                t3 = time.perf_counter()
                host = outputs_to_host(out, spec.outputs)
                del out
            t4 = time.perf_counter()
        self._count_frames(1)
        data = encode_render_response(host, 0, spec.png)  # serialized RenderResponse
        del host  # the pinned staging block goes back to torch's host cache now
        self.stages.observe(sid, t0, t1, t2, t3, t4, time.perf_counter())
        return data

    def _trajectory_cameras(self, request, entry: SceneEntry):
        """(w2cs (T, 4, 4), Ks (T, 3, 3), width, height) from explicit cameras or a TrajectorySpec."""
        has_traj = request.HasField("trajectory")
        if request.cameras and has_traj:
            raise ValueError("cameras: give explicit cameras or a trajectory, not both")
        if request.cameras:
            n = len(request.cameras)
            if n > self.limits.max_cameras:
                raise LimitExceeded(
                    f"cameras: {n} cameras is over the limit of {self.limits.max_cameras} (--max-cameras)"
                )
            Ks, w2cs = np.empty((n, 3, 3)), np.empty((n, 4, 4))
            size = None
            for i, cam in enumerate(request.cameras):
                Ks[i], w2cs[i], w, h = decode_camera(cam, f"cameras[{i}]", self.limits)
                if size is None:
                    size = (w, h)
                elif (w, h) != size:
                    raise ValueError(
                        f"cameras[{i}]: size {w}x{h} differs from cameras[0] ({size[0]}x{size[1]})"
                    )
            return w2cs, Ks, size[0], size[1]
        if not has_traj:
            raise ValueError("cameras: missing (give explicit cameras or a trajectory)")
        spec = request.trajectory
        preset, rotation = trajectory.preset_name(spec.preset), trajectory.rotation_name(spec.rotation)
        frames = spec.frame_count or trajectory.DEFAULT_NUM_FRAMES
        if frames > self.limits.max_cameras:
            raise LimitExceeded(
                f"trajectory.frame_count: {frames} is over the limit of {self.limits.max_cameras} (--max-cameras)"
            )
        distance = spec.movement_distance or trajectory.DEFAULT_MOVEMENT_DISTANCE
        center = spec.center_depth or trajectory.DEFAULT_CENTER_DEPTH
        for fname, v in (("movement_distance", distance), ("center_depth", center)):
            if not math.isfinite(v):
                raise ValueError(f"trajectory.{fname}: must be finite, got {v}")
        if not center > 0:
            raise ValueError(f"trajectory.center_depth: must be > 0, got {center}")
        seed = entry.info.get("seed_camera")
        if not seed:
            raise Precondition(
                f"scene_id: scene {entry.scene_id!r} has no seed camera (built from points): pass explicit cameras"
            )
        K0 = np.array(seed["K"], np.float64).reshape(3, 3)
        w2c0 = np.array(seed["w2c"], np.float64).reshape(4, 4)
        w2cs, Ks = trajectory.generate_camera_trajectory(
            preset, w2c0, K0, frames, distance, rotation, center_depth=center
        )
        w2cs = np.asarray(w2cs, np.float64).reshape(-1, 4, 4)
        Ks = np.asarray(Ks, np.float64).reshape(-1, 3, 3)
        for i in range(len(w2cs)):
            check_transform(w2cs[i], f"trajectory: generated camera {i}")
        return w2cs, Ks, seed["width"], seed["height"]

    @_rpc_stream
    def RenderTrajectory(self, request, context) -> Iterator[cache_pb2.RenderTrajectoryResponse]:
        sid = self._scene_id(request)
        spec = parse_options(request.options)
        with self.store.use(sid, context) as entry:
            w2cs, Ks, width, height = self._trajectory_cameras(request, entry)
            total = len(w2cs)
            batch = max(
                1, min(self.trajectory_batch, self.trajectory_batch * _BATCH_PIXELS // (8 * width * height))
            )
            scene = entry.scene
            for start in range(0, total, batch):
                if not context.is_active():
                    raise Cancelled("client went away")
                stop = min(start + batch, total)
                with self.store.device(context):
                    out = scene.render(w2cs[start:stop], Ks[start:stop], height, width, **spec.kwargs())
                    host = outputs_to_host(out, spec.outputs)
                    del out
                self._count_frames(stop - start)
                # Serialized RenderTrajectoryResponse messages (encoded before the staging memory goes).
                responses = [
                    encode_trajectory_response(host, t, start + t, total, spec.png)
                    for t in range(stop - start)
                ]
                del host
                yield from responses
            log.debug("event=trajectory_done scene=%s frames=%d", sid, total)

    # -- long videos ----------------------------------------------------------------------------------

    @_rpc
    def UpdateScene(self, request, context):
        import torch

        from .align import align_depth

        sid = self._scene_id(request)
        if not request.HasField("view"):
            raise ValueError("view: missing")
        image, depth, mask, K, w2c = decode_view(request.view, "view", self.limits)
        height, width = depth.shape
        # Upstream update_cache: NaN -> 1e4, clamp to [0, 1e4] before aligning.
        depth = np.clip(np.nan_to_num(depth, nan=1e4, posinf=1e4, neginf=0.0), 0.0, 1e4).astype(np.float32)
        report = cache_pb2.AlignmentReport()
        with self.store.use(sid, context) as entry, entry.lock:
            scene = entry.scene
            if scene.num_slots < 2:
                self.store.make_room(height * width * BYTES_PER_POINT, keep=entry, what="view")
            with self.store.device(context):
                if not request.skip_alignment:
                    out = scene.render(
                        w2c[None],
                        K[None],
                        height,
                        width,
                        mode="scene",
                        splat="gen3c",
                        outputs=("mask", "depth"),
                        slots=[0],  # GEN3C aligns to the newest buffer slot only
                    )
                    target_depth, target_mask = out.depth[0, 0], out.mask[0, 0]
                    dev = target_depth.device
                    aligned, valid, rep = align_depth(
                        torch.from_numpy(depth).to(dev),
                        target_depth,
                        target_mask,
                        torch.from_numpy(K).to(dev),
                        torch.from_numpy(w2c).to(dev),
                    )
                    depth = aligned.cpu().numpy()
                    valid = valid.cpu().numpy()
                    mask = valid if mask is None else (mask & valid)
                    report = cache_pb2.AlignmentReport(
                        scale=rep.scale,
                        shift=rep.shift,
                        error_before=rep.error_before,
                        error_after=rep.error_after,
                        pixels_used=rep.pixels_used,
                    )
                scene.add_view(image, depth, K, w2c, mask=mask)
            self.store.changed(entry)
            log.info(
                "event=scene_updated scene=%s slots=%d scale=%.6g shift=%.6g err_before=%.4g err_after=%.4g",
                sid,
                scene.num_slots,
                report.scale,
                report.shift,
                report.error_before,
                report.error_after,
            )
            return cache_pb2.UpdateSceneResponse(scene=self._scene_info(entry), alignment=report)


# ---------------------------------------------------------------------------------------------------
# Server


class CacheServer:
    """A running cache service: gRPC (health, reflection, optional TLS/mTLS/token) + optional /metrics."""

    def __init__(self, config: ServerConfig) -> None:
        from .auth import BearerTokenInterceptor

        self.config = config
        self.metrics = CacheMetrics()
        self.servicer = CacheServicer(
            config.device,
            config.memory_budget,
            snapshot_dir=config.snapshot_dir,
            limits=config.limits,
            metrics=self.metrics,
            trajectory_batch=config.trajectory_batch,
        )
        interceptors = []
        if config.token:
            interceptors.append(
                BearerTokenInterceptor(
                    config.token,
                    on_reject=lambda m: self.metrics.observe(m.rsplit("/", 1)[-1], "UNAUTHENTICATED", 0.0),
                )
            )
        self.gc_pauses = GcPauses(self.metrics.registry)
        self.metrics_port = None
        if config.metrics_port:
            self.metrics_port = self.metrics.serve_http(config.metrics_port, config.metrics_host)
        try:
            self.handle = wire.build_server(
                [(add_cache_service, self.servicer, SERVICE_NAME)],
                host=config.host,
                port=config.port,
                max_workers=config.workers,
                interceptors=interceptors,
                tls_cert=config.tls_cert,
                tls_key=config.tls_key,
                tls_client_ca=config.tls_client_ca,
            )
        except BaseException:
            self.metrics.stop_http()
            self.gc_pauses.close()
            raise
        self.port = self.handle.port
        log.info(
            "event=cache_server_started port=%d device=%s budget=%d snapshots=%s token=%s tls=%s mtls=%s",
            self.port,
            config.device,
            config.memory_budget,
            config.snapshot_dir or "-",
            bool(config.token),
            bool(config.tls_cert),
            bool(config.tls_client_ca),
        )

    @property
    def store(self) -> SceneStore:
        return self.servicer.store

    @property
    def address(self) -> str:
        return f"{self.config.host}:{self.port}"

    def stop(self, grace: float | None = 2.0) -> None:
        """Health NOT_SERVING, finish in-flight calls within ``grace`` seconds, stop /metrics."""
        self.handle.set_serving(False)
        self.handle.stop(grace)
        self.store.close()  # queued snapshots reach the disk
        self.metrics.stop_http()
        self.gc_pauses.close()
        log.info("event=cache_server_stopped port=%d", self.port)

    def wait(self) -> None:
        self.handle.wait()
