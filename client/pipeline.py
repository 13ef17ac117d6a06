"""Orchestration of ``generate``, ``render`` and ``lift`` over an :class:`ObjvidClient`.

generate: depth (Lift, unless the user gave depth) -> CreateScene -> AddObject (file bytes) ->
PlaceObject at the anchor (default) or UpdateObject (``--object-pose``) -> per chunk: RenderTrajectory
(all buffer slots, objects fused in each) -> Triton (preview or gen3c, progress streamed) -> mp4.

Long videos follow GEN3C's autoregressive loop (reference 4.4): chunk c covers frames
[120 c, 120 c + 121); after it, the last generated frame is lifted by the depth service at the video
size, object pixels are masked out (the object layer is never baked into the scene), and UpdateScene
adds it at the trajectory camera of the next chunk's first frame (K from the trajectory, not MoGe); the
next chunk is rendered with both buffer slots, generated from that last frame, and its first frame (the
1-frame overlap) is dropped. ``gen3c`` needs 120 N + 1 frames; ``preview`` takes any count >= 2.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from PIL import Image

from objvid import trajectory as traj
from objvid.client import camera_path as campath
from objvid.client import inputs as io
from objvid.client import manifest as mf
from objvid.client.errors import ObjvidError, ServiceError
from objvid.client.placement import parse_anchor, parse_object_pose
from objvid.client.sdk import ObjvidClient, RenderedFrame, SceneSession
from objvid.client.video import Mp4Writer, tile_buffers
from objvid.v1 import diffusion_pb2

log = logging.getLogger("objvid.client.pipeline")

CHUNK = 121
STAGES_ORDER = ("inputs", "depth", "scene", "placement", "render", "diffusion", "update", "encoding")
STRIDE = 120
BACKENDS = ("gen3c", "preview")
METHODS = ("fused", "full")
DEFAULT_WIDTH, DEFAULT_HEIGHT, DEFAULT_FRAMES = 1280, 704, 121
DEFAULT_FILTER_THRESHOLD = 0.05  # GEN3C's --filter_points_threshold
# Object point disc radius in pixels. Measured on the demo sneaker (250k points, 1280x704): pixels inside
# the object's silhouette left uncovered (the background or the object's far side shows through as
# speckles): 1.9% at the renderer's default 0.75 px, 0.2% at 1.0 px, under 0.05% at 1.5 px.
DEFAULT_OBJECT_RADIUS_PX = 1.5
MAX_SLOTS = 2


# ---------------------------------------------------------------------------------------------------
# Options


@dataclass
class GenerateConfig:
    """Everything ``objvid-client generate`` takes. None = default (or taken from the camera path)."""

    image: Path
    objects: list[Path] = field(default_factory=list)
    out: Path = Path("out.mp4")
    method: str = "fused"
    object_radius: float = DEFAULT_OBJECT_RADIUS_PX
    trajectory: str = traj.DEFAULT_PRESET
    camera_rotation: str = traj.DEFAULT_ROTATION
    movement_distance: float = traj.DEFAULT_MOVEMENT_DISTANCE
    camera_path: Path | None = None
    frames: int | None = None
    fps: float = 24.0
    width: int | None = None
    height: int | None = None
    anchors: list[str] = field(default_factory=list)
    object_heights: list[float] = field(default_factory=list)
    object_poses: list[str] = field(default_factory=list)
    depth: Path | None = None
    intrinsics: Path | None = None
    prompt: str = ""
    negative_prompt: str = ""
    seed: int | None = None
    steps: int | None = None
    guidance: float | None = None
    backend: str = "gen3c"
    save_buffer: bool = False
    workdir: Path | None = None
    filter_points_threshold: float = DEFAULT_FILTER_THRESHOLD
    # render command only
    png_dir: Path | None = None
    no_video: bool = False

    def __post_init__(self) -> None:
        # SDK callers may pass str paths; the pipeline uses Path methods on them.
        for name in ("image", "out", "camera_path", "depth", "intrinsics", "workdir", "png_dir"):
            if isinstance(getattr(self, name), str):
                setattr(self, name, Path(getattr(self, name)))
        self.objects = [Path(p) for p in self.objects]


def nearest_valid_frames(frames: int) -> list[int]:
    """The 120 N + 1 counts around ``frames`` (one value below 121)."""
    below = STRIDE * ((frames - 1) // STRIDE) + 1
    if below < CHUNK:
        return [CHUNK]
    return [below, below + STRIDE] if below != frames else [frames]


def check_frame_count(frames: int, backend: str) -> None:
    """ValueError unless ``frames`` suits the backend: 120 N + 1 for gen3c, >= 2 for preview."""
    if isinstance(frames, bool) or not isinstance(frames, int):
        raise ValueError(f"--frames must be an integer, got {frames!r}")
    if backend == "gen3c":
        if frames < CHUNK or (frames - 1) % STRIDE:
            near = " or ".join(str(v) for v in nearest_valid_frames(frames))
            raise ValueError(
                f"--frames must be 120N+1 (121, 241, 361, ...) for the gen3c backend, got {frames}; "
                f"nearest valid: {near}"
            )
    elif frames < 2:
        raise ValueError(f"--frames must be >= 2, got {frames}")


def chunk_ranges(frames: int) -> list[tuple[int, int]]:
    """[(start, end)) of each chunk: starts every 120 frames, 121 long (the last may be shorter)."""
    out = [(0, min(CHUNK, frames))]
    while out[-1][1] < frames:
        start = out[-1][1] - 1
        out.append((start, min(start + CHUNK, frames)))
    return out


def needs_depth_service(config: GenerateConfig, frames: int | None = None) -> bool:
    """True when no depth was given or the video has more than one chunk (long videos lift frames).

    frames: the video's frame count; None = ``config.frames``, else the camera path's, else 121.
    """
    if config.depth is None:
        return True
    if frames is None:
        frames = config.frames
    if frames is None and config.camera_path is not None:
        frames = campath.load_camera_path(config.camera_path).num_frames
    return len(chunk_ranges(frames or DEFAULT_FRAMES)) > 1


# ---------------------------------------------------------------------------------------------------
# Progress


class Reporter:
    """Progress sink; the CLI draws bars, tests and the SDK use this silent one."""

    def start(self, stage: str, total: float | None = None, text: str = "") -> None: ...

    def update(self, stage: str, completed: float | None = None, total: float | None = None,
               text: str | None = None) -> None: ...  # fmt: skip

    def finish(self, stage: str, text: str | None = None) -> None: ...

    def note(self, text: str) -> None: ...


@dataclass
class _Plan:
    """Validated inputs and derived sizes."""

    image: np.ndarray  # (h, w, 3) as read
    width: int
    height: int
    frames: int
    depth: np.ndarray | None = None  # (H, W) float32 at the working size
    depth_mask: np.ndarray | None = None
    K: np.ndarray | None = None  # scene K at the working size (None until depth is known)
    path: campath.CameraPath | None = None
    w2cs: np.ndarray | None = None  # (T, 4, 4) preset poses (None with a camera path)
    objects: list[tuple[bytes, str, str]] = field(default_factory=list)  # (data, filename, name)
    poses: list = field(default_factory=list)
    anchors: list[tuple[float, float] | None] = field(default_factory=list)
    heights: list[float | None] = field(default_factory=list)


class Run:
    """One pipeline run: stage wrappers, timings, the manifest."""

    def __init__(self, command: str, config: GenerateConfig, client: ObjvidClient, reporter: Reporter | None,
                 extra: dict | None = None):  # fmt: skip
        self.command = command
        self.config = config
        self.client = client
        self.reporter = reporter or Reporter()
        self.timings = mf.Timings()
        self.out = Path(config.out)
        self.workdir = Path(config.workdir) if config.workdir else self.out.parent / f"{self.out.stem}_work"
        self.manifest: dict = {
            "command": command,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()},
            "versions": mf.versions(),
            "services": dict(extra or {}),
            "chunks": [],
        }

    @contextmanager
    def stage(self, name: str, total: float | None = None, text: str = ""):
        """Time the block, drive its progress bar, and turn any failure into ObjvidError(name, reason)."""
        self.reporter.start(name, total, text)
        try:
            with self.timings.stage(name):
                yield
        except ObjvidError:
            raise
        except ServiceError as err:
            raise ObjvidError(name, _service_reason(err)) from None
        except (ValueError, OSError, RuntimeError) as err:
            raise ObjvidError(name, str(err)) from None
        self.reporter.finish(name)

    def write_manifest(self, status: str, error: str | None = None) -> Path:
        self.manifest["status"] = status
        if error:
            self.manifest["error"] = error
        self.manifest["timings"] = self.timings.as_dict()
        path = self.workdir / "manifest.json"
        mf.write_json(path, self.manifest)
        return path


def _service_reason(err: ServiceError) -> str:
    if err.code == "UNAVAILABLE":
        return f"{err.service} service unreachable ({err.details})"
    if err.code == "DEADLINE_EXCEEDED":
        return f"{err.service} {err.method} timed out ({err.details})"
    return f"{err.service} {err.method}: {err.code}: {err.details}"


# ---------------------------------------------------------------------------------------------------
# Stages


def _plan(run: Run, need_objects: bool = True) -> _Plan:
    """Validate every option and read the input files (stage 'inputs'; no network)."""
    cfg = run.config
    with run.stage("inputs"):
        if cfg.backend not in BACKENDS:
            raise ValueError(f"--backend must be one of {', '.join(BACKENDS)}, got {cfg.backend!r}")
        if cfg.method not in METHODS:
            raise ValueError(f"--method must be one of {', '.join(METHODS)}, got {cfg.method!r}")
        if not (math.isfinite(cfg.object_radius) and 0.0 <= cfg.object_radius <= 7.0):
            raise ValueError(
                f"--object-radius must be in [0, 7] pixels (0 = the cache's default), got {cfg.object_radius}"
            )
        if cfg.trajectory not in traj.PRESETS:
            raise ValueError(f"--trajectory must be one of {', '.join(traj.PRESETS)}, got {cfg.trajectory!r}")
        if cfg.camera_rotation not in traj.ROTATIONS:
            raise ValueError(
                f"--camera-rotation must be one of {', '.join(traj.ROTATIONS)}, got {cfg.camera_rotation!r}"
            )
        if not np.isfinite(cfg.movement_distance):
            raise ValueError("--movement-distance must be finite")
        if not (np.isfinite(cfg.fps) and 0 < cfg.fps <= 240):
            raise ValueError(f"--fps must be in (0, 240], got {cfg.fps}")
        if cfg.out.suffix.lower() != ".mp4" and not cfg.no_video:
            raise ValueError(f"--out must end in .mp4, got {cfg.out}")
        path = campath.load_camera_path(cfg.camera_path) if cfg.camera_path else None
        width = cfg.width or (path.width if path else DEFAULT_WIDTH)
        height = cfg.height or (path.height if path else DEFAULT_HEIGHT)
        if path and (width, height) != (path.width, path.height):
            raise ValueError(f"--width/--height {width}x{height} differ from the camera path's "
                             f"{path.width}x{path.height}")  # fmt: skip
        if width % 16 or height % 16 or width < 16 or height < 16:
            raise ValueError(f"--width and --height must be positive multiples of 16, got {width}x{height}")
        frames = cfg.frames or (path.num_frames if path else DEFAULT_FRAMES)
        if path and frames != path.num_frames:
            raise ValueError(f"--frames {frames} differs from the camera path's {path.num_frames} frames")
        if run.command == "generate":
            check_frame_count(frames, cfg.backend)
        elif frames < 1:
            raise ValueError(f"--frames must be >= 1, got {frames}")
        w2cs = None
        if path is None:  # the preset's poses do not depend on K: check them before anything starts
            try:
                w2cs, _ = traj.generate_camera_trajectory(cfg.trajectory, np.eye(4), np.eye(3), frames,
                                                          cfg.movement_distance, cfg.camera_rotation)  # fmt: skip
            except ValueError as err:
                raise ValueError(f"--trajectory {cfg.trajectory} --camera-rotation {cfg.camera_rotation} "
                                 f"--movement-distance {cfg.movement_distance:g}: {err}") from None  # fmt: skip
        image = io.load_image(cfg.image)
        plan = _Plan(image=image, width=width, height=height, frames=frames, path=path, w2cs=w2cs)
        if cfg.depth is not None:
            if cfg.intrinsics is None:
                raise ValueError("--depth needs --intrinsics (a K JSON file)")
            depth, valid = io.load_depth(cfg.depth)
            if depth.shape != image.shape[:2]:
                raise ValueError(
                    f"--depth {cfg.depth}: shape {depth.shape} differs from the image's {image.shape[:2]}"
                )
            h0, w0 = image.shape[:2]
            K = io.load_intrinsics(cfg.intrinsics, (w0, h0))
            plan.K = io.scale_intrinsics(K, (w0, h0), (width, height))
            plan.depth = io.resize_nearest(depth, width, height)
            plan.depth_mask = io.resize_nearest(valid, width, height)
            plan.image = io.resize_image(image, width, height)
        elif cfg.intrinsics is not None:
            raise ValueError("--intrinsics is only used with --depth")
        if need_objects and not cfg.objects:
            raise ValueError("--object is required (a .ply/.obj/.glb/.gltf/.stl file)")
        if cfg.objects:
            names = set()
            for p in cfg.objects:
                io.check_object_path(p)
                name = Path(p).stem
                while name in names:
                    name += "_"
                names.add(name)
                plan.objects.append((io.read_file(p, "--object"), Path(p).name, name))
        n = len(plan.objects)
        for opt, values in (("--object-pose", cfg.object_poses), ("--anchor", cfg.anchors)):
            if len(values) > max(n, 1):
                raise ValueError(f"{opt} given {len(values)} times for {n} object(s)")
        if len(cfg.object_heights) > 1 and len(cfg.object_heights) != n:
            raise ValueError(
                f"--object-height given {len(cfg.object_heights)} times for {n} objects (give 1 or {n})"
            )
        for h in cfg.object_heights:
            if not (np.isfinite(h) and h > 0):
                raise ValueError(f"--object-height must be > 0, got {h}")
        plan.poses = [parse_object_pose(p) for p in cfg.object_poses] + [None] * (n - len(cfg.object_poses))
        anchors: list = [parse_anchor(a, width, height) for a in cfg.anchors]
        for i in range(len(anchors), n):  # several objects without anchors: spread along the lower third
            anchors.append(None if n == 1 else ((width - 1) * (i + 1) / (n + 1), (height - 1) * 2 / 3))
        plan.anchors = anchors
        heights = cfg.object_heights * n if len(cfg.object_heights) == 1 else list(cfg.object_heights)
        plan.heights = heights + [None] * (n - len(heights))
        if cfg.seed is not None and not 0 <= cfg.seed < 2**63:
            raise ValueError(f"--seed must be in [0, 2**63), got {cfg.seed}")
        if cfg.steps is not None and not 1 <= cfg.steps <= 1000:
            raise ValueError(f"--steps must be in [1, 1000], got {cfg.steps}")
        if cfg.guidance is not None and not (np.isfinite(cfg.guidance) and 0 <= cfg.guidance <= 50):
            raise ValueError(f"--guidance must be in [0, 50], got {cfg.guidance}")
        run.manifest["inputs"] = {
            "image": mf.file_record(cfg.image),
            "objects": [mf.file_record(p) for p in cfg.objects],
            "depth": mf.file_record(cfg.depth),
            "intrinsics": mf.file_record(cfg.intrinsics),
            "camera_path": mf.file_record(cfg.camera_path),
        }
        run.manifest["video"] = {"width": width, "height": height, "frames": frames, "fps": cfg.fps}
    return plan


def validate(config: GenerateConfig, command: str = "generate") -> None:
    """Check every option and input file without touching a service; ObjvidError('inputs', reason)."""
    _plan(Run(command, config, None, None), need_objects=command == "generate")


def _lift_input(run: Run, plan: _Plan) -> None:
    """Depth stage: the depth service lifts the image at the working size (skipped with --depth)."""
    if plan.depth is not None:
        run.manifest["depth"] = {"source": "file"}
        return
    with run.stage("depth", 1, "lifting the image"):
        view = run.client.lift([plan.image], width=plan.width, height=plan.height)[0]
        if view.depth.shape != (plan.height, plan.width):
            raise ValueError(
                f"depth service returned {view.depth.shape}, expected {(plan.height, plan.width)}"
            )
        plan.image, plan.depth, plan.depth_mask, plan.K = view.image, view.depth, view.mask, view.K
        run.manifest["depth"] = {"source": "service", "model": view.model, "K": view.K}
        run.reporter.update("depth", 1)


def _cameras(run: Run, plan: _Plan) -> tuple[np.ndarray, np.ndarray]:
    if plan.path is not None:
        Ks, w2cs = plan.path.Ks, plan.path.w2cs
    else:  # GEN3C repeats the scene's K along the preset's poses
        Ks, w2cs = np.broadcast_to(plan.K, (plan.frames, 3, 3)).copy(), plan.w2cs
    campath.save_camera_path(run.workdir / "cameras.json", plan.width, plan.height, Ks, w2cs)
    return Ks, w2cs


def _build_scene(run: Run, plan: _Plan) -> SceneSession:
    """Scene and placement stages: CreateScene, AddObject, PlaceObject / UpdateObject."""
    client = run.client
    with run.stage("scene", 1 + len(plan.objects), "creating the scene"):
        # Invalid depth follows GEN3C: far away (the cache clamps it) rather than dropped.
        depth = np.where(plan.depth_mask, plan.depth, 1000.0).astype(np.float32)
        view = client.rgbd_view(plan.image, depth, plan.K)
        session = SceneSession(client, view, run.config.filter_points_threshold)
        info = session.create()
        run.reporter.update("scene", 1)
        for k, (data, filename, name) in enumerate(plan.objects):
            session.add_object(data, filename, name)
            run.reporter.update("scene", 2 + k)
        run.manifest["scene"] = {
            "scene_id": info.scene_id,
            "num_points": info.num_points,
            "device": info.device,
        }
    if plan.objects:
        with run.stage("placement", len(plan.objects), "placing objects"):
            placed = []
            for i in range(len(plan.objects)):
                if plan.poses[i] is not None:
                    obj = session.update_object(i, plan.poses[i])
                    how = "pose"
                else:
                    obj = session.place_object(i, plan.anchors[i], plan.heights[i])
                    how = "auto"
                placed.append({"object_id": obj.object_id, "name": obj.name, "num_points": obj.num_points,
                               "placement": how, "anchor": plan.anchors[i],
                               "transform": np.asarray(obj.transform.values).reshape(4, 4).tolist()})  # fmt: skip
                run.reporter.update("placement", i + 1)
            run.manifest["objects"] = placed
    return session


def _render_chunk(run: Run, session: SceneSession, Ks, w2cs, plan: _Plan, label: str,
                  outputs=("rgb", "mask", "object_mask"), on_frame: Callable | None = None,
                  keep: bool = True):  # fmt: skip
    """RenderTrajectory for the given cameras -> (renders (T,N,H,W,3), masks (T,N,H,W), objects (T,H,W) int16).

    keep=False: frames only go to ``on_frame`` (nothing is gathered; returns (None, None, None)).
    """
    t = len(w2cs)
    options = run.client.render_options(run.config.method, outputs, object_radius_px=run.config.object_radius)
    renders = masks = objects = None
    slots = None
    with run.stage("render", t, label):
        for frame in session.render_trajectory(Ks, w2cs, plan.width, plan.height, options):
            i = frame.index
            if slots is None:
                slots = frame.rgb.shape[0] if frame.rgb is not None else 0
                if keep:
                    renders = np.empty((t, slots, plan.height, plan.width, 3), np.uint8)
                    masks = np.empty((t, slots, plan.height, plan.width), np.uint8)
                    objects = np.full((t, plan.height, plan.width), -1, np.int16)
            _check_frame(frame, slots, plan)
            if keep:
                renders[i] = frame.rgb
                masks[i] = frame.mask
                if frame.object_mask is not None:
                    objects[i] = frame.object_mask[0]
            if on_frame is not None:
                on_frame(frame)
            run.reporter.update("render", i + 1)
        if slots is None:
            raise ValueError("the cache returned no frames")
    return renders, masks, objects


def _check_frame(frame: RenderedFrame, slots: int, plan: _Plan) -> None:
    want = (slots, plan.height, plan.width)
    if frame.rgb is None or frame.rgb.shape != (*want, 3) or frame.mask is None or frame.mask.shape != want:
        got = None if frame.rgb is None else frame.rgb.shape
        raise ValueError(f"frame {frame.index}: expected rgb {(*want, 3)} and mask {want}, got {got}")


def _generate_options(cfg: GenerateConfig) -> diffusion_pb2.GenerateOptions:
    opts = diffusion_pb2.GenerateOptions(prompt=cfg.prompt, negative_prompt=cfg.negative_prompt, fps=cfg.fps)
    if cfg.seed is not None:
        opts.seed = cfg.seed
    if cfg.steps is not None:
        opts.num_steps = cfg.steps
    if cfg.guidance is not None:
        opts.guidance = cfg.guidance
    return opts


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    out = mask.copy()
    for _ in range(radius):
        grown = out.copy()
        grown[1:] |= out[:-1]
        grown[:-1] |= out[1:]
        grown[:, 1:] |= out[:, :-1]
        grown[:, :-1] |= out[:, 1:]
        out = grown
    return out


# ---------------------------------------------------------------------------------------------------
# Commands


def generate(config: GenerateConfig, client: ObjvidClient, reporter: Reporter | None = None,
             services: dict | None = None) -> dict:  # fmt: skip
    """Run ``generate``; returns a summary dict (video path, size, frames, backend, preview, timings, ...).

    Raises ObjvidError(stage, reason). The mp4 appears only when everything succeeded.
    """
    run = Run("generate", config, client, reporter, services)
    writers: list[Mp4Writer] = []
    try:
        result = _generate(run, writers)
    except BaseException as exc:
        for w in writers:
            w.abort()
        reason = str(exc) if isinstance(exc, ObjvidError) else f"interrupted ({type(exc).__name__})"
        if not isinstance(exc, ObjvidError | KeyboardInterrupt):
            reason = f"{type(exc).__name__}: {exc}"
        try:
            run.write_manifest("error", reason)
        except OSError:
            pass
        raise
    return result


def _generate(run: Run, writers: list[Mp4Writer]) -> dict:
    cfg = run.config
    plan = _plan(run)
    run.workdir.mkdir(parents=True, exist_ok=True)
    preview = cfg.backend == "preview"
    run.manifest.update(backend=cfg.backend, preview=preview)
    if preview:
        run.reporter.note("backend: preview (OpenCV hole filling of the cache renders, not GEN3C)")
    _lift_input(run, plan)
    Ks, w2cs = _cameras(run, plan)
    session = _build_scene(run, plan)
    chunks = chunk_ranges(plan.frames)
    n_max = min(MAX_SLOTS, len(chunks))
    options = _generate_options(cfg)
    buffer_path = cfg.out.with_name(f"{cfg.out.stem}_buffer.mp4") if cfg.save_buffer else None
    with run.stage("encoding"):
        video_writer = Mp4Writer(cfg.out, plan.width, plan.height, cfg.fps)
        writers.append(video_writer)
        renders_writer = Mp4Writer(run.workdir / "renders.mp4", plan.width * n_max, plan.height, cfg.fps,
                                   preset="ultrafast")  # fmt: skip
        writers.append(renders_writer)
        buffer_writer = None
        if buffer_path is not None:
            buffer_writer = Mp4Writer(buffer_path, plan.width * (1 + n_max), plan.height, cfg.fps)
            writers.append(buffer_writer)
    first_frame = None
    object_pixels: list[list[int]] = []
    for c, (start, end) in enumerate(chunks):
        label = f"chunk {c + 1}/{len(chunks)}: frames {start}-{end - 1}"
        renders, masks, objects = _render_chunk(run, session, Ks[start:end], w2cs[start:end], plan, label)
        if c == 0:
            first_frame = plan.image.copy()
            visible = objects[0] >= 0
            first_frame[visible] = renders[0, 0][visible]
        with run.stage("diffusion", None, f"{label} ({cfg.backend})"):

            def on_progress(msg: diffusion_pb2.GenerateProgress, _label=label) -> None:
                stage = diffusion_pb2.GenerateStage.Name(msg.stage).removeprefix("GENERATE_STAGE_").lower()
                run.reporter.update("diffusion", msg.step, msg.total or None, f"{_label}: {stage}")

            video, last = run.client.generate_chunk(
                cfg.backend, first_frame, renders, masks, options, on_progress
            )
            if video.shape != (end - start, plan.height, plan.width, 3):
                raise ValueError(
                    f"the model returned video {video.shape}, expected {(end - start, plan.height, plan.width, 3)}"
                )
            if last is not None and last.preview != preview:
                run.reporter.note(f"model {last.model!r} reports preview={last.preview}")
        keep = slice(0, None) if c == 0 else slice(1, None)  # drop the 1-frame overlap
        with run.stage("encoding"):
            video_writer.append(video[keep])
            tiled = tile_buffers(renders[keep], n_max)
            renders_writer.append(tiled)
            if buffer_writer is not None:
                buffer_writer.append(np.concatenate([tiled, video[keep]], axis=2))
            mf.save_masks(run.workdir / f"masks_chunk{c:02d}.npz", masks[keep], objects[keep],
                          np.arange(start, end)[keep])  # fmt: skip
            if c == 0:
                Image.fromarray(first_frame).save(run.workdir / "first_frame.png", compress_level=1)
        object_pixels += [[int((o == i).sum()) for i in session.object_ids] for o in objects[keep]]
        chunk_record = {"index": c, "start": start, "end": end, "slots": int(renders.shape[1])}
        if c + 1 < len(chunks):
            first_frame = video[-1].copy()
            chunk_record["update"] = _update_scene(run, session, plan, first_frame, objects[-1], Ks[end - 1],
                                                   w2cs[end - 1], c + 1, len(chunks))  # fmt: skip
        run.manifest["chunks"].append(chunk_record)
        del renders, masks, video
    with run.stage("encoding"):
        for w in writers:
            w.finish()
    run.manifest["object_pixels"] = {"per_frame": object_pixels, "object_ids": session.object_ids}
    run.manifest["scene"]["rebuilds"] = session.rebuilds
    try:
        session.delete()
    except ServiceError as err:
        log.info("event=scene_delete_failed reason=%r", str(err))
    outputs = {"video": str(cfg.out.resolve()), "renders": str((run.workdir / "renders.mp4").resolve()),
               "buffer_video": str(buffer_path.resolve()) if buffer_path else None}  # fmt: skip
    run.manifest["outputs"] = outputs
    manifest_path = run.write_manifest("ok")
    return {
        "video": outputs["video"],
        "buffer_video": outputs["buffer_video"],
        "frames": plan.frames,
        "width": plan.width,
        "height": plan.height,
        "fps": cfg.fps,
        "backend": cfg.backend,
        "preview": preview,
        "chunks": len(chunks),
        "workdir": str(run.workdir.resolve()),
        "manifest": str(manifest_path.resolve()),
        "timings": run.timings.as_dict(),
    }


def _update_scene(run: Run, session: SceneSession, plan: _Plan, frame: np.ndarray, objects: np.ndarray,
                  K: np.ndarray, w2c: np.ndarray, chunk: int, chunks: int) -> dict:  # fmt: skip
    """Lift the last generated frame and add it to the scene at the next chunk's first camera."""
    with run.stage("update", 2, f"chunk {chunk + 1}/{chunks}: lifting the last frame"):
        # The frame is at the working size and only the depth is used: no image back (2.7 MB at 720p).
        view = run.client.lift([frame], width=plan.width, height=plan.height, omit_image=True)[0]
        if view.depth.shape != (plan.height, plan.width):
            raise ValueError(
                f"depth service returned {view.depth.shape}, expected {(plan.height, plan.width)}"
            )
        run.reporter.update("update", 1, text=f"chunk {chunk + 1}/{chunks}: updating the scene")
        keep = ~_dilate(objects >= 0, 2)  # scene pixels only: the object layer stays separate
        rgbd = run.client.rgbd_view(frame, view.depth, K, w2c, keep)
        resp = session.update_scene(rgbd)
        run.reporter.update("update", 2)
        a = resp.alignment
        return {"slots": resp.scene.num_buffer_slots, "scale": a.scale, "shift": a.shift,
                "error_before": a.error_before, "error_after": a.error_after, "pixels_used": a.pixels_used,
                "object_pixels_masked": int((~keep).sum())}  # fmt: skip


