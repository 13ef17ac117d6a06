"""Object fidelity on the demo sneaker: the metrics for known damage, and their cost per frame (CPU).

Renders the demo room + sneaker with objvid.cache (fused, 1.5 px object points, GEN3C's `left` preset),
once with and once without the object (the true background behind it), then builds outputs whose answer
is known and measures them with objvid.client.fidelity:

  h264        the render through the client's H.264 encoder (CRF 20): what an intact object costs
  relit_0.8   the whole frame at 80% brightness (the model's lighting): must not be flagged
  blur_1      Gaussian sigma 1 px over the frame (a model that softens)
  shift_2/4/8 the object layer moved right by N px over the true background
  hue_60      the object's hue rotated by 60 degrees
  erased      the true background where the object was
  half        the object's left half erased

Prints a table (medians over frames, share of frames flagged) and the time per frame of the report and of
the lock; saves JSON under bench/results/. ``--tiny`` runs 320x176, 5 frames.

  .venv/bin/python bench/object_fidelity_bench.py                # 1280x704, 9 frames
  .venv/bin/python bench/object_fidelity_bench.py --tiny
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from objvid.cache.io import load_object
from objvid.cache.scene import Scene
from objvid.client import fidelity as fd
from objvid.client import object_lock as lock
from objvid.client.video import Mp4Writer, read_video
from objvid.runtime import trajectory as traj
from objvid.testing import assets


def render_demo(width: int, height: int, frames: int, tmp: Path):
    """-> rgb (T, H, W, 3), background (T, H, W, 3), scene mask (T, H, W), object ids (T, H, W)."""
    files = assets.write_assets(tmp, width, height)
    image = np.asarray(Image.open(files["image"]).convert("RGB"))
    depth = np.load(files["depth"])
    K = np.array(json.loads(Path(files["intrinsics"]).read_text())["K"])
    scene = Scene.from_rgbd(image, depth, K, np.eye(4), filter_points_threshold=0.05)
    pts, cols = load_object(Path(files["object"]).read_bytes(), "sneaker.ply")
    oid = scene.add_object(pts, cols)
    scene.place_object(oid)
    w2cs, Ks = traj.generate_camera_trajectory("left", np.eye(4), K, frames)
    with torch.no_grad():
        out = scene.render(w2cs, Ks, height, width, mode="fused", object_radius_px=1.5,
                           outputs=("rgb", "mask", "object_mask"))  # fmt: skip
        scene.remove_object(oid)
        bg = scene.render(w2cs, Ks, height, width, mode="fused", outputs=("rgb",))
    return (out.rgb[:, 0].numpy(), bg.rgb[:, 0].numpy(), out.mask[:, 0].numpy(),
            out.object_mask[:, 0].numpy())  # fmt: skip


def _h264(frames: np.ndarray, tmp: Path) -> np.ndarray:
    path = tmp / "h264.mp4"
    with Mp4Writer(path, frames.shape[2], frames.shape[1]) as w:
        w.append(frames)
    return read_video(path)


def _shift(rgb, bg, ids, dx):
    out = bg.copy()
    m = np.roll(ids >= 0, dx, axis=1)
    out[m] = np.roll(rgb, dx, axis=1)[m]
    return out


def _hue(rgb, ids, degrees):
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
    hsv[..., 0] = (hsv[..., 0].astype(int) + degrees // 2) % 180
    out = rgb.copy()
    m = ids >= 0
    out[m] = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[m]
    return out


def cases(rgb, bg, ids, tmp: Path) -> dict[str, np.ndarray]:
    out = {"h264": _h264(rgb, tmp), "relit_0.8": (rgb * 0.8).astype(np.uint8)}
    out["blur_1"] = np.stack([cv2.GaussianBlur(f, (0, 0), 1.0) for f in rgb])
    for dx in (2, 4, 8):
        out[f"shift_{dx}"] = np.stack([_shift(r, b, i, dx) for r, b, i in zip(rgb, bg, ids, strict=True)])
    out["hue_60"] = np.stack([_hue(r, i, 60) for r, i in zip(rgb, ids, strict=True)])
    out["erased"] = np.where((ids >= 0)[..., None], bg, rgb)
    half = np.zeros_like(ids, bool)
    for t in range(len(ids)):
        xs = np.nonzero((ids[t] >= 0).any(axis=0))[0]
        if xs.size:
            half[t, :, : (xs[0] + xs[-1]) // 2] = True
    out["half"] = np.where(((ids >= 0) & half)[..., None], bg, rgb)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=704)
    ap.add_argument("--frames", type=int, default=9)
    ap.add_argument("--tiny", action="store_true", help="320x176, 5 frames")
    ap.add_argument(
        "--out", type=Path, default=None, help="JSON (default bench/results/object_fidelity_<size>.json)"
    )
    args = ap.parse_args()
    if args.tiny:
        args.width, args.height, args.frames = 320, 176, 5
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        rgb, bg, smask, ids = render_demo(args.width, args.height, args.frames, tmp)
        outputs = cases(rgb, bg, ids, tmp)
    t = fd.Thresholds()
    rows, timing = {}, {}
    for name, video in outputs.items():
        t0 = time.perf_counter()
        per = [fd.measure_frame(rgb[i], smask[i], ids[i], video[i], [0], t)[0] for i in range(len(video))]
        timing.setdefault("report_ms", []).append(1000 * (time.perf_counter() - t0) / len(video))
        s = fd.summarize(list(range(len(per))), per)
        rows[name] = {k: (s[k]["median"] if s[k] else None) for k in fd.METRICS}
        rows[name]["flagged"] = s["flagged"] / max(s["evaluated"], 1)
        rows[name]["flags"] = s["flag_counts"]
    t0 = time.perf_counter()
    for i in range(len(rgb)):
        lock.lock_frame(outputs["hue_60"][i], rgb[i], ids[i], smask[i], 1.0)
    lock_ms = 1000 * (time.perf_counter() - t0) / len(rgb)
    visible = int(np.median((ids >= 0).sum(axis=(1, 2))))
    print(f"object fidelity, demo sneaker, {args.width}x{args.height}, {args.frames} frames, "
          f"median visible object pixels {visible}")  # fmt: skip
    print(f"{'case':<10} {'color dE':>9} {'SSIM':>6} {'silh.':>6} {'shift':>6} {'flagged':>8}  flags")
    for name, r in rows.items():
        cells = [f"{r[k]:.3g}" if r[k] is not None else "-" for k in fd.METRICS]
        print(
            f"{name:<10} {cells[0]:>9} {cells[1]:>6} {cells[2]:>6} {cells[3]:>6} {r['flagged']:>8.0%}  {r['flags']}"
        )
    report_ms = float(np.median(timing["report_ms"]))
    print(f"report: {report_ms:.1f} ms/frame/object; lock (alpha 1): {lock_ms:.1f} ms/frame")
    out = args.out or Path(__file__).parent / "results" / f"object_fidelity_{args.width}x{args.height}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"width": args.width, "height": args.height, "frames": args.frames,
                               "visible_px_median": visible, "thresholds": t.as_dict(), "cases": rows,
                               "report_ms_per_frame": report_ms, "lock_ms_per_frame": lock_ms}, indent=2))  # fmt: skip
    print(f"saved {out}")


if __name__ == "__main__":
    main()
