"""The stages every scene command shares, each a function of (run, plan): depth, cameras, scene and
placement, render. ``generate`` adds diffusion, scene update and encoding (``objvid.client.generate``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np

from objvid.client import camera_path as campath
from objvid.client import object_size
from objvid.client.errors import ServiceError
from objvid.client.plan import Plan, make_plan
from objvid.client.run import Run
from objvid.client.sdk import RenderedFrame, SceneSession
from objvid.client.sources import SourceView
from objvid.v1 import cache_pb2, types_pb2

log = logging.getLogger("objvid.client.stages")

#: Seconds the teardown waits for DeleteScene (it may run after Ctrl-C: short).
DELETE_TIMEOUT_S = 10.0
#: Depth given to invalid pixels: far away (the cache clamps it), as GEN3C does (1000, as upstream's
#: update_cache sees it); the scene's first view uses +inf (the same after the clamp to 100) so that the
#: cache's clamp warning (objvid.cache.units) counts only finite, i.e. valid, depth.
FAR_DEPTH = 1000.0


def inputs(run: Run) -> Plan:
    """Stage ``inputs``: every option checked and every input file read (no network)."""
    with run.stage("inputs"):
        plan, records = make_plan(run.config, run.command)
        run.manifest.update(records)
    return plan


def depth(run: Run, plan: Plan) -> None:
    """Stage ``depth``: the input mode's views (the depth service lifts them unless depth was given)."""

    def lift(images: Sequence[np.ndarray], width: int, height: int, **kw) -> list:
        return run.client.lift(images, width=width, height=height, **kw)

    def lift_views(images: Sequence[np.ndarray], width: int, height: int) -> list:
        return run.client.lift_views(images, width=width, height=height)

    def progress(done: int, total: int, text: str) -> None:  # modes with several depth calls
        run.reporter.update("depth", done, total, text)

    lift.posed = lift_views  # the geometry model's posed lifting (LiftViews), for multi-view modes
    lift.progress = progress
    mode = type(plan.source)
    if not mode.needs_lift(run.config):
        plan.views, run.manifest["depth"] = plan.source.views(lift)
        return
    with run.stage("depth", 1, "lifting the video" if plan.video else "lifting the image"):
        plan.views, run.manifest["depth"] = plan.source.views(lift)
        run.reporter.update("depth", 1)


def cameras(run: Run, plan: Plan) -> tuple[np.ndarray, np.ndarray]:
    """(Ks (T, 3, 3), w2cs (T, 4, 4)) of the video; written to ``<workdir>/cameras.json``."""
    custom = None if plan.path is not None else plan.source.cameras(plan.preset_w2cs, plan.frames)
    if plan.path is not None:
        Ks, w2cs = plan.path.Ks, plan.path.w2cs
    elif custom is not None:  # multi-view: the npz trajectory or the preset from the seed view
        Ks, w2cs, _ = custom
    else:  # GEN3C repeats the scene's K along the preset's poses
        Ks, w2cs = np.broadcast_to(plan.view.K, (plan.frames, 3, 3)).copy(), plan.preset_w2cs
    record = plan.source.manifest_record()
    if record is not None:
        run.manifest["views"] = record
    campath.save_camera_path(run.workdir / "cameras.json", plan.width, plan.height, Ks, w2cs)
    return Ks, w2cs


def rgbd(client, view: SourceView, mask: np.ndarray | None = None, far: float = FAR_DEPTH):
    """A SourceView -> ``objvid.v1.RgbdView`` (invalid depth ``far`` away, as GEN3C's cache does)."""
    d = np.where(view.mask, view.depth, far).astype(np.float32)
    return client.rgbd_view(view.image, d, view.K, view.w2c, mask)


def scene(run: Run, plan: Plan) -> SceneSession:
    """Stages ``scene`` and ``placement``: CreateScene, AddObject, then PlaceObject / UpdateObject."""
    with run.stage("scene", 1 + len(plan.objects), "creating the scene"):
        view = plan.source.scene_message() or rgbd(
            run.client, plan.view, far=np.inf
        )  # several views: RgbdViews
        session = SceneSession(run.client, view, run.config.filter_points_threshold)
        # Deleted when the run ends, however it ends (success, failure, Ctrl-C, SIGTERM): registered before
        # CreateScene is sent, under an id chosen here, so even a scene whose answer was lost goes.
        run.teardown(lambda: delete_scene(session, timeout=DELETE_TIMEOUT_S))
        if plan.video:
            session.video_frames = [rgbd(run.client, v, far=np.inf) for v in plan.source.frames()]
        info = session.create()
        if info.depth_warning:  # more than 1 % of the valid depth over the cache's clamp: wrong unit?
            run.reporter.note(f"warning: {info.depth_warning}")
        run.reporter.update("scene", 1)
        for k, obj in enumerate(plan.objects):
            session.add_object(obj.data, obj.filename, obj.name)
            run.reporter.update("scene", 2 + k)
        run.manifest["scene"] = {
            "scene_id": info.scene_id,
            "num_points": info.num_points,
            "device": info.device,
        }
    if plan.objects:
        with run.stage("placement", len(plan.objects), "placing objects"):
            metric = object_size.metric_scene(run.manifest.get("depth", {}))
            run.manifest["objects"] = [
                _place(
                    session,
                    i,
                    obj,
                    object_size.real_size_scale(obj.filename, run.config.object_units, metric),
                )
                for i, obj in enumerate(plan.objects)
            ]
            run.reporter.update("placement", len(plan.objects))
    track = getattr(plan.source, "track", None)
    if track is not None:  # --object-track moves the first object
        poses = [types_pb2.Transform(matrix=types_pb2.Matrix4(values=np.ravel(T).tolist())) for T in track]
        session.object_tracks = [cache_pb2.ObjectTrack(object_id=session.object_ids[0], poses=poses)]
    return session


