"""gRPC adapter of the cache renderer: ``objvid.v1.CacheService`` over ``objvid.cache.Scene`` + ``SceneStore``.

Each handler decodes its request (``requests.py``: errors name the field; ``object_rpc.py``: object files;
``trajectory_rpc.py``, ``multiview_rpc.py``, ``video_rpc.py``), calls the core (``Scene``, ``SceneStore``;
changes journaled as ``journal.py`` ops) and encodes the answer (``info.py``, ``frames.py``). Status mapping, deadline check,
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
import threading
import time
from collections.abc import Iterator

import numpy as np

from objvid.runtime import wire
from objvid.runtime.memguard import HostMemoryGuard
from objvid.runtime.shm import RegionWriter
from objvid.serving.status import guard_stream, guard_unary
from objvid.v1 import cache_pb2, cache_pb2_grpc

from . import journal, multiview_rpc, trajectory_rpc
from .frames import (
    encode_render_response,
    encode_trajectory_response,
    outputs_to_host,
    write_render_response_shm,
)
from .info import alignment_report, describe_scene, object_of, scene_info
from .io_limits import LoadLimits
from .metrics import CacheMetrics, RenderStages
from .object_rpc import load_file
from .parse_pool import ParsePool
from .requests import (
    Limits,
    check_shm_request,
    decode_camera,
    decode_cloud,
    decode_placement,
    decode_transform,
    decode_view,
    filter_threshold,
    fingerprint,
    object_id,
    parse_options,
    scene_id,
    view_pixels,
)
from .store import Cancelled, LimitExceeded, Precondition, SceneEntry, SceneNotFound, SceneStore

log = logging.getLogger("objvid.cache.service")

SERVICE_NAME = "objvid.v1.CacheService"
#: Device bytes per scene point assumed before a scene exists (xyz float32 + packed colour int32).
BYTES_PER_POINT = 16
#: Cameras rendered per device turn in RenderTrajectory (scaled down for large images; the first turns ramp
#: up 2, 4, ...: trajectory_rpc).
TRAJECTORY_BATCH = 8
#: Host bytes per output pixel and frame a render holds at its peak (see CacheServicer._render_memory).
RENDER_HOST_BYTES_CPU = 200
RENDER_HOST_BYTES_CUDA = 16


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
        load_limits: LoadLimits | None = None,
        parse_pool: ParsePool | None = None,
        host_guard: HostMemoryGuard | None = None,
        snapshot_disk_budget: int = 0,
    ) -> None:
        from .dynamic import scene_from_state

        self.device = device
        self.limits = limits or Limits()
        self.metrics = metrics or CacheMetrics()
        self.trajectory_batch = max(1, int(trajectory_batch))
        self.frames_rendered = 0  # also in metrics; read by tests
        self.stages = RenderStages(self.metrics.registry)
        self._frames_lock = threading.Lock()
        self.load_limits = load_limits or LoadLimits(max_points=self.limits.max_points)
        self.parse_pool = parse_pool or ParsePool(limits=self.load_limits)
        self.host_guard = host_guard or HostMemoryGuard(0)
        self._shm_writer = RegionWriter()  # same-host clients' shared-memory regions (Render)
        self.store = SceneStore(
            device,
            memory_budget,
            snapshot_dir=snapshot_dir,
            describe=describe_scene,
            scene_factory=scene_from_state,
            metrics=self.metrics,
            disk_budget=snapshot_disk_budget,
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

    def _render_memory(self, frames: int, width: int, height: int, what: str):
        """Host memory a render of ``frames`` cameras holds at its peak, reserved before it starts: on a CPU
        device the renderer's buffers live in host memory (~200 bytes per output pixel, measured: a 4096^2
        scene rendered twice peaked at 6.8 GB), on CUDA only the staged outputs (~16 bytes per pixel)."""
        per_pixel = RENDER_HOST_BYTES_CUDA if str(self.device).startswith("cuda") else RENDER_HOST_BYTES_CPU
        return self.host_guard.reserve(per_pixel * frames * width * height, what)

    @staticmethod
    def _require_object(entry: SceneEntry, oid: int) -> None:
        if oid not in entry.scene.object_ids:
            raise SceneNotFound(f"object_id: scene {entry.scene_id!r} has no object {oid}")

    # -- scenes ---------------------------------------------------------------------------------------

    @guard_unary
    def CreateScene(self, request, context):
        from .scene import Scene

        threshold = filter_threshold(request)
        source = request.WhichOneof("source")
        if request.scene_id:
            self.store.check_id(request.scene_id)
        if source == "rgbd":
            image, depth, mask, K, w2c = self._decode_view(request.rgbd, "rgbd")
            npoints = depth.size

            def build():
                return Scene.from_rgbd(
                    image,
                    depth,
                    K,
                    w2c,
                    mask=mask,
                    device=self.device,
                    filter_points_threshold=threshold,
                )

        elif source == "views":
            build, npoints = multiview_rpc.scene_builder(
                request.views, decode_view, self.limits, self.device, threshold
            )
        elif source == "points":
            pts, col = decode_cloud(request.points, "points", self.limits)
            npoints = len(pts)

            def build():
                return Scene.from_points(pts, col, device=self.device)

        else:
            raise ValueError("source: missing (set `rgbd`, `views` or `points`)")
        if npoints > self.limits.max_points:
            raise LimitExceeded(
                f"{source}: {npoints} points is over the limit of {self.limits.max_points} (--max-points)"
            )
        key = request.idempotency_key
        entry = self.store.create(
            build,
            estimate_bytes=npoints * BYTES_PER_POINT,
            scene_id=request.scene_id or None,
            context=context,
            idempotency_key=key,
            fingerprint=fingerprint(request) if key else "",
        )
        return cache_pb2.CreateSceneResponse(scene=scene_info(entry, self.device))

    def _decode_view(self, msg, name: str):
        """decode_view inside a host-memory reservation (~16 bytes per pixel: image, depth, mask, copies)."""
        with self.host_guard.reserve(16 * view_pixels(msg, name, self.limits), name):
            return decode_view(msg, name, self.limits)

    @guard_unary
    def CreateVideoScene(self, request_iterator, context):
        """A video scene (``objvid.cache.dynamic.DynamicScene``) from a stream of posed RGB-D frames."""
        from . import video_rpc

        scene_id, opts, frames = video_rpc.read_video_stream(request_iterator, self.limits)
        build, nbytes = video_rpc.video_builder(frames, opts, self.device)
        entry = self.store.create(build, estimate_bytes=nbytes, scene_id=scene_id or None, context=context)
        return cache_pb2.CreateVideoSceneResponse(scene=scene_info(entry, self.device))

    @guard_unary
    def GetScene(self, request, context):
        entry = self.store.entry(scene_id(request))
        return cache_pb2.GetSceneResponse(scene=scene_info(entry, self.device))

    @guard_unary
    def ListScenes(self, request, context):
        return cache_pb2.ListScenesResponse(scenes=[scene_info(e, self.device) for e in self.store.entries()])

    @guard_unary
    def DeleteScene(self, request, context):
        self.store.delete(scene_id(request))
        return cache_pb2.DeleteSceneResponse()

    @guard_unary
    def ExportScene(self, request, context):
        with self.store.use(scene_id(request), context) as entry:
            with self.store.device(context):
                if request.HasField("object_id"):
                    self._require_object(entry, request.object_id)
                    ply, count = entry.scene.export_object(request.object_id)
                else:
                    ply, count = entry.scene.export(include_objects=not request.exclude_objects)
        if len(ply) > wire.MAX_MESSAGE_BYTES - 1024:
            raise LimitExceeded(f"scene_id: the export is {len(ply)} bytes, over the message limit")
        return cache_pb2.ExportSceneResponse(ply=ply, num_points=count)

    # -- objects --------------------------------------------------------------------------------------

    @guard_unary
    def AddObject(self, request, context):
        sid = scene_id(request)
        transform = (
            decode_transform(request.transform, "transform") if request.HasField("transform") else None
        )
        source = request.WhichOneof("source")
        if len(request.name) > 256:
            raise ValueError("name: at most 256 characters")
        key = request.idempotency_key
        fp = fingerprint(request) if key else ""
        if key:  # a retry of an AddObject that already succeeded: its answer, without parsing again
            with self.store.use(sid, context) as entry, entry.lock:
                done = self.store.recall(entry, key, fp)
                if done is not None:
                    return cache_pb2.AddObjectResponse(object=object_of(entry, int(done["oid"])))
        normals = None  # no normals: no culling (raw clouds, PLY clouds without nx/ny/nz)
        if source == "cloud":
            pts, col = decode_cloud(request.cloud, "cloud", self.limits)
        elif source == "file":  # meshes / PLY with normals: back-face culling (objvid.cache.normals)
            pts, col, normals = load_file(
                request.file, self.parse_pool, self.load_limits, self.host_guard, context
            )
        else:
            raise ValueError("source: missing (set `cloud` or `file`)")
        with self.store.use(sid, context) as entry, entry.lock:
            done = self.store.recall(entry, key, fp)
            if done is not None:  # the same key finished while this one parsed
                return cache_pb2.AddObjectResponse(object=object_of(entry, int(done["oid"])))
            scene = entry.scene
            if scene.num_objects >= self.limits.max_objects:
                raise LimitExceeded(
                    f"scene_id: scene {sid!r} already has {scene.num_objects} objects, the limit (--max-objects)"
                )
            self.store.make_room(len(pts) * BYTES_PER_POINT + 64, keep=entry, what="object")
            with self.store.device(context):
                oid = scene.add_object(pts, col, transform, normals=normals)
            meta = {"name": request.name, "num_points": len(pts)}
            entry.objects[oid] = meta
            self.store.changed(entry, journal.add_object_op(pts, col, transform, normals, oid, meta, key, fp))
            return cache_pb2.AddObjectResponse(object=object_of(entry, oid))

    @guard_unary
    def PlaceObject(self, request, context):
        sid, oid = scene_id(request), object_id(request)
        anchor, height, scale = decode_placement(request)
        with self.store.use(sid, context) as entry, entry.lock:
            self._require_object(entry, oid)
            if entry.scene.seed_camera is None:
                raise Precondition(
                    f"scene_id: scene {sid!r} has no seed view (built from points): use UpdateObject"
                )
            with self.store.device(context):
                entry.scene.place_object(oid, anchor_px=anchor, height=height, scale=scale)
                placed = np.asarray(entry.scene.get_transform(oid), np.float64)
            self.store.changed(entry, {"kind": "set_transform", "oid": oid, "transform": placed})
            return cache_pb2.PlaceObjectResponse(object=object_of(entry, oid))

    @guard_unary
    def UpdateObject(self, request, context):
        sid, oid = scene_id(request), object_id(request)
        if not request.HasField("transform"):
            raise ValueError("transform: missing")
        transform = decode_transform(request.transform, "transform")
        with self.store.use(sid, context) as entry, entry.lock:
            self._require_object(entry, oid)
            with self.store.device(context):
                entry.scene.set_transform(oid, transform)
            self.store.changed(entry, {"kind": "set_transform", "oid": oid, "transform": transform})
            return cache_pb2.UpdateObjectResponse(object=object_of(entry, oid))

    @guard_unary
    def RemoveObject(self, request, context):
        sid, oid = scene_id(request), object_id(request)
        with self.store.use(sid, context) as entry, entry.lock:
            self._require_object(entry, oid)
            with self.store.device(context):
                entry.scene.remove_object(oid)
            entry.objects.pop(oid, None)
            self.store.changed(entry, {"kind": "remove_object", "oid": oid})
        return cache_pb2.RemoveObjectResponse()

    # -- rendering ------------------------------------------------------------------------------------

    @guard_unary
    def Render(self, request, context):
        t0 = time.perf_counter()
        sid = scene_id(request)
        if not request.HasField("camera"):
            raise ValueError("camera: missing")
        K, w2c, width, height = decode_camera(request.camera, "camera", self.limits)
        spec = parse_options(request.options)
        shm = check_shm_request(request, spec) if request.HasField("shm") else None
        with self.store.use(sid, context) as entry, self._render_memory(1, width, height, "camera"):
            scene = entry.scene
            t1 = time.perf_counter()
            with self.store.device(context):
                t2 = time.perf_counter()
                selection = multiview_rpc.plan(scene, w2c[None], K[None], height, width, spec,
                                               request.options.all_sources)  # fmt: skip
                out, sources = multiview_rpc.render(
                    scene, w2c[None], K[None], height, width, spec, selection, 0, 1
                )
                t3 = time.perf_counter()
                host = outputs_to_host(out, spec.outputs, **spec.wire_kwargs())
                if sources is not None:
                    host["_slot_sources"] = sources
                del out
            t4 = time.perf_counter()
        self._count_frames(1)
        if shm is not None:  # same-host client: the frame goes into its region, the answer is its size
            data = write_render_response_shm(self._shm_writer, shm, host)
        else:
            data = encode_render_response(host, 0, spec.png)  # serialized RenderResponse
        del host  # the pinned staging block goes back to torch's host cache now
        self.stages.observe(sid, t0, t1, t2, t3, t4, time.perf_counter())
        return data

    @guard_stream
    def RenderTrajectory(self, request, context) -> Iterator[cache_pb2.RenderTrajectoryResponse]:
        sid = scene_id(request)
        spec = parse_options(request.options)
        with self.store.use(sid, context) as entry:
            w2cs, Ks, width, height, video = trajectory_rpc.trajectory_request(request, entry, self.limits)
            total = len(w2cs)
            batch = trajectory_rpc.batch_size(self.trajectory_batch, width, height)
            scene = entry.scene
            with self.store.device(context):
                selection = multiview_rpc.plan(
                    scene, w2cs, Ks, height, width, spec, request.options.all_sources
                )
            for start, stop in trajectory_rpc.trajectory_batches(total, batch):
                if not context.is_active():
                    raise Cancelled("client went away")
                with (
                    self._render_memory(stop - start, width, height, "trajectory"),
                    self.store.device(context),
                ):
                    host = trajectory_rpc.render_batch(
                        scene, w2cs, Ks, height, width, spec, selection, start, stop, video
                    )
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
        from .update import add_prepared_view, prepare_view

        sid = scene_id(request)
        if not request.HasField("view"):
            raise ValueError("view: missing")
        image, depth, mask, K, w2c = self._decode_view(request.view, "view")
        height, width = depth.shape
        key = request.idempotency_key
        fp = fingerprint(request) if key else ""
        with self.store.use(sid, context) as entry, entry.lock:
            done = self.store.recall(entry, key, fp)
            if done is not None:  # a retry of an UpdateScene that already succeeded
                return cache_pb2.UpdateSceneResponse(
                    scene=scene_info(entry, self.device), alignment=cache_pb2.AlignmentReport(**done)
                )
            scene = entry.scene
            if getattr(scene, "is_multiview", False):
                raise Precondition(f"scene_id: scene {sid!r} has several source views and is not updated "
                                   "(render every chunk from the sources, as upstream's multi-view)")  # fmt: skip
            if scene.num_slots < 2:
                self.store.make_room(height * width * BYTES_PER_POINT, keep=entry, what="view")
            with self.store.device(context):
                depth, mask, rep = prepare_view(
                    scene, depth, K, w2c, mask=mask, align=not request.skip_alignment
                )
                add_prepared_view(scene, image, depth, K, w2c, mask=mask, aligned=not request.skip_alignment)
            report, result = alignment_report(rep)
            self.store.changed(entry, journal.add_view_op(image, depth, K, w2c, mask, key, fp, result))
            log.info(
                "event=scene_updated scene=%s slots=%d scale=%.6g shift=%.6g err_before=%.4g err_after=%.4g",
                sid, scene.num_slots, report.scale, report.shift, report.error_before, report.error_after,
            )  # fmt: skip
            return cache_pb2.UpdateSceneResponse(scene=scene_info(entry, self.device), alignment=report)
