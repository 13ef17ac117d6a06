"""Multi-view scenes: N posed RGB-D source views, buffer slots chosen per frame as upstream GEN3C's
official multi-view code does (``Cache3D_BufferSelector`` in ``cache_3d.py``, used by
``gen3c_multiview.py``; reference section 2.6).

The rule, for one render call of T target cameras (upstream calls it once per 121-frame chunk):

1. Every source view is rendered alone (scene points only, GEN3C splat) and its coverage is counted:
   ``cov[t, n]`` = pixels of frame t covered by source n.
2. With N > ``frame_buffer_max`` = k, the k sources with the largest total coverage over the T frames are
   kept, best first (ties: the lower source index first; upstream's ``topk`` leaves ties unspecified).
   With N <= k all sources are kept in source order.
3. Per frame, the first kept source (in that order) whose coverage fraction is >= ``full_threshold``
   (0.9) is the only active slot; the other slots are emptied (rgb -1 / mask 0). If no kept source
   reaches the threshold, all kept slots stay active.

Each kept source is rendered as one buffer slot with the objects fused in (``Scene.render``), so the
model sees the same object in every active slot. Scenes with several sources are never updated
(upstream raises on ``update_cache``); long videos render every chunk from the same sources.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .render_common import RenderOutput

if TYPE_CHECKING:
    from .scene import Scene

FRAME_BUFFER_MAX = 2  # GEN3C's DiT takes 2 buffer slots
FULL_THRESHOLD = 0.9  # upstream `mask_full_threshold`


@dataclass(frozen=True)
class BufferSelection:
    """Which source view feeds which buffer slot, per frame.

    ``sources`` (k,) int64: source view index of slot j (best first). ``active`` (T, k) bool: slot j is
    used in frame t (inactive slots are rendered empty). ``coverage`` (T, N) float64: the fraction of
    each frame covered by each source (all sources, before selection).
    """

    sources: np.ndarray
    active: np.ndarray
    coverage: np.ndarray

    def per_frame(self) -> np.ndarray:
        """(T, k) int64: the source view index of each slot per frame, -1 where the slot is empty."""
        return np.where(self.active, self.sources[None, :], -1).astype(np.int64)

    def slice(self, start: int, stop: int) -> BufferSelection:
        """The same selection restricted to frames [start, stop)."""
        return BufferSelection(self.sources, self.active[start:stop], self.coverage[start:stop])


def check_views(images, depths, Ks, w2cs, masks, seed_view, frame_buffer_max, full_threshold) -> int:
    """Check the counts and settings of a multi-view scene; returns N. ValueError naming the field."""
    try:
        n = len(images)
    except TypeError:
        raise ValueError("images: expected N images (a sequence or an (N,H,W,3) array)") from None
    if n < 1:
        raise ValueError("images: no views (N=0)")
    for name, seq in (("depths", depths), ("Ks", Ks), ("w2cs", w2cs), ("masks", masks)):
        if seq is None and name == "masks":
            continue
        try:
            m = len(seq)
        except TypeError:
            raise ValueError(f"{name}: expected one entry per view ({n})") from None
        if m != n:
            raise ValueError(f"{name}: {m} entries for {n} views (images)")
    if isinstance(seed_view, bool) or not isinstance(seed_view, int | np.integer) or not 0 <= seed_view < n:
        raise ValueError(f"seed_view: expected an index in [0, {n}), got {seed_view!r}")
    if isinstance(frame_buffer_max, bool) or not isinstance(frame_buffer_max, int | np.integer):
        raise ValueError(f"frame_buffer_max: expected an int >= 1, got {frame_buffer_max!r}")
    if frame_buffer_max < 1:
        raise ValueError(f"frame_buffer_max: expected an int >= 1, got {frame_buffer_max}")
    if not (isinstance(full_threshold, int | float) and 0.0 < full_threshold <= 1.0):
        raise ValueError(f"full_threshold: expected a number in (0, 1], got {full_threshold!r}")
    return n


def select_buffers(
    coverage: Any, frame_buffer_max: int = FRAME_BUFFER_MAX, full_threshold: float = FULL_THRESHOLD
) -> BufferSelection:
    """Apply the selection rule to per-frame coverage fractions.

    coverage (T, N) floats in [0, 1] (covered pixels / pixels). Returns a ``BufferSelection`` with
    k = min(frame_buffer_max, N) slots.
    """
    cov = np.asarray(coverage, dtype=np.float64)
    if cov.ndim != 2 or cov.shape[0] == 0 or cov.shape[1] == 0:
        raise ValueError(f"coverage: expected shape (T, N) with T, N >= 1, got {cov.shape}")
    if frame_buffer_max < 1:
        raise ValueError(f"frame_buffer_max: must be >= 1, got {frame_buffer_max}")
    n = cov.shape[1]
    if n <= frame_buffer_max:
        sources = np.arange(n, dtype=np.int64)
    else:
        total = cov.sum(axis=0)
        # stable descending order: equal totals keep the lower source index first
        sources = np.argsort(-total, kind="stable")[:frame_buffer_max].astype(np.int64)
    # upstream compares a float32 mean with the threshold cast to float32
    kept = cov[:, sources].astype(np.float32) >= np.float32(full_threshold)  # (T, k)
    first_full = np.argmax(kept, axis=1)
    any_full = kept.any(axis=1)
    active = np.ones_like(kept)
    active[any_full] = False
    active[np.nonzero(any_full)[0], first_full[any_full]] = True
    return BufferSelection(sources, active, cov)


def source_coverage(
    scene: Scene, w2cs: Any, Ks: Any, height: int, width: int, backend: str | None = None, batch: int = 16
) -> np.ndarray:
    """(T, N) float64 coverage fraction of each source view (scene points only, GEN3C splat) per camera.

    Renders masks only, ``batch`` cameras at a time, and keeps nothing but the counts.
    """
    w2cs = np.asarray(w2cs, np.float64).reshape(-1, 4, 4)
    Ks = np.asarray(Ks, np.float64).reshape(-1, 3, 3)
    if len(Ks) == 1 and len(w2cs) > 1:
        Ks = np.repeat(Ks, len(w2cs), axis=0)
    counts = []
    for s in range(0, len(w2cs), batch):
        out = scene.render(
            w2cs[s : s + batch],
            Ks[s : s + batch],
            height,
            width,
            mode="scene",
            splat="gen3c",
            outputs=("mask",),
            backend=backend,
            slots=list(range(scene.num_slots)),
        )
        counts.append(out.mask.sum(dim=(2, 3)).cpu().numpy())
        del out
    return np.concatenate(counts).astype(np.float64) / float(height * width)


def plan_buffers(
    scene: Scene, w2cs: Any, Ks: Any, height: int, width: int, backend: str | None = None
) -> BufferSelection:
    """Coverage of every source over the cameras, then ``select_buffers`` with the scene's settings."""
    cov = source_coverage(scene, w2cs, Ks, height, width, backend=backend)
    return select_buffers(cov, scene.frame_buffer_max, scene.full_threshold)


