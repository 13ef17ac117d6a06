"""Plain-video input: one scale for every frame's depth.

A monocular depth model (MoGe, the depth service) gives each frame its own unknown scale, so a plain
video lifted frame by frame would breathe in and out. The scales are made consistent by fitting one
factor per frame to a reference depth that shares a single scale across the clip:

* with poses from the multi-view geometry model (issue 14's VGGT, which predicts all frames jointly in
  one frame of reference), the reference of frame i is that model's depth of frame i;
* with ``--static-camera`` (identity poses), the reference of every frame is frame 0's own depth: the
  camera does not move, so the static background is pixel-aligned across frames.

The factor is the median of ``reference / depth`` over pixels valid in both (a robust least-absolute-
deviation fit of a pure scale in log space); moving things (the parts that differ) are outliers as long
as they cover under half of the valid pixels. Measured on the synthetic video of ``objvid.testing.video``
(``tests/test_client_video_depth.py``).
"""

from __future__ import annotations

import numpy as np


def scale_to_reference(depth: np.ndarray, reference: np.ndarray, valid: np.ndarray, where: str) -> float:
    """Median of reference / depth over ``valid`` pixels with both depths > 0 and finite."""
    ok = valid & np.isfinite(depth) & np.isfinite(reference) & (depth > 0) & (reference > 0)
    if ok.sum() < 16:
        raise ValueError(f"{where}: under 16 pixels with valid depth to fit the frame's scale")
    return float(np.median(reference[ok] / depth[ok]))


def consistent_scales(
    depths: np.ndarray, masks: np.ndarray, references: np.ndarray | None = None
) -> np.ndarray:
    """Per-frame scale factors (F,) for depths (F, H, W) with validity masks (F, H, W).

    references (F, H, W): depths sharing one scale (the geometry model's); None = static camera, every
    frame is fitted to frame 0 (whose factor is 1). Multiply frame i's depth by factor i.
    """
    if depths.ndim != 3 or masks.shape != depths.shape:
        raise ValueError(
            f"depths/masks: expected equal (F, H, W) shapes, got {depths.shape} and {masks.shape}"
        )
    if references is not None and references.shape != depths.shape:
        raise ValueError(f"references: expected {depths.shape}, got {references.shape}")
    scales = np.ones(len(depths))
    for i in range(len(depths)):
        if references is not None:
            scales[i] = scale_to_reference(depths[i], references[i], masks[i], f"frame {i}")
        elif i:
            scales[i] = scale_to_reference(depths[i], depths[0], masks[i] & masks[0], f"frame {i}")
    return scales
