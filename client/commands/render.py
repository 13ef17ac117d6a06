"""``render``: the cache's renders of the trajectory (no diffusion, one buffer slot).

Writes the rgb mp4 (unless ``no_video``) and, with ``png_dir``, PNG frames ``rgb_0000.png``,
``mask_0000.png`` (255 = rendered) and ``object_0000.png`` (object id + 1, 0 = none, 8-bit).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from objvid.client import stages
from objvid.client.options import GenerateConfig
from objvid.client.run import Reporter, Run
from objvid.client.sdk import ObjvidClient, RenderedFrame
from objvid.client.video import Mp4Writer


def render(config: GenerateConfig, client: ObjvidClient, reporter: Reporter | None = None,
           services: dict | None = None) -> dict:  # fmt: skip
    """Run ``render``; returns a summary dict. Raises ObjvidError(stage, reason)."""
    return Run("render", config, client, reporter, services).execute(_render)


def save_pngs(png_dir: Path, frame: RenderedFrame) -> None:
    """The frame's first slot in use (slot 0 unless a multi-view scene emptied it) as
    rgb_/mask_/object_NNNN.png."""
    i, j = frame.index, stages.active_slot(frame)
    Image.fromarray(frame.rgb[j]).save(png_dir / f"rgb_{i:04d}.png", compress_level=1)
    Image.fromarray(frame.mask[j] * 255).save(png_dir / f"mask_{i:04d}.png", compress_level=1)
    obj = np.clip(frame.object_mask[j].astype(np.int32) + 1, 0, 255).astype(np.uint8)
    Image.fromarray(obj).save(png_dir / f"object_{i:04d}.png", compress_level=1)


def _render(run: Run) -> dict:
    cfg = run.config
    plan = stages.inputs(run)
    run.workdir.mkdir(parents=True, exist_ok=True)
    stages.depth(run, plan)
    Ks, w2cs = stages.cameras(run, plan)
    session = stages.scene(run, plan)
    png_dir = Path(cfg.png_dir) if cfg.png_dir else None
    if png_dir is not None:
        png_dir.mkdir(parents=True, exist_ok=True)
    writer = None if cfg.no_video else run.writer(Mp4Writer(cfg.out, plan.width, plan.height, cfg.fps))

    def on_frame(frame: RenderedFrame) -> None:
        with run.timings.stage("encoding"):
            if writer is not None:
                writer.append(frame.rgb[stages.active_slot(frame)])
            if "views" in run.manifest:
                run.manifest["views"]["slot_sources"].append(
                    [] if frame.slot_sources is None else frame.slot_sources.tolist()
                )
            if png_dir is not None:
                save_pngs(png_dir, frame)

    stages.render(run, session, Ks, w2cs, plan, f"{plan.frames} frames", on_frame)
    if writer is not None:
        with run.stage("encoding"):
            writer.finish()
    outputs = {"video": None if writer is None else str(cfg.out.resolve()),
               "png_dir": str(png_dir.resolve()) if png_dir else None}  # fmt: skip
    run.manifest["outputs"] = outputs
    return run.finish({**outputs, "frames": plan.frames, "width": plan.width, "height": plan.height})
