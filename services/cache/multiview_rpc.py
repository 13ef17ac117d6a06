"""gRPC glue for multi-view scenes (kept apart from ``service.py``): decode ``RgbdViews`` and render
frames with the per-frame buffer selection of ``multiview``."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from objvid.v1 import cache_pb2

if TYPE_CHECKING:  # torch is imported on first use, as in service.py
    from .multiview import BufferSelection

FRAME_BUFFER_MAX = 2  # = multiview.FRAME_BUFFER_MAX (GEN3C's DiT takes 2 slots)
FULL_THRESHOLD = 0.9  # = multiview.FULL_THRESHOLD


def scene_builder(msg: cache_pb2.RgbdViews, decode_view: Callable, limits, device: str,
                  threshold: float | None) -> tuple[Callable, int]:  # fmt: skip
    """RgbdViews -> (build() -> Scene, total points). ValueError naming ``views...`` on bad input."""
    from .scene import Scene

    n = len(msg.views)
    if n == 0:
        raise ValueError("views.views: no views (give at least one RgbdView)")
    if msg.seed_view >= n:
        raise ValueError(f"views.seed_view: {msg.seed_view} is not a view index (0..{n - 1})")
    fbm = msg.frame_buffer_max or FRAME_BUFFER_MAX
    if not 1 <= fbm <= FRAME_BUFFER_MAX:
        raise ValueError(f"views.frame_buffer_max: must be 1 or 2 (0 = 2), got {msg.frame_buffer_max}")
    full = msg.full_threshold or FULL_THRESHOLD
    if not (math.isfinite(full) and 0.0 < full <= 1.0):
        raise ValueError(f"views.full_threshold: must be in (0, 1] (0 = 0.9), got {msg.full_threshold}")
    decoded = [decode_view(v, f"views.views[{i}]", limits) for i, v in enumerate(msg.views)]
    images, depths, masks, Ks, w2cs = (list(x) for x in zip(*decoded, strict=True))
    if any(m is None for m in masks):
        masks = [np.ones(d.shape, bool) if m is None else m for m, d in zip(masks, depths, strict=True)]
    npoints = int(sum(d.size for d in depths))

    def build():
        try:
            return Scene.from_views(images, depths, Ks, w2cs, masks, seed_view=int(msg.seed_view),
                                    frame_buffer_max=int(fbm), full_threshold=float(full), device=device,
                                    filter_points_threshold=threshold)  # fmt: skip
        except ValueError as err:
            msg_ = str(err)
            raise ValueError(msg_ if msg_.startswith("views.") else f"views.{msg_}") from None

    return build, npoints


def describe(scene) -> dict:
    """Extra SceneInfo fields of multi-view scenes (empty dict otherwise)."""
    if not getattr(scene, "is_multiview", False):  # video scenes (DynamicScene) are not multi-view
        return {}
    return {"num_source_views": int(scene.num_slots), "seed_view": int(scene.seed_slot)}


def plan(scene, w2cs: np.ndarray, Ks: np.ndarray, height: int, width: int, spec,
         all_sources: bool = False) -> BufferSelection | None:  # fmt: skip
    """The buffer selection of a whole render call (None for single-view scenes or ``objects`` mode).
    all_sources: every source view is a slot in every frame (latent-max view fusion)."""
    if not getattr(scene, "is_multiview", False) or spec.mode == "objects":
        return None
    from .multiview import BufferSelection, plan_buffers

    if all_sources:
        n = scene.num_slots
        return BufferSelection(np.arange(n), np.ones((len(w2cs), n), bool), np.zeros((len(w2cs), n)))
    return plan_buffers(scene, w2cs, Ks, height, width)


def render(scene, w2cs, Ks, height: int, width: int, spec, selection: BufferSelection | None,
           start: int, stop: int):  # fmt: skip
    """Render cameras [start, stop) of a call -> (RenderOutput, slot sources (T, k) int32 or None)."""
    if selection is None:
        return scene.render(w2cs[start:stop], Ks[start:stop], height, width, **spec.kwargs()), None
    from .multiview import render_selected

    out, sources = render_selected(scene, w2cs[start:stop], Ks[start:stop], height, width,
                                   selection=selection.slice(start, stop), **spec.kwargs())  # fmt: skip
    return out, sources.astype(np.int32)