def _place(session: SceneSession, i: int, obj, scale: float | None = None) -> dict:
    """``scale``: scene units per object unit when scene and object are both metric (real size), else None
    (the cache's size heuristic); an explicit ``--object-height`` wins."""
    if obj.pose is not None:
        info, how = session.update_object(i, obj.pose), "pose"
    else:
        info = session.place_object(i, obj.anchor, obj.height, scale)
        how = "auto, real size" if scale is not None and obj.height is None else "auto"
    return {"object_id": info.object_id, "name": info.name, "num_points": info.num_points, "placement": how,
            "anchor": obj.anchor, "transform": np.asarray(info.transform.values).reshape(4, 4).tolist()}  # fmt: skip


class RenderBuffers:
    """The renders of one chunk: rgb (T, N, H, W, 3) uint8, mask (T, N, H, W) uint8, objects (T, H, W)
    int16 (object id in the frame's first slot in use, -1 = none); allocated at the first frame (N = the
    scene's buffer slots). sources: per frame, the source view of each slot (multi-view scenes; else [])."""

    def __init__(self, frames: int, height: int, width: int):
        self.shape = (frames, height, width)
        self.rgb = self.mask = self.objects = None
        self.sources: list[list[int]] = [[] for _ in range(frames)]
        self.wire_bytes = 0  # bytes of the frames' messages (cache -> client)

    def add(self, frame: RenderedFrame) -> None:
        t, h, w = self.shape
        if self.rgb is None:
            n = frame.rgb.shape[0]
            self.rgb = np.empty((t, n, h, w, 3), np.uint8)
            self.mask = np.empty((t, n, h, w), np.uint8)
            self.objects = np.full((t, h, w), -1, np.int16)
        self.rgb[frame.index] = frame.rgb
        self.mask[frame.index] = frame.mask
        self.wire_bytes += frame.wire_bytes
        if frame.object_mask is not None:
            self.objects[frame.index] = frame.object_mask[active_slot(frame)]
        if frame.slot_sources is not None:
            self.sources[frame.index] = frame.slot_sources.tolist()


def active_slot(frame: RenderedFrame) -> int:
    """The first buffer slot in use in a frame (multi-view scenes empty some slots; else 0)."""
    from objvid.client.multiview import active_slot as first_used

    return first_used(frame.slot_sources)


def render(run: Run, session: SceneSession, Ks, w2cs, plan: Plan, label: str,
           on_frame: Callable[[RenderedFrame], None], outputs=("rgb", "mask", "object_mask"),
           start_frame: int = 0) -> None:  # fmt: skip
    """Stage ``render``: RenderTrajectory for the cameras; every checked frame goes to ``on_frame``."""
    t = len(w2cs)
    options = render_options(run, plan, outputs)
    slots = None
    with run.stage("render", t, label):
        for frame in session.render_trajectory(Ks, w2cs, plan.width, plan.height, options, start_frame):
            if slots is None:
                slots = frame.rgb.shape[0] if frame.rgb is not None else 0
            _check_frame(frame, slots, plan)
            on_frame(frame)
            run.reporter.update("render", frame.index + 1)
        if slots is None:
            raise ValueError("the cache returned no frames")


def render_options(run: Run, plan: Plan, outputs=("rgb", "mask", "object_mask")) -> cache_pb2.RenderOptions:
    """The cache render options of a run (also what the model is told to fetch on the direct path)."""
    options = run.client.render_options(
        run.config.method, outputs, object_radius_px=run.config.object_radius, pack_masks=True
    )  # masks as bits on the wire (8x fewer bytes)
    options.foreground_masking = run.config.foreground_masking
    # several views: slot 0 may be empty in a frame, so every slot's object mask is sent (RenderBuffers uses
    # the frame's first slot in use); one view: only slot 0's is used
    options.object_mask_slots = 0 if len(plan.views) > 1 else 1
    options.all_sources = run.config.view_fusion == "latent-max"  # multi-view: every view is a slot
    return options


def _check_frame(frame: RenderedFrame, slots: int, plan: Plan) -> None:
    want = (slots, plan.height, plan.width)
    if frame.rgb is None or frame.rgb.shape != (*want, 3) or frame.mask is None or frame.mask.shape != want:
        got = None if frame.rgb is None else frame.rgb.shape
        raise ValueError(f"frame {frame.index}: expected rgb {(*want, 3)} and mask {want}, got {got}")


def delete_scene(session: SceneSession, timeout: float | None = None) -> None:
    """Best effort: the cache evicts forgotten scenes anyway."""
    try:
        session.delete(timeout=timeout)
    except ServiceError as err:
        log.info("event=scene_delete_failed scene=%s reason=%r", session.scene_id, str(err))
