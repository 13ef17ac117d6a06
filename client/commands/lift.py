"""``lift``: an image -> coloured scene PLY (valid pixels, world = camera frame), K JSON, depth .npy and
the resized image PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from objvid.client import inputs as io
from objvid.client import manifest as mf
from objvid.client.options import DEFAULT_HEIGHT, DEFAULT_WIDTH, GenerateConfig
from objvid.client.ply import ply_bytes
from objvid.client.run import Reporter, Run
from objvid.client.sdk import ObjvidClient


def backproject(depth: np.ndarray, K: np.ndarray) -> np.ndarray:
    """depth (H, W) z-depth, K (3, 3) -> camera-frame points (H, W, 3) float64 (OpenCV axes)."""
    h, w = depth.shape
    u, v = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    z = depth.astype(np.float64)
    return np.stack([(u - K[0, 2]) / K[0, 0] * z, (v - K[1, 2]) / K[1, 1] * z, z], -1)


def lift(image: Path, out_ply: Path, client: ObjvidClient, width: int = DEFAULT_WIDTH, height: int = DEFAULT_HEIGHT,
         intrinsics_out: Path | None = None, depth_out: Path | None = None,
         reporter: Reporter | None = None) -> dict:  # fmt: skip
    """Run ``lift``; returns a summary dict. Raises ObjvidError(stage, reason)."""
    out_ply = Path(out_ply)
    run = Run("lift", GenerateConfig(image=Path(image), out=out_ply), client, reporter, record=False)

    def body(run: Run) -> dict:
        with run.stage("inputs"):
            if width % 16 or height % 16 or width < 16 or height < 16:
                raise ValueError(
                    f"--width and --height must be positive multiples of 16, got {width}x{height}"
                )
            pixels = io.load_image(image)
        with run.stage("depth", 1, "lifting the image"):
            view = client.lift([pixels], width=width, height=height)[0]
        with run.stage("encoding"):
            z = view.depth
            keep = view.mask & np.isfinite(z) & (z > 0)
            out_ply.parent.mkdir(parents=True, exist_ok=True)
            pts = backproject(z, view.K)[keep].astype(np.float32)
            out_ply.write_bytes(ply_bytes(pts, view.image[keep]))
            k_path = Path(intrinsics_out) if intrinsics_out else out_ply.with_name(f"{out_ply.stem}_K.json")
            h, w = z.shape
            mf.write_json(k_path, {"K": view.K.tolist(), "width": w, "height": h, "model": view.model})
            d_path = Path(depth_out) if depth_out else out_ply.with_name(f"{out_ply.stem}_depth.npy")
            np.save(d_path, z)
            image_out = out_ply.with_name(f"{out_ply.stem}_image.png")
            Image.fromarray(view.image).save(image_out)
        return {"ply": str(out_ply.resolve()), "intrinsics": str(k_path.resolve()), "depth": str(d_path.resolve()),
                "image": str(image_out.resolve()), "points": int(keep.sum()), "width": w, "height": h,
                "model": view.model, "timings": run.timings.as_dict()}  # fmt: skip

    return run.execute(body)