def render(config: GenerateConfig, client: ObjvidClient, reporter: Reporter | None = None,
           services: dict | None = None) -> dict:  # fmt: skip
    """Run ``render``: the cache's renders of the trajectory (no diffusion, one buffer slot).

    Writes the rgb mp4 (unless ``no_video``) and, with ``png_dir``, PNG frames ``rgb_0000.png``,
    ``mask_0000.png`` (255 = rendered) and ``object_0000.png`` (object id + 1, 0 = none, 8-bit).
    """
    run = Run("render", config, client, reporter, services)
    writer: Mp4Writer | None = None
    try:
        plan = _plan(run, need_objects=False)
        run.workdir.mkdir(parents=True, exist_ok=True)
        _lift_input(run, plan)
        Ks, w2cs = _cameras(run, plan)
        session = _build_scene(run, plan)
        png_dir = Path(config.png_dir) if config.png_dir else None
        if png_dir is not None:
            png_dir.mkdir(parents=True, exist_ok=True)
        if not config.no_video:
            writer = Mp4Writer(config.out, plan.width, plan.height, config.fps)

        def on_frame(frame: RenderedFrame) -> None:
            with run.timings.stage("encoding"):
                if writer is not None:
                    writer.append(frame.rgb[0])
                if png_dir is not None:
                    i = frame.index
                    Image.fromarray(frame.rgb[0]).save(png_dir / f"rgb_{i:04d}.png", compress_level=1)
                    Image.fromarray(frame.mask[0] * 255).save(png_dir / f"mask_{i:04d}.png", compress_level=1)
                    obj = np.clip(frame.object_mask[0].astype(np.int32) + 1, 0, 255).astype(np.uint8)
                    Image.fromarray(obj).save(png_dir / f"object_{i:04d}.png", compress_level=1)

        _render_chunk(run, session, Ks, w2cs, plan, f"{plan.frames} frames", on_frame=on_frame, keep=False)
        if writer is not None:
            with run.stage("encoding"):
                writer.finish()
        try:
            session.delete()
        except ServiceError:
            pass
        run.manifest["outputs"] = {"video": None if writer is None else str(config.out.resolve()),
                                   "png_dir": str(png_dir.resolve()) if png_dir else None}  # fmt: skip
        manifest_path = run.write_manifest("ok")
    except BaseException as exc:
        if writer is not None:
            writer.abort()
        try:
            run.write_manifest("error", str(exc))
        except OSError:
            pass
        raise
    return {"video": run.manifest["outputs"]["video"], "png_dir": run.manifest["outputs"]["png_dir"],
            "frames": plan.frames, "width": plan.width, "height": plan.height,
            "manifest": str(manifest_path.resolve()), "timings": run.timings.as_dict()}  # fmt: skip


