"""The contract every video model behind Triton implements (``gen3c`` and ``preview``).

A model turns the first frame and the cache renders of one chunk into video frames. The Triton adapters
(``model_repository/*/1/model.py`` and the PyTriton server) only decode tensors, call
:meth:`VideoModel.generate` and stream :class:`Progress` back; all model logic lives behind this class.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

DEFAULT_STEPS = 35
DEFAULT_GUIDANCE = 1.0
DEFAULT_SEED = 1
DEFAULT_FPS = 24.0
MAX_BUFFER_SLOTS = 2
# Upstream GEN3C's `--negative_prompt` default (cosmos_predict1/diffusion/inference/inference_utils.py); the
# command line always sends it, so the unconditional branch of classifier-free guidance uses it.
DEFAULT_NEGATIVE_PROMPT = (
    "The video captures a series of frames showing ugly scenes, static with no motion, motion blur, "
    "over-saturation, shaky footage, low resolution, grainy texture, pixelated images, poorly lit areas, "
    "underexposed and overexposed scenes, poor color balance, washed out colors, choppy sequences, "
    "jerky movements, low frame rate, artifacting, color banding, unnatural transitions, outdated special "
    "effects, fake elements, unconvincing visuals, poorly edited content, jump cuts, visual noise, and "
    "flickering. Overall, the video is of poor quality."
)
MAX_CHUNK_INDEX = 1 << 20
MAX_FUSION_VIEWS = 8  # RENDERS slots with view_fusion latent-max (every source view)
VIEW_FUSIONS = {0: "select", 1: "select", 2: "latent-max"}


@dataclass(frozen=True)
class GenerateOptions:
    """Sampling options (mirror of ``objvid.v1.GenerateOptions`` with defaults applied)."""

    prompt: str = ""
    negative_prompt: str = DEFAULT_NEGATIVE_PROMPT  # "" = none: the unconditional branch reuses the prompt
    seed: int = DEFAULT_SEED
    num_steps: int = DEFAULT_STEPS
    guidance: float = DEFAULT_GUIDANCE
    fps: float = DEFAULT_FPS
    chunk_index: int = 0  # position in an autoregressive video: fresh initial noise per chunk
    view_fusion: str = "select"  # or "latent-max" (gen3c/view_fusion.py)

    @classmethod
    def from_proto(cls, msg) -> GenerateOptions:
        """Build from an ``objvid.v1.GenerateOptions`` message, applying defaults for zero values."""
        return cls(
            prompt=msg.prompt,
            negative_prompt=msg.negative_prompt
            if msg.HasField("negative_prompt")
            else DEFAULT_NEGATIVE_PROMPT,
            seed=int(msg.seed) if msg.HasField("seed") else DEFAULT_SEED,
            num_steps=int(msg.num_steps) or DEFAULT_STEPS,
            guidance=float(msg.guidance) if msg.HasField("guidance") else DEFAULT_GUIDANCE,
            fps=float(msg.fps) or DEFAULT_FPS,
            chunk_index=int(msg.chunk_index),
            view_fusion=VIEW_FUSIONS.get(int(msg.view_fusion), f"unknown ({int(msg.view_fusion)})"),
        )

    def validate(self) -> None:
        """Raise ValueError naming the bad option."""
        if not 1 <= self.num_steps <= 1000:
            raise ValueError(f"options.num_steps must be in [1, 1000], got {self.num_steps}")
        if not np.isfinite(self.guidance) or not 0.0 <= self.guidance <= 50.0:
            raise ValueError(f"options.guidance must be finite and in [0, 50], got {self.guidance}")
        if not np.isfinite(self.fps) or not 0.0 < self.fps <= 240.0:
            raise ValueError(f"options.fps must be in (0, 240], got {self.fps}")
        if not 0 <= self.seed < 2**63:
            raise ValueError(f"options.seed must be in [0, 2**63), got {self.seed}")
        if not 0 <= self.chunk_index < MAX_CHUNK_INDEX:
            raise ValueError(f"options.chunk_index must be in [0, {MAX_CHUNK_INDEX}), got {self.chunk_index}")
        if self.view_fusion not in ("select", "latent-max"):
            raise ValueError(f"options.view_fusion must be select or latent-max, got {self.view_fusion}")


@dataclass(frozen=True)
class Progress:
    """One progress event. stage: 'encode' | 'denoise' | 'decode' | 'done'."""

    stage: str
    step: int = 0
    total: int = 0
    message: str = ""


ProgressFn = Callable[[Progress], None]


@dataclass
class ChunkInputs:
    """One chunk's inputs, validated.

    first_frame: (H, W, 3) uint8; renders: (T, N, H, W, 3) uint8; masks: (T, N, H, W) uint8 (1 = rendered).
    """

    first_frame: np.ndarray
    renders: np.ndarray
    masks: np.ndarray
    extras: dict = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return int(self.renders.shape[0])

    @property
    def num_slots(self) -> int:
        return int(self.renders.shape[1])

    @property
    def height(self) -> int:
        return int(self.renders.shape[2])

    @property
    def width(self) -> int:
        return int(self.renders.shape[3])


def validate_chunk(first_frame: np.ndarray, renders: np.ndarray, masks: np.ndarray,
                   max_slots: int = MAX_BUFFER_SLOTS) -> ChunkInputs:  # fmt: skip
    """Check the tensors against each other; raise ValueError naming the tensor and the problem.
    max_slots: 2 (GEN3C's buffer), or ``MAX_FUSION_VIEWS`` with view_fusion latent-max."""
    for name, arr, ndim in (("FIRST_FRAME", first_frame, 3), ("RENDERS", renders, 5), ("MASKS", masks, 4)):
        if not isinstance(arr, np.ndarray):
            raise ValueError(f"{name} must be a numpy array, got {type(arr).__name__}")
        if arr.dtype != np.uint8:
            raise ValueError(f"{name} must be uint8, got {arr.dtype}")
        if arr.ndim != ndim:
            raise ValueError(f"{name} must have {ndim} dims, got shape {tuple(arr.shape)}")
    t, n, h, w, c = renders.shape
    if c != 3:
        raise ValueError(f"RENDERS last dim must be 3 (RGB), got {c}")
    if t < 1:
        raise ValueError("RENDERS must hold at least one frame")
    if not 1 <= n <= max_slots:
        raise ValueError(f"RENDERS buffer slots N must be in [1, {max_slots}], got {n}")
    if h < 16 or w < 16 or h % 16 or w % 16:
        raise ValueError(f"RENDERS height and width must be positive multiples of 16, got {h}x{w}")
    if first_frame.shape != (h, w, 3):
        raise ValueError(
            f"FIRST_FRAME must be ({h}, {w}, 3) to match RENDERS, got {tuple(first_frame.shape)}"
        )
    if masks.shape != (t, n, h, w):
        raise ValueError(f"MASKS must be {(t, n, h, w)} to match RENDERS, got {tuple(masks.shape)}")
    if masks.size and masks.max() > 1:
        raise ValueError("MASKS values must be 0 or 1")
    return ChunkInputs(first_frame, renders, masks)


class VideoModel(abc.ABC):
    """A model that generates one chunk of video from the first frame and cache renders."""

    #: Name of the Triton model ("gen3c" or "preview").
    name: str = "model"
    #: True when the output is not GEN3C (hole filling only); clients must say so to users.
    preview: bool = False

    def check_frames(self, num_frames: int) -> None:
        """Raise ValueError when the model cannot generate ``num_frames`` frames in one chunk."""
        if num_frames < 2:
            raise ValueError(f"RENDERS must hold at least 2 frames, got {num_frames}")

    @abc.abstractmethod
    def generate(
        self, chunk: ChunkInputs, options: GenerateOptions, progress: ProgressFn | None = None
    ) -> np.ndarray:
        """Generate the chunk; returns the video (T, H, W, 3) uint8, frame 0 corresponding to the first frame."""
