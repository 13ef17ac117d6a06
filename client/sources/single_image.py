"""Input mode ``image``: one background photo, lifted by the depth service (MoGe), or RGB-D when the
user gives ``--depth`` and ``--intrinsics`` (then the depth service is not needed for the input).

Resizing to the working size squashes (no crop) like GEN3C: the image bilinearly, depth and mask by
nearest neighbour, K scaled per axis (see ``objvid.client.inputs``).
"""

from __future__ import annotations

import numpy as np

from objvid.client import inputs as io
from objvid.client import manifest as mf
from objvid.client.limits import ClientLimits, check_input_image
from objvid.client.options import GenerateConfig
from objvid.client.sources.base import InputSource, LiftFn, SourceView


class SingleImageSource(InputSource):
    """``--image`` [+ ``--depth`` + ``--intrinsics``]."""

    name = "image"

    @classmethod
    def accepts(cls, config: GenerateConfig) -> bool:
        return config.image is not None

    @classmethod
    def needs_lift(cls, config: GenerateConfig) -> bool:
        return config.depth is None

    def __init__(self, config: GenerateConfig, width: int, height: int):
        self.config, self.width, self.height = config, width, height
        check_input_image(config.image, ClientLimits.from_env())  # from its header, before decoding
        self.image = io.load_image(config.image)  # (h, w, 3) as read
        self.rgbd: SourceView | None = None
        if config.depth is None:
            if config.intrinsics is not None:
                raise ValueError("--intrinsics is only used with --depth")
            return
        if config.intrinsics is None:
            raise ValueError("--depth needs --intrinsics (a K JSON file)")
        depth, valid = io.load_depth(config.depth, units=config.depth_units)
        if depth.shape != self.image.shape[:2]:
            raise ValueError(
                f"--depth {config.depth}: shape {depth.shape} differs from the image's {self.image.shape[:2]}"
            )
        h0, w0 = self.image.shape[:2]
        K = io.load_intrinsics(config.intrinsics, (w0, h0))
        self.rgbd = SourceView(
            image=io.resize_image(self.image, width, height),
            depth=io.resize_nearest(depth, width, height),
            mask=io.resize_nearest(valid, width, height),
            K=io.scale_intrinsics(K, (w0, h0), (width, height)),
        )

    def records(self) -> dict:
        cfg = self.config
        return {"image": mf.file_record(cfg.image), "depth": mf.file_record(cfg.depth),
                "intrinsics": mf.file_record(cfg.intrinsics)}  # fmt: skip

    def views(self, lift: LiftFn) -> tuple[list[SourceView], dict]:
        if self.rgbd is not None:
            return [self.rgbd], {"source": "file"}
        view = lift([self.image], self.width, self.height)[0]
        if view.depth.shape != (self.height, self.width):
            raise ValueError(
                f"depth service returned {view.depth.shape}, expected {(self.height, self.width)}"
            )
        source = SourceView(view.image, view.depth, view.mask, view.K, np.eye(4))
        return [source], {"source": "service", "model": view.model, "K": view.K}