def lift(image: Path, out_ply: Path, client: ObjvidClient, width: int = DEFAULT_WIDTH, height: int = DEFAULT_HEIGHT,
         intrinsics_out: Path | None = None, depth_out: Path | None = None,
         reporter: Reporter | None = None) -> dict:  # fmt: skip
    """Run ``lift``: image -> coloured scene PLY (valid pixels, world = camera frame), K JSON, depth .npy."""
    reporter = reporter or Reporter()
    timings = mf.Timings()
    stage = "inputs"
    try:
        if width % 16 or height % 16 or width < 16 or height < 16:
            raise ValueError(f"--width and --height must be positive multiples of 16, got {width}x{height}")
        pixels = io.load_image(image)
        stage = "depth"
        reporter.start("depth", 1, "lifting the image")
        with timings.stage("depth"):
            view = client.lift([pixels], width=width, height=height)[0]
        reporter.finish("depth")
        stage = "encoding"
        from objvid.client.assets import ply_bytes

        h, w = view.depth.shape
        u, v = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
        K = view.K
        z = view.depth.astype(np.float64)
        pts = np.stack([(u - K[0, 2]) / K[0, 0] * z, (v - K[1, 2]) / K[1, 1] * z, z], -1)
        keep = view.mask & np.isfinite(z) & (z > 0)
        out_ply = Path(out_ply)
        out_ply.parent.mkdir(parents=True, exist_ok=True)
        out_ply.write_bytes(ply_bytes(pts[keep].astype(np.float32), view.image[keep]))
        intrinsics_out = (
            Path(intrinsics_out) if intrinsics_out else out_ply.with_name(f"{out_ply.stem}_K.json")
        )
        mf.write_json(intrinsics_out, {"K": K.tolist(), "width": w, "height": h, "model": view.model})
        depth_out = Path(depth_out) if depth_out else out_ply.with_name(f"{out_ply.stem}_depth.npy")
        np.save(depth_out, view.depth)
        image_out = out_ply.with_name(f"{out_ply.stem}_image.png")
        Image.fromarray(view.image).save(image_out)
    except ServiceError as err:
        raise ObjvidError(stage, _service_reason(err)) from None
    except (ValueError, OSError) as err:
        raise ObjvidError(stage, str(err)) from None
    return {"ply": str(out_ply.resolve()), "intrinsics": str(intrinsics_out.resolve()),
            "depth": str(depth_out.resolve()), "image": str(image_out.resolve()), "points": int(keep.sum()),
            "width": w, "height": h, "model": view.model, "timings": timings.as_dict()}  # fmt: skip


__all__ = [
    "GenerateConfig",
    "Reporter",
    "chunk_ranges",
    "check_frame_count",
    "generate",
    "lift",
    "needs_depth_service",
    "nearest_valid_frames",
    "render",
    "validate",
]
