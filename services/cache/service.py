"""gRPC adapter of the cache renderer: ``objvid.v1.CacheService`` over ``objvid.cache.Scene`` + ``SceneStore``.

Each handler decodes its request (``requests.py``: errors name the field), calls the core (``Scene``,
``SceneStore``) and encodes the answer (``info.py``, ``frames.py``). Status mapping, deadline check,
metrics and logs come from ``objvid.serving.status`` guards: a bad field -> INVALID_ARGUMENT naming it; an
unknown scene or object -> NOT_FOUND (for scenes: "create it again"); over a limit or the memory budget ->
RESOURCE_EXHAUSTED; a deadline that passes while queued -> DEADLINE_EXCEEDED; anything unexpected ->
INTERNAL with a one-line message and one log line. The server never dies on a request.

Hot path (``Render``): decode + check the camera (tens of us), one library render of only the requested outputs
under the FIFO device lock, one device->host copy of all of them (CUDA), then the response bytes are
written directly from the host arrays (``frames.py``: one copy of the pixels, no protobuf round trip).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterator

import numpy as np

from objvid.runtime import wire
from objvid.serving.status import guard_stream, guard_unary
from objvid.v1 import cache_pb2, cache_pb2_grpc

from .frames import encode_render_response, encode_trajectory_response, outputs_to_host
from .info import describe_scene, object_info, scene_info
from .io import DEFAULT_SAMPLE_POINTS
from .metrics import CacheMetrics, RenderStages
from .requests import (
    Limits,
    decode_camera,
    decode_cloud,
    decode_transform,
    decode_view,
    parse_options,
    trajectory_cameras,
)
from .store import Cancelled, LimitExceeded, Precondition, SceneEntry, SceneNotFound, SceneStore

log = logging.getLogger("objvid.cache.service")

SERVICE_NAME = "objvid.v1.CacheService"
#: Device bytes per scene point assumed before a scene exists (xyz float32 + packed colour int32).
BYTES_PER_POINT = 16
#: Cameras rendered per device turn in RenderTrajectory (scaled down for large images).
TRAJECTORY_BATCH = 8
_BATCH_PIXELS = 8 * 704 * 1280


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
            describe=describe_scene,
            scene_factory=Scene.from_state_dict,
            metrics=self.metrics,
        )

    # -- plumbing -------------------------------------------------------------------------------------

    log = log  # the guards log here

    def observe_rpc(self, method: str, code: str, seconds: float) -> None:
        """Called by ``objvid.serving.status`` guards once per finished RPC."""
        self.metrics.observe(method, code, seconds)
        log.debug("event=rpc method=%s code=%s ms=%.2f", method, code, seconds * 1e3)

    def _count_frames(self, n: int) -> None:
        with self._frames_lock:
            self.frames_rendered += n
        self.metrics.frames.inc(n)

    def _object_of(self, entry: SceneEntry, oid: int) -> cache_pb2.ObjectInfo:
        for obj in entry.info.get("objects", []):
            if obj["id"] == oid:
                return object_info(obj)
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

    @guard_unary
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
        return cache_pb2.CreateSceneResponse(scene=scene_info(entry, self.device))

    @guard_unary
    def GetScene(self, request, context):
        entry = self.store.entry(self._scene_id(request))
        return cache_pb2.GetSceneResponse(scene=scene_info(entry, self.device))

    @guard_unary
    def ListScenes(self, request, context):
        return cache_pb2.ListScenesResponse(scenes=[scene_info(e, self.device) for e in self.store.entries()])

    @guard_unary
    def DeleteScene(self, request, context):
        self.store.delete(self._scene_id(request))
        return cache_pb2.DeleteSceneResponse()

    @guard_unary
    def ExportScene(self, request, context):
        with self.store.use(self._scene_id(request), context) as entry:
            with self.store.device(context):
                ply, count = entry.scene.export(include_objects=not request.exclude_objects)
        if len(ply) > wire.MAX_MESSAGE_BYTES - 1024:
            raise LimitExceeded(f"scene_id: the export is {len(ply)} bytes, over the message limit")
        return cache_pb2.ExportSceneResponse(ply=ply, num_points=count)

    # -- objects --------------------------------------------------------------------------------------

    @guard_unary
    def AddObject(self, request, context):
        sid = self._scene_id(request)
        transform = (
            decode_transform(request.transform, "transform") if request.HasField("transform") else None
        )
        source = request.WhichOneof("source")
        normals = None  # no normals: no culling (raw clouds, PLY clouds without nx/ny/nz)
        if source == "cloud":
            pts, col = decode_cloud(request.cloud, "cloud", self.limits)
        elif source == "file":  # meshes / PLY with normals: back-face culling (objvid.cache.normals)
            pts, col, normals = self._load_file(request.file)
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
                oid = scene.add_object(pts, col, transform, normals=normals)
            entry.objects[oid] = {"name": request.name, "num_points": len(pts)}
            self.store.changed(entry)
            return cache_pb2.AddObjectResponse(object=self._object_of(entry, oid))

    def _load_file(self, f: cache_pb2.ObjectFile) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
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
        pts, col, normals = load_object(f.data, filename=f.filename, sample_points=samples, with_normals=True)
        if len(pts) > self.limits.max_points:
            raise LimitExceeded(
                f"file: {len(pts)} points is over the limit of {self.limits.max_points} (--max-points)"
            )
        return pts, col, normals

    @staticmethod
    def _object_id(request) -> int:
        if request.object_id < 0:
            raise ValueError(f"object_id: must be >= 0, got {request.object_id}")
        return request.object_id

    @guard_unary
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
        scale = request.scale if request.HasField("scale") else None
        if scale is not None and not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"scale: must be finite and > 0, got {scale}")
        with self.store.use(sid, context) as entry, entry.lock:
            self._require_object(entry, oid)
            if entry.scene.seed_camera is None:
                raise Precondition(
                    f"scene_id: scene {sid!r} has no seed view (built from points): use UpdateObject"
                )
            with self.store.device(context):
                entry.scene.place_object(oid, anchor_px=anchor, height=height, scale=scale)
            self.store.changed(entry)
            return cache_pb2.PlaceObjectResponse(object=self._object_of(entry, oid))

    @guard_unary
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

    @guard_unary
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

    @guard_unary
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

    @guard_stream
    def RenderTrajectory(self, request, context) -> Iterator[cache_pb2.RenderTrajectoryResponse]:
        sid = self._scene_id(request)
        spec = parse_options(request.options)
        with self.store.use(sid, context) as entry:
            w2cs, Ks, width, height = trajectory_cameras(
                request, entry.info.get("seed_camera"), entry.scene_id, self.limits
            )
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

    @guard_unary
    def UpdateScene(self, request, context):
        sid = self._scene_id(request)
        if not request.HasField("view"):
            raise ValueError("view: missing")
        image, depth, mask, K, w2c = decode_view(request.view, "view", self.limits)
        height, width = depth.shape
        with self.store.use(sid, context) as entry, entry.lock:
            scene = entry.scene
            if scene.num_slots < 2:
                self.store.make_room(height * width * BYTES_PER_POINT, keep=entry, what="view")
            with self.store.device(context):
                rep = scene.update_from_view(
                    image, depth, K, w2c, mask=mask, align=not request.skip_alignment
                )
            self.store.changed(entry)
            report = cache_pb2.AlignmentReport()
            if rep is not None:
                report = cache_pb2.AlignmentReport(
                    scale=rep.scale,
                    shift=rep.shift,
                    error_before=rep.error_before,
                    error_after=rep.error_after,
                    pixels_used=rep.pixels_used,
                )
            log.info(
                "event=scene_updated scene=%s slots=%d scale=%.6g shift=%.6g err_before=%.4g err_after=%.4g",
                sid, scene.num_slots, report.scale, report.shift, report.error_before, report.error_after,
            )  # fmt: skip
            return cache_pb2.UpdateSceneResponse(scene=scene_info(entry, self.device), alignment=report)
