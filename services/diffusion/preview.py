"""The ``preview`` model: fills the holes of the cache renders with OpenCV inpainting. Not GEN3C.

No neural network runs here; the output only shows what the 3D cache sees, with holes painted over, so
placement and camera paths can be checked on CPU machines in seconds. Clients must label it a preview.

Per frame t >= 1:
1. composite the buffer slots: slot 0 (newest) where it is rendered, else the first other slot that is;
2. pixels that were already a hole in frame t-1 keep frame t-1's fill (temporal stability);
3. newly exposed hole pixels are inpainted (``cv2.INPAINT_TELEA``) at reduced resolution, and the
   upsampled fill is written into those pixels only.
Frame 0 is the first frame, unchanged.
"""

from __future__ import annotations

import cv2
import numpy as np

from objvid.diffusion.base import ChunkInputs, GenerateOptions, Progress, ProgressFn, VideoModel

DEFAULT_RADIUS = 3
DEFAULT_MAX_SIDE = 320
DEFAULT_PROGRESS_EVERY = 8


def composite_slots(renders: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merge the buffer slots of one frame.

    renders: (N, H, W, 3) uint8; masks: (N, H, W) uint8, 1 = rendered. Slot 0 wins where rendered, then
    slots 1.. in order. Returns (frame (H, W, 3) uint8, hole (H, W) bool = rendered in no slot).
    """
    frame = renders[0].copy()
    covered = masks[0].astype(bool)
    for slot in range(1, renders.shape[0]):
        take = masks[slot].astype(bool) & ~covered
        cv2.copyTo(renders[slot], take.view(np.uint8), frame)  # in place, much faster than numpy's where=
        covered |= take
    return frame, ~covered


def inpaint_region(frame: np.ndarray, region: np.ndarray, radius: int, max_side: int) -> np.ndarray | None:
    """Inpaint ``region`` of ``frame`` at a working resolution of at most ``max_side`` pixels.

    frame: (H, W, 3) uint8 (pixels outside ``region`` are valid content); region: (H, W) bool.
    Returns the fill (H, W, 3) uint8, valid inside ``region``; None when no valid pixel remains at the
    working resolution (nothing to propagate).

    Downscaling averages valid pixels only (normalized box filter), so hole colours never leak in; a
    working pixel counts as valid when at least half of it is valid, so scattered one-pixel holes stay
    cheap (they take the local average) and only real holes go through ``cv2.inpaint`` (TELEA).
    """
    height, width = region.shape
    scale = min(1.0, max_side / max(height, width))
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        valid = (~region).view(np.uint8)
        weight = cv2.resize(valid * np.uint8(255), size, interpolation=cv2.INTER_AREA).astype(np.float32)
        total = cv2.resize(cv2.copyTo(frame, valid), size, interpolation=cv2.INTER_AREA).astype(np.float32)
        small = np.clip(total * 255 / np.maximum(weight, 1)[..., None] + 0.5, 0, 255).astype(np.uint8)
        small_mask = weight < 128
    else:
        small, small_mask = frame, region
    if small_mask.all():
        return None
    filled = (
        cv2.inpaint(small, small_mask.view(np.uint8), radius, cv2.INPAINT_TELEA)
        if small_mask.any()
        else small
    )
    if scale < 1.0:
        filled = cv2.resize(filled, (width, height), interpolation=cv2.INTER_LINEAR)
    return filled


class PreviewModel(VideoModel):
    """Hole filling of the cache renders (CPU, deterministic). Output metadata says ``preview``."""

    name = "preview"
    preview = True

    def __init__(
        self,
        radius: int = DEFAULT_RADIUS,
        max_side: int = DEFAULT_MAX_SIDE,
        progress_every: int = DEFAULT_PROGRESS_EVERY,
    ):
        """radius: inpainting radius in working-resolution pixels; max_side: longest side (pixels) of the
        working resolution; progress_every: frames between progress events."""
        if radius < 1:
            raise ValueError(f"preview radius must be >= 1, got {radius}")
        if max_side < 16:
            raise ValueError(f"preview max_side must be >= 16, got {max_side}")
        if progress_every < 1:
            raise ValueError(f"preview progress_every must be >= 1, got {progress_every}")
        self.radius = int(radius)
        self.max_side = int(max_side)
        self.progress_every = int(progress_every)

    def generate(
        self, chunk: ChunkInputs, options: GenerateOptions, progress: ProgressFn | None = None
    ) -> np.ndarray:
        """Fill the holes of every frame; returns (T, H, W, 3) uint8 with frame 0 = the first frame.

        ``options`` are accepted for the common contract; nothing here is random or prompt-driven.
        """
        total = chunk.num_frames
        renders, masks = np.ascontiguousarray(chunk.renders), np.ascontiguousarray(chunk.masks)  # for cv2
        video = np.empty((total, chunk.height, chunk.width, 3), np.uint8)
        video[0] = chunk.first_frame
        prev_hole = np.zeros((chunk.height, chunk.width), bool)
        for t in range(1, total):
            frame, hole = composite_slots(renders[t], masks[t])
            cv2.copyTo(video[t - 1], (hole & prev_hole).view(np.uint8), frame)  # persistent: keep the fill
            new = hole & ~prev_hole
            if new.any():
                fill = inpaint_region(frame, new, self.radius, self.max_side)
                cv2.copyTo(video[t - 1] if fill is None else fill, new.view(np.uint8), frame)
            video[t] = frame
            prev_hole = hole
            if progress is not None and ((t + 1) % self.progress_every == 0 or t + 1 == total):
                progress(Progress("denoise", t + 1, total, "preview: inpainting holes, not GEN3C"))
        if progress is not None and total == 1:
            progress(Progress("denoise", 1, 1, "preview: first frame only"))
        return video
