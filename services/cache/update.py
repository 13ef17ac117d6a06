"""``Scene.update_from_view``: add a lifted view as the newest buffer slot, aligned to the cache first.

The core of the ``UpdateScene`` RPC (GEN3C's long-video loop, reference section 2.4), usable without gRPC:
the view's depth is cleaned like upstream's ``update_cache`` (NaN -> 1e4, clamped to [0, 1e4]), aligned to
what buffer slot 0 shows at the view's camera (``align.align_depth``: inverse-depth affine fit, then a
per-pixel scale map), pixels whose aligned depth is unusable are masked, and the view is added.
"""

from __future__ import annotations

import numpy as np
import torch

from .align import AlignmentReport, align_depth

#: Upstream's depth clamp in update_cache.
MAX_VIEW_DEPTH = 1e4


def update_from_view(
    scene,
    image: np.ndarray,
    depth: np.ndarray,
    K: np.ndarray,
    w2c: np.ndarray,
    *,
    mask: np.ndarray | None = None,
    align: bool = True,
) -> AlignmentReport | None:
    """Align ``depth`` to ``scene`` and add the view; returns the alignment report (None when ``align`` is
    False). image (H, W, 3) uint8, depth (H, W) float (scene units), K (3, 3), w2c (4, 4) float64, mask
    (H, W) bool (pixels to keep). Raises ``align.AlignmentError`` (a ValueError) when the cache covers too
    few of the view's pixels."""
    depth, mask, report = prepare_view(scene, depth, K, w2c, mask=mask, align=align)
    add_prepared_view(scene, image, depth, K, w2c, mask=mask, aligned=align)
    return report


def add_prepared_view(scene, image, depth, K, w2c, *, mask=None, aligned: bool = True) -> None:
    """The second half: ``scene.add_view``; an aligned depth is in the cache's units by construction, so
    the scene's depth-clamp diagnostic (meant for user depth) is left as it was."""
    clamped = scene.depth_clamped_fraction
    scene.add_view(image, depth, K, w2c, mask=mask)
    if aligned:
        scene.depth_clamped_fraction = clamped


def prepare_view(
    scene,
    depth: np.ndarray,
    K: np.ndarray,
    w2c: np.ndarray,
    *,
    mask: np.ndarray | None = None,
    align: bool = True,
) -> tuple[np.ndarray, np.ndarray | None, AlignmentReport | None]:
    """The first half of ``update_from_view``: (depth (H, W) float32 cleaned and aligned, mask (H, W) bool or
    None, report) exactly as ``scene.add_view`` then gets them (the cache service journals these)."""
    height, width = depth.shape
    depth = np.clip(
        np.nan_to_num(depth, nan=MAX_VIEW_DEPTH, posinf=MAX_VIEW_DEPTH, neginf=0.0), 0.0, MAX_VIEW_DEPTH
    ).astype(np.float32)
    report = None
    if align:
        out = scene.render(
            w2c[None], K[None], height, width,
            mode="scene", splat="gen3c", outputs=("mask", "depth"),
            slots=[0],  # GEN3C aligns to the newest buffer slot only
        )  # fmt: skip
        target_depth, target_mask = out.depth[0, 0], out.mask[0, 0]
        dev = target_depth.device
        aligned, valid, report = align_depth(
            torch.from_numpy(depth).to(dev),
            target_depth,
            target_mask,
            torch.from_numpy(K).to(dev),
            torch.from_numpy(w2c).to(dev),
        )
        depth = aligned.cpu().numpy()
        valid = valid.cpu().numpy()
        mask = valid if mask is None else (mask & valid)
    return depth, mask, report
