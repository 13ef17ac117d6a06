"""Input mode ``views``: several views of one static scene (``--views``; formats and rules in
``objvid.client.multiview``).

- ``FILE.npz`` (upstream GEN3C's multi-view format): posed RGB-D views, no depth service needed;
- an image folder or glob, or a video (frames picked by ``--view-select``): unposed, sent to the depth
  service's geometry model (``LiftViews``) in the depth stage.

Beyond :class:`InputSource` the mode gives the cameras (the npz trajectory or the preset relative to the
seed view), the scene message (``RgbdViews``) and the seed view; the pipeline asks for them through the
optional hooks of the base class.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from objvid.client import multiview as mv
from objvid.client.options import GenerateConfig
from objvid.client.sources.base import InputSource, LiftFn, SourceView


class MultiViewSource(InputSource):
    """``--views FILE.npz | DIR | GLOB | VIDEO`` [+ ``--seed-view``, ``--views-trajectory``, ...]."""

    name = "views"
    updates_scene = False  # upstream's multi-view: every chunk renders the same sources

    @classmethod
    def accepts(cls, config: GenerateConfig) -> bool:
        return config.views is not None

    @classmethod
    def needs_lift(cls, config: GenerateConfig) -> bool:
        return mv.needs_geometry(config)

    @classmethod
    def default_size(cls, config: GenerateConfig) -> tuple[int, int] | None:
        """npz views set the working size when --width/--height are not given."""
        return mv.default_size(mv.load_npz(config.views)) if mv.is_npz(config.views) else None

    @classmethod
    def default_frames(cls, config: GenerateConfig) -> int | None:
        """The npz trajectory's length when it is used."""
        return mv.default_frames(mv.load_npz(config.views), config) if mv.is_npz(config.views) else None

    def __init__(self, config: GenerateConfig, width: int, height: int):
        self.config, self.width, self.height = config, width, height
        self.input = mv.plan_inputs(config).resized(width, height)
        self.seed_view = config.seed_view
        self.trajectory_desc = ""

    def records(self) -> dict:
        return {"views": mv.input_record(self.config)}

    def views(self, lift: LiftFn) -> tuple[list[SourceView], dict]:
        v = self.input
        if not v.posed:
            posed = lift.posed(list(v.images), self.width, self.height)  # LiftViews (stages.depth)
            if len(posed) != v.count:
                raise ValueError(f"depth service returned {len(posed)} views for {v.count} images")
            for i, p in enumerate(posed):
                if p.depth.shape != (self.height, self.width):
                    raise ValueError(f"depth service returned view {i} at {p.depth.shape}, "
                                     f"expected {(self.height, self.width)}")  # fmt: skip
            self.input = v = replace(
                v,
                images=np.stack(
                    [p.image if p.image is not None else v.images[i] for i, p in enumerate(posed)]
                ),
                depths=np.stack([p.depth for p in posed]).astype(np.float32),
                masks=np.stack([p.mask for p in posed]),
                Ks=np.stack([p.K for p in posed]),
                w2cs=np.stack([p.w2c for p in posed]),
                model=posed[0].model,
            )
            record = {
                "source": "geometry model",
                "model": v.model,
                "w2cs": v.w2cs.tolist(),
                "Ks": v.Ks.tolist(),
            }
        else:
            record = {"source": "views"}
        views = [SourceView(v.images[i], np.where(v.masks[i], v.depths[i], 0.0).astype(np.float32), v.masks[i],
                            v.Ks[i], v.w2cs[i]) for i in range(v.count)]  # fmt: skip
        return views, record

    # -- hooks beyond the single-image mode ---------------------------------------------------------

    def cameras(self, preset_w2cs: np.ndarray | None, frames: int) -> tuple[np.ndarray, np.ndarray, dict]:
        """(Ks, w2cs, the manifest's ``views`` record) without a camera path."""
        Ks, w2cs, self.trajectory_desc = mv.trajectory(self.input, self.seed_view, self.config.views_trajectory,
                                                       preset_w2cs, frames)  # fmt: skip
        return Ks, w2cs, self.manifest_record()

    def manifest_record(self) -> dict:
        return mv.manifest_record(self.input, self.config, self.trajectory_desc or "camera path")

    def scene_message(self):
        """``objvid.v1.RgbdViews`` of every view (a multi-view scene)."""
        return mv.rgbd_views_message(self.input, self.seed_view)