def empty_inactive(out: RenderOutput, active: np.ndarray) -> RenderOutput:
    """Empty the slots of ``out`` (T, k, ...) where ``active`` (T, k) is False, in place: rgb 0 (-1 for
    the model), mask False, depth 0, object_mask -1. Returns ``out``."""
    off = torch.from_numpy(~np.asarray(active, bool))
    if not off.any():
        return out
    for name, fill in (("rgb", 0), ("mask", False), ("depth", 0.0), ("object_mask", -1), ("rgb_float", 0.0)):
        t = getattr(out, name)
        if t is not None:
            t[off.to(t.device)] = fill
    return out


def render_selected(
    scene: Scene, w2cs: Any, Ks: Any, height: int, width: int, selection: BufferSelection | None = None,
    **render_kwargs,
) -> tuple[RenderOutput, np.ndarray]:  # fmt: skip
    """Render the cameras with the selected sources as buffer slots (objects fused into each).

    ``selection`` (for exactly these cameras; default: planned over them). Returns the output
    (T, k, H, W[, 3]) and the per-frame slot sources (T, k) int64 (-1 = empty slot).
    """
    if selection is None:
        selection = plan_buffers(scene, w2cs, Ks, height, width, backend=render_kwargs.get("backend"))
    n = len(np.asarray(w2cs).reshape(-1, 4, 4))
    if selection.active.shape[0] != n:
        raise ValueError(f"selection: planned for {selection.active.shape[0]} cameras, got {n}")
    if render_kwargs.get("mode") == "objects":
        return scene.render(w2cs, Ks, height, width, **render_kwargs), np.full((n, 1), -1, np.int64)
    out = scene.render(w2cs, Ks, height, width, slots=selection.sources.tolist(), **render_kwargs)
    return empty_inactive(out, selection.active), selection.per_frame()
