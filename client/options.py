"""What a run is asked to do: :class:`GenerateConfig`, the defaults, and the frame-count rules.

GEN3C generates 121 frames per chunk; longer videos are 120 N + 1 frames made autoregressively, chunk c
covering frames [120 c, 120 c + 121) (reference 4.4). ``gen3c`` needs 120 N + 1 frames; ``preview``
takes any count >= 2.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from objvid.client.object_lock import DEFAULT_FEATHER_PX
from objvid.runtime import trajectory as traj

CHUNK = 121
STRIDE = 120
BACKENDS = ("gen3c", "preview")
METHODS = ("fused", "full")
#: The stages of a run, in the order the CLI's timing table lists them.
STAGES_ORDER = (
    "inputs",
    "depth",
    "scene",
    "placement",
    "render",
    "diffusion",
    "fidelity",
    "update",
    "encoding",
)
DEFAULT_WIDTH, DEFAULT_HEIGHT, DEFAULT_FRAMES = 1280, 704, 121
DEFAULT_FILTER_THRESHOLD = 0.05  # GEN3C's --filter_points_threshold
# Object point disc radius in pixels. Measured on the demo sneaker (250k points, 1280x704): pixels inside
# the object's silhouette left uncovered (the background or the object's far side shows through as
# speckles): 1.9% at the renderer's default 0.75 px, 0.2% at 1.0 px, under 0.05% at 1.5 px.
DEFAULT_OBJECT_RADIUS_PX = 1.5
MAX_SLOTS = 2
RENDER_SOURCE_MODES = ("auto", "on", "off")


@dataclass
class GenerateConfig:
    """Everything ``objvid-client generate`` takes. None = default (or taken from the camera path)."""

    image: Path | None
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
    negative_prompt: str | None = None  # None = upstream GEN3C's default (server side); "" = none
    seed: int | None = None
    steps: int | None = None
    guidance: float | None = None
    backend: str = "gen3c"
    save_buffer: bool = False
    object_lock: float = 0.0  # 0 = off; objvid.client.object_lock
    object_lock_feather: float = DEFAULT_FEATHER_PX
    workdir: Path | None = None
    filter_points_threshold: float = DEFAULT_FILTER_THRESHOLD
    foreground_masking: bool = False  # GEN3C's --foreground_masking of the cache renders
    depth_units: str = "m"  # unit of --depth .npy/.npz/.exr (PNG: millimetres)
    object_units: str | None = None  # unit of the object files (real size in a metric scene)
    # video input (issue 15)
    input_video: Path | None = None
    object_track: Path | None = None
    static_camera: bool = False  # a plain --input-video shot from a fixed camera (identity poses)
    # multi-view input (sources/multi_view.py): FILE.npz, an image folder or glob, or a video
    views: Path | str | None = None
    seed_view: int = 0
    views_trajectory: str = "auto"  # auto | npz | preset
    view_select: str = "all"  # video frames (the multi-view fork's --frame_extraction_method)
    view_step: int = 1
    view_interval: int = 30
    max_views: int = 10
    view_fusion: str = "select"  # or latent-max: every view rendered, fused in latent space by gen3c
    # how a chunk's renders reach the model (objvid.client.render_path): auto | on | off
    render_source: str = "auto"
    # render command only
    png_dir: Path | None = None
    no_video: bool = False

    def __post_init__(self) -> None:
        # SDK callers may pass str paths; the pipeline uses Path methods on them.
        for name in ("image", "out", "camera_path", "depth", "intrinsics", "workdir", "png_dir", "input_video",
                     "object_track"):  # fmt: skip
            if isinstance(getattr(self, name), str):
                setattr(self, name, Path(getattr(self, name)))
        self.objects = [Path(p) for p in self.objects]

    @property
    def resolved_workdir(self) -> Path:
        """``workdir``, or ``<out>_work`` beside the output."""
        return Path(self.workdir) if self.workdir else self.out.parent / f"{self.out.stem}_work"


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
