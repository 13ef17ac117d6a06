"""Stage ``inputs``: check every option and read every input file before anything starts (no network).

:func:`make_plan` turns a :class:`GenerateConfig` into a :class:`Plan`: the working size and frame
count, the camera path or the preset's poses, the input mode's source (files read and checked), the
object files and their placement. Each check raises ValueError naming the option and the problem.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from objvid.client import camera_path as campath
from objvid.client import inputs as io
from objvid.client import manifest as mf
from objvid.client import object_size
from objvid.client.bundle import object_payload
from objvid.client.limits import ClientLimits, check_camera_path_file, check_frames, check_video_size
from objvid.client.object_lock import check_alpha, check_feather
from objvid.client.options import (
    BACKENDS,
    DEFAULT_FRAMES,
    DEFAULT_HEIGHT,
    DEFAULT_WIDTH,
    METHODS,
    RENDER_SOURCE_MODES,
    GenerateConfig,
    check_frame_count,
    chunk_ranges,
)
from objvid.client.placement import parse_anchor, parse_object_pose
from objvid.client.sources import InputSource, SourceView, mode_for
from objvid.client.sources.video import video_cameras
from objvid.runtime import trajectory as traj


@dataclass
class ObjectInput:
    """One ``--object``: file bytes, file name (its format) and the scene-unique name, plus placement:
    an explicit pose (``objvid.v1.Transform``) or auto placement at ``anchor`` (pixels; None = default)
    with ``height`` (scene units; None = the cache's default)."""

    data: bytes
    filename: str
    name: str
    pose: object | None = None
    anchor: tuple[float, float] | None = None
    height: float | None = None


@dataclass
class Plan:
    """Validated inputs and derived sizes."""

    width: int
    height: int
    frames: int
    source: InputSource
    path: campath.CameraPath | None = None  # explicit cameras (None: the preset's poses)
    preset_w2cs: np.ndarray | None = None  # (T, 4, 4) preset poses (K comes from the scene)
    objects: list[ObjectInput] = field(default_factory=list)
    views: list[SourceView] = field(default_factory=list)  # filled by the depth stage

    @property
    def video(self) -> bool:
        """True for ``--input-video``: a video scene, frame-synchronous renders, no scene updates."""
        return getattr(self.source, "clip", None) is not None

    @property
    def view(self) -> SourceView:
        """The seed view (single image: the input camera, w2c = I)."""
        return self.views[self.source.seed_view]


def _one_of(flag: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"{flag} must be one of {', '.join(allowed)}, got {value!r}")


def _in_range(flag: str, value, lo: float, hi: float, lo_open: bool = False) -> None:
    ok = value is None or (math.isfinite(value) and (lo < value if lo_open else lo <= value) and value <= hi)
    if not ok:
        raise ValueError(f"{flag} must be in {'(' if lo_open else '['}{lo:g}, {hi:g}], got {value}")


def check_options(cfg: GenerateConfig) -> None:
    """The scalar options (names, ranges), independent of any file."""
    _one_of("--backend", cfg.backend, BACKENDS)
    _one_of("--method", cfg.method, METHODS)
    if not (math.isfinite(cfg.object_radius) and 0.0 <= cfg.object_radius <= 7.0):
        raise ValueError(
            f"--object-radius must be in [0, 7] pixels (0 = the cache's default), got {cfg.object_radius}"
        )
    _one_of("--trajectory", cfg.trajectory, traj.PRESETS)
    _one_of("--camera-rotation", cfg.camera_rotation, traj.ROTATIONS)
    if not np.isfinite(cfg.movement_distance):
        raise ValueError("--movement-distance must be finite")
    _in_range("--fps", cfg.fps, 0, 240, lo_open=True)
    if cfg.out.suffix.lower() != ".mp4" and not cfg.no_video:
        raise ValueError(f"--out must end in .mp4, got {cfg.out}")
    if cfg.seed is not None and not 0 <= cfg.seed < 2**63:
        raise ValueError(f"--seed must be in [0, 2**63), got {cfg.seed}")
    if cfg.steps is not None and not 1 <= cfg.steps <= 1000:
        raise ValueError(f"--steps must be in [1, 1000], got {cfg.steps}")
    _in_range("--guidance", cfg.guidance, 0, 50)
    check_alpha(cfg.object_lock)
    check_feather(cfg.object_lock_feather)
    _one_of("--view-fusion", cfg.view_fusion, ("select", "latent-max"))
    _one_of("--render-source", cfg.render_source, RENDER_SOURCE_MODES)
    if cfg.view_fusion == "latent-max" and cfg.views is None:
        raise ValueError("--view-fusion latent-max needs --views (it fuses several source views)")
    if cfg.static_camera and cfg.input_video is None:
        raise ValueError("--static-camera is only used with --input-video (a plain video file)")


def video_shape(cfg: GenerateConfig, command: str) -> tuple[int, int, int, campath.CameraPath | None]:
    """-> (width, height, frames, camera path or None): the options, else the camera path's, else the
    input's (npz views), else defaults."""
    limits = ClientLimits.from_env()
    if cfg.camera_path:
        check_camera_path_file(cfg.camera_path, limits)
    path = campath.load_camera_path(cfg.camera_path) if cfg.camera_path else None
    mode = mode_for(cfg)
    size = None if path else mode.default_size(cfg)
    width = cfg.width or (path.width if path else (size[0] if size else DEFAULT_WIDTH))
    height = cfg.height or (path.height if path else (size[1] if size else DEFAULT_HEIGHT))
    if path and (width, height) != (path.width, path.height):
        raise ValueError(f"--width/--height {width}x{height} differ from the camera path's "
                         f"{path.width}x{path.height}")  # fmt: skip
    if width % 16 or height % 16 or width < 16 or height < 16:
        raise ValueError(f"--width and --height must be positive multiples of 16, got {width}x{height}")
    check_video_size(width, height, limits, "--width/--height" if path is None else "--camera-path size")
    chunked = command == "generate"  # generate renders one chunk per request, render all frames at once
    if cfg.frames is not None:  # 0 is an error, not "the default"
        check_frames(cfg.frames, limits, chunked=chunked)
    frames = (
        cfg.frames
        if cfg.frames is not None
        else (path.num_frames if path else (mode.default_frames(cfg) or DEFAULT_FRAMES))
    )
    check_frames(frames, limits, "--frames" if path is None else "--camera-path frames", chunked=chunked)
    if path and frames != path.num_frames:
        raise ValueError(f"--frames {frames} differs from the camera path's {path.num_frames} frames")
    if command == "generate":
        check_frame_count(frames, cfg.backend)
    elif frames < 1:
        raise ValueError(f"--frames must be >= 1, got {frames}")
    return width, height, frames, path


def preset_poses(cfg: GenerateConfig, frames: int) -> np.ndarray:
    """The preset's (T, 4, 4) w2c poses; they do not depend on K, so they are checked before anything starts."""
    try:
        w2cs, _ = traj.generate_camera_trajectory(cfg.trajectory, np.eye(4), np.eye(3), frames,
                                                  cfg.movement_distance, cfg.camera_rotation)  # fmt: skip
    except ValueError as err:
        raise ValueError(f"--trajectory {cfg.trajectory} --camera-rotation {cfg.camera_rotation} "
                         f"--movement-distance {cfg.movement_distance:g}: {err}") from None  # fmt: skip
    return w2cs


def read_objects(cfg: GenerateConfig, width: int, height: int, required: bool) -> list[ObjectInput]:
    """The ``--object`` files (read) with their ``--object-pose`` / ``--anchor`` / ``--object-height``."""
    object_size.check_units(cfg.object_units)
    if required and not cfg.objects:
        raise ValueError("--object is required (a .ply/.obj/.glb/.gltf/.stl file)")
    objects, names = [], set()
    limits = ClientLimits.from_env()
    for p in cfg.objects:
        io.check_object_path(p)
        name = Path(p).stem
        while name in names:
            name += "_"
        names.add(name)
        data, filename = object_payload(p, limits)  # .obj + .mtl + textures, .gltf + buffers -> one GLB
        io.check_object_bytes(data, p, suffix=Path(filename).suffix)
        objects.append(ObjectInput(data, filename, name))
    _place(cfg, objects, width, height)
    return objects


def _place(cfg: GenerateConfig, objects: list[ObjectInput], width: int, height: int) -> None:
    """Set each object's pose, or its anchor (default: spread along the lower third) and height."""
    n = len(objects)
    for opt, values in (("--object-pose", cfg.object_poses), ("--anchor", cfg.anchors)):
        if len(values) > max(n, 1):
            raise ValueError(f"{opt} given {len(values)} times for {n} object(s)")
    heights = list(cfg.object_heights)
    if len(heights) > 1 and len(heights) != n:
        raise ValueError(f"--object-height given {len(heights)} times for {n} objects (give 1 or {n})")
    bad = [h for h in heights if not (np.isfinite(h) and h > 0)]
    if bad:
        raise ValueError(f"--object-height must be > 0, got {bad[0]}")
    heights = heights * n if len(heights) == 1 else heights + [None] * (n - len(heights))
    for i, obj in enumerate(objects):
        obj.pose = parse_object_pose(cfg.object_poses[i]) if i < len(cfg.object_poses) else None
        if i < len(cfg.anchors):
            obj.anchor = parse_anchor(cfg.anchors[i], width, height)
        elif n > 1:
            obj.anchor = ((width - 1) * (i + 1) / (n + 1), (height - 1) * 2 / 3)
        obj.height = heights[i]


def _video_cameras(cfg: GenerateConfig, source, width: int, height: int) -> campath.CameraPath | None:
    """The preset applied relative to each frame's input camera (GEN3C's dynamic mode: L_i @ w2c_i, K_i);
    None for a plain video (its cameras come from the depth stage: ``VideoSource.cameras``)."""
    clip = source.clip
    if cfg.frames is not None and cfg.frames != clip.num_frames:
        raise ValueError(
            f"--frames {cfg.frames} differs from the input video's {clip.num_frames} frames (120 N + 1)"
        )
    if source.plain:
        return None
    Ks, w2cs = video_cameras(cfg, clip)
    return campath.CameraPath(width, height, Ks, w2cs)


def make_plan(cfg: GenerateConfig, command: str = "generate") -> tuple[Plan, dict]:
    """Check everything and read the inputs -> (plan, the manifest's ``inputs`` and ``video`` records)."""
    check_options(cfg)
    width, height, frames, path = video_shape(cfg, command)
    w2cs = preset_poses(cfg, frames) if path is None else None
    source = mode_for(cfg)(cfg, width, height)
    if getattr(source, "clip", None) is not None:  # video input: the clip decides frames and cameras
        path, w2cs = _video_cameras(cfg, source, width, height), None
        frames = source.num_frames
    objects = read_objects(cfg, width, height, required=command == "generate")
    plan = Plan(width, height, frames, source, path, w2cs, objects)
    records = {
        "inputs": {
            "mode": source.name,
            **source.records(),
            "objects": [mf.file_record(p) for p in cfg.objects],
            "camera_path": mf.file_record(cfg.camera_path),
        },  # fmt: skip
        "video": {"width": width, "height": height, "frames": frames, "fps": cfg.fps},
    }
    return plan, records


def needs_depth_service(config: GenerateConfig, frames: int | None = None) -> bool:
    """True when the input mode needs it or the video has more than one chunk (long videos lift frames).

    frames: the video's frame count; None = ``config.frames``, else the camera path's, else 121.
    """
    mode = mode_for(config)
    if mode.needs_lift(config):
        return True
    if config.input_video is not None or not mode.updates_scene:  # video / multi-view: never updated
        return False
    if frames is None:
        frames = config.frames
    if frames is None and config.camera_path is not None:
        frames = campath.load_camera_path(config.camera_path).num_frames
    return len(chunk_ranges(frames or DEFAULT_FRAMES)) > 1
