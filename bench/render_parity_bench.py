#!/usr/bin/env python
"""GEN3C splat parity with upstream + speed of the gen3c splat and of foreground masking (issue 11).

Scene: a synthetic room (wavy wall, near boxes with strong depth edges, sky band -> z = 100), one point per
pixel, random colours; cameras: GEN3C's ``left`` / ``center_facing`` / 0.3 trajectory. References (the
independent restatement in tests/upstream_gen3c.py, on the same device):

- ``f64 objvid pts``: upstream's arithmetic in float64 on the float32 points objvid stores;
- ``upstream f32``: upstream's own float32 pipeline from the depth map (lift + warp);
- ``upstream f64``: the same in float64; ``f32 vs f64`` compares the two upstream runs (its own round-off).

Per reference, with and without the 0.05 filter, over the compared frames (frame 0 = the source camera is
excluded: objvid reproduces the input there, upstream gives float32 noise): max |d| (RGB in [-1,1]) over pixels
both cover, mask agreement, pixels upstream covers and objvid leaves empty, fraction of pixels with |d| > 0.01.
Speed: ms per T-frame render (median of --reps after a warm-up), gen3c splat with and without foreground
masking. Prints a table; JSON to --out.

    python bench/render_parity_bench.py --tiny --device cpu     # CPU smoke run (CI size)
    python bench/render_parity_bench.py --device cuda           # 704x1280, 121 frames (GPU)
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))
import upstream_gen3c as up  # noqa: E402
from render_bench import _ensure_objvid  # noqa: E402,F401  (makes objvid importable from the checkout)

from objvid.cache import Scene  # noqa: E402
from objvid.runtime.trajectory import generate_camera_trajectory  # noqa: E402


def room(H: int, W: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W]
    d = 3.0 + 0.3 * np.sin(xx / (7.0 * W / 56)) + 0.2 * yy / H
    for _ in range(4):
        y0, x0 = rng.integers(0, H - 4), rng.integers(0, W - 4)
        h, w = rng.integers(3, max(4, H // 2)), rng.integers(3, max(4, W // 2))
        d[y0 : y0 + h, x0 : x0 + w] = rng.uniform(0.3, 2.0)
    d[: H // 6] = np.inf
    image = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    return image, d.astype(np.float32)


def _sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, dev, reps: int) -> float:
    fn()
    _sync(dev)
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        _sync(dev)
        out.append((time.perf_counter() - t0) * 1000)
    return statistics.median(out)


def stats(o_rgb, o_mask, r_rgb, r_mask):
    """o_rgb in [-1,1] float64 (F,H,W,3), masks bool (F,H,W)."""
    both = o_mask & r_mask
    d = (o_rgb - r_rgb).abs().amax(-1)
    return {
        "max_abs_diff": float(d[both].max()) if both.any() else 0.0,
        "mask_agreement": float((o_mask == r_mask).double().mean()),
        "upstream_covered_objvid_empty": int((r_mask & ~o_mask).sum()),
        "objvid_covered_upstream_empty": int((o_mask & ~r_mask).sum()),
        "frac_diff_gt_0.01": float(((d > 0.01) & both).double().mean()),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--tiny", action="store_true", help="64x112, 9 frames (CPU smoke run)")
    ap.add_argument("--height", type=int, default=704)
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--frames", type=int, default=121)
    ap.add_argument("--compare-every", type=int, default=1, help="compare every k-th frame (>= 1)")
    ap.add_argument("--reps", type=int, default=5, help="timed repetitions (0 = parity only)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "render_parity_bench.json")
    a = ap.parse_args()
    if a.tiny:
        a.height, a.width, a.frames = 64, 112, 9
    dev = torch.device(a.device)
    H, W, T = a.height, a.width, a.frames
    image, depth = room(H, W)
    K = np.array([[0.7 * W, 0, W / 2], [0, 0.7 * W, H / 2], [0, 0, 1]])
    w2cs, Ks = generate_camera_trajectory("left", np.eye(4), K, T, 0.3, "center_facing")
    frames = list(range(0, T, a.compare_every))
    col = torch.from_numpy(image)[None].double() / 127.5 - 1
    clean = torch.nan_to_num(torch.from_numpy(depth), nan=100.0, posinf=100.0).clamp(0, 100)
    result = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu {platform.machine()}",
        "size": [H, W],
        "frames": T,
        "compared_frames": len(frames) - (1 if 0 in frames else 0),
        "parity": {},
        "speed_ms": {},
    }
    rows = []
    for thr in (None, 0.05):
        tag = "no filter" if thr is None else f"filter {thr}"
        scene = Scene.from_rgbd(image, depth, K, device=dev, filter_points_threshold=thr)
        out = scene.render(w2cs, K, H, W, mode="scene", outputs=("rgb_float", "mask"))
        o_rgb = out.rgb_float[:, 0].double() / 127.5 - 1
        o_mask = out.mask[:, 0]
        pts, _ = scene.slot_points(-1, valid_only=False)
        valid = torch.from_numpy(scene.slot_valid(-1).reshape(1, H, W))
        m_up = None if thr is None else up.reliable_mask(clean, thr)[None]
        refs = {}
        sel = [f for f in frames if f != 0]
        for name, P, m, dt in (
            ("f64 objvid pts", torch.from_numpy(pts.reshape(1, H, W, 3)), valid, torch.float64),
            ("upstream f32", up.lift(depth, K, np.eye(4), torch.float32)[None], m_up, torch.float32),
            ("upstream f64", up.lift(depth, K, np.eye(4), torch.float64)[None], m_up, torch.float64),
        ):
            rgbs, masks = [], []
            for f in sel:  # the warp-chunk pair of frame f (upstream's normaliser spans the pair)
                f0 = f - f % 2
                r, rm, _ = up.render_cache(P, col, m, w2cs[f0 : f0 + 2], Ks[f0 : f0 + 2], dt, device=dev)
                rgbs.append(r[f - f0 : f - f0 + 1, 0].double())
                masks.append(rm[f - f0 : f - f0 + 1, 0])
            refs[name] = (torch.cat(rgbs), torch.cat(masks))
        pairs = [(n, (o_rgb[sel], o_mask[sel]), refs[n]) for n in refs]
        pairs.append(("upstream f32 vs f64", refs["upstream f32"], refs["upstream f64"]))
        for name, (ar, am), (br, bm) in pairs:
            s = stats(ar, am, br, bm)
            result["parity"][f"{tag} / {name}"] = s
            rows.append((tag, name, s))
        identity_exact = bool(((o_rgb[0] - col[0].to(o_rgb)).abs().amax(-1)[o_mask[0]] < 1e-5).all())
        result["parity"][f"{tag} / source camera reproduces the input"] = identity_exact
        for fg in (False, True) if a.reps > 0 else ():
            ms = timed(
                lambda fg=fg, sc=scene: sc.render(w2cs, K, H, W, mode="scene", foreground_masking=fg),
                dev,
                a.reps,
            )
            result["speed_ms"][f"{tag} / gen3c splat{' + foreground masking' if fg else ''}"] = round(ms, 2)
    print(f"# GEN3C splat parity, {H}x{W}, {T} frames, {result['device']} ({result['date']})")
    print("| filter | reference | max abs d | mask agreement | upstream covers, objvid empty | |d|>0.01 |")
    print("|---|---|---|---|---|---|")
    for tag, name, s in rows:
        print(f"| {tag} | {name} | {s['max_abs_diff']:.4g} | {s['mask_agreement']:.6f} | "
              f"{s['upstream_covered_objvid_empty']} | {s['frac_diff_gt_0.01']:.2e} |")  # fmt: skip
    print("\n| render | ms per trajectory |\n|---|---|")
    for k, v in result["speed_ms"].items():
        print(f"| {k} | {v} |")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
