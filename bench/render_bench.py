#!/usr/bin/env python
"""Cache renderer benchmark: every renderer and mode vs an upstream-equivalent GEN3C render loop.

Full size (GPU): 704x1280 scene = 901,120 points from a synthetic depth map, objects of 50k and 500k
points, 121 poses of GEN3C's ``left`` / ``center_facing`` / 0.3 trajectory. Prints ms per 121-frame
trajectory (median of --reps after --warmup), the ratio to the baseline and the fraction of the
bandwidth floor, then a markdown table; writes JSON to --out (default bench/results/render_bench.json).

    python bench/render_bench.py                      # CUDA, full size
    python bench/render_bench.py --small --device cpu # quick CPU check (torch backend)

The baseline re-implements what upstream GEN3C does per 121 frames (not its code): cache on the CPU,
chunks of 2 views moved to the device, bilinear splat with ``index_put_(accumulate=True)``, image + mask
(and a second pass for depth in the ``+depth`` row), ``empty_cache`` per chunk.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import runpy
import statistics
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def _ensure_objvid() -> None:
    """Import objvid.cache from this checkout when the package is not installed (e.g. the GPU box)."""
    try:
        import objvid.cache  # noqa: F401

        return
    except ImportError:
        pass
    # The one package-dir mapper (also used through PYTHONPATH=bench/_path by spawned servers).
    runpy.run_path(str(ROOT / "bench" / "_path" / "sitecustomize.py"))


_ensure_objvid()
from objvid.cache import Scene  # noqa: E402
from objvid.runtime.trajectory import generate_camera_trajectory  # noqa: E402

# ------------------------------------------------------------------------------------------- inputs


def gen3c_left_center_facing(n: int = 121, distance: float = 0.3, center_depth: float = 1.0) -> np.ndarray:
    """GEN3C ``left`` / ``center_facing`` trajectory from w2c = I (``objvid.runtime.trajectory``): (n,4,4) float64 w2c."""
    w2cs, _ = generate_camera_trajectory(
        "left", np.eye(4), np.eye(3), n, distance, "center_facing", center_depth
    )
    return w2cs


def synthetic_rgbd(H: int, W: int, seed: int = 0):
    """Room-like depth: floor 1.5 below a camera pitched slightly down, a back wall at 8, two boxes,
    sky (inf) in the top rows; a colourful image. Returns image (H,W,3) uint8, depth (H,W) float32, K."""
    rng = np.random.default_rng(seed)
    f = W / (2 * np.tan(np.radians(30)))
    K = np.array([[f, 0, W / 2], [0, f, H / 2], [0, 0, 1.0]])
    v, u = np.meshgrid(np.arange(H, dtype=np.float64), np.arange(W, dtype=np.float64), indexing="ij")
    ry = (v - K[1, 2]) / f + 0.1  # camera pitched down by ~0.1 rad
    with np.errstate(divide="ignore"):
        floor = np.where(ry > 0, 1.5 / ry, np.inf)
    depth = np.minimum(floor, 8.0)
    depth[: H // 10] = np.inf  # sky above the wall
    for u0, u1, v0, v1, z in ((0.2, 0.35, 0.45, 0.8, 3.0), (0.6, 0.8, 0.5, 0.75, 4.5)):
        depth[int(v0 * H) : int(v1 * H), int(u0 * W) : int(u1 * W)] = z
    img = np.stack([(u / W * 255), (v / H * 255), 128 + 127 * np.sin(u / 17) * np.cos(v / 23)], -1)
    img = (img + rng.integers(0, 20, img.shape)).clip(0, 255).astype(np.uint8)
    return img, depth.astype(np.float32), K


def object_cloud(n: int, seed: int = 1):
    """n points on a sphere of radius 0.35 (object frame) with random colours."""
    rng = np.random.default_rng(seed)
    p = rng.normal(size=(n, 3))
    p = 0.35 * p / np.linalg.norm(p, axis=1, keepdims=True)
    return p.astype(np.float32), rng.integers(0, 256, (n, 3), dtype=np.uint8)


# ------------------------------------------------------------------------------------------- baseline


def upstream_like_render(
    points_hw3: torch.Tensor,
    image_chw: torch.Tensor,
    w2cs: np.ndarray,
    Ks: np.ndarray,
    device: torch.device,
    render_depth: bool = False,
    chunk: int = 2,
) -> tuple:
    """GEN3C-equivalent loop (see module doc). Cache tensors live on the CPU. Returns (images, masks)."""
    H, W = points_hw3.shape[:2]
    imgs, masks = [], []
    w2c_t = torch.as_tensor(w2cs, dtype=torch.float32)
    K_t = torch.as_tensor(Ks, dtype=torch.float32)
    for c0 in range(0, len(w2cs), chunk):
        c1 = min(len(w2cs), c0 + chunk)
        b = c1 - c0
        pts = points_hw3[None].expand(b, H, W, 3).to(device)  # host -> device per chunk, as upstream
        img = image_chw[None].expand(b, 3, H, W).to(device)
        w2c, K = w2c_t[c0:c1].to(device), K_t[c0:c1].to(device)
        cam = torch.einsum("bij,bhwj->bhwi", w2c[:, :3, :3], pts) + w2c[:, None, None, :3, 3]
        proj = torch.einsum("bij,bhwj->bhwi", K, cam)
        z = proj[..., 2]
        valid = (z > 0).to(torch.float32)
        uv = proj[..., :2] / (z[..., None] + 1e-7)
        out_img, out_mask = _index_put_splat(img, uv, z, valid, True)
        if render_depth:
            _index_put_splat(z[:, None], uv, z, valid, False)
        imgs.append(out_img)
        masks.append(out_mask)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return torch.cat(imgs), torch.cat(masks)


def _index_put_splat(frame, uv, z, valid, is_image):
    b, c, H, W = frame.shape
    pos = uv + 1
    x, y = pos[..., 0], pos[..., 1]
    xf, yf = torch.floor(x).long().clamp(0, W + 1), torch.floor(y).long().clamp(0, H + 1)
    xc, yc = torch.ceil(x).long().clamp(0, W + 1), torch.ceil(y).long().clamp(0, H + 1)
    x, y = x.clamp(0, W + 1), y.clamp(0, H + 1)
    log_z = torch.log1p(z.clamp(min=0))
    w_depth = torch.exp(torch.clamp(log_z / (log_z.max() + 1e-7) * 50, max=80)) + 1e-7
    bi = torch.arange(b, device=frame.device)[:, None, None].expand(b, H, W)
    acc = torch.zeros(b, H + 2, W + 2, c, device=frame.device)
    wsum = torch.zeros(b, H + 2, W + 2, 1, device=frame.device)
    vals = frame.permute(0, 2, 3, 1)
    for rows, cols, prox in (
        (yf, xf, (1 - (y - yf)) * (1 - (x - xf))),
        (yc, xf, (1 - (yc - y)) * (1 - (x - xf))),
        (yf, xc, (1 - (y - yf)) * (1 - (xc - x))),
        (yc, xc, (1 - (yc - y)) * (1 - (xc - x))),
    ):
        w = (prox * valid / w_depth)[..., None]
        acc.index_put_((bi, rows, cols), vals * w, accumulate=True)
        wsum.index_put_((bi, rows, cols), w, accumulate=True)
    acc, wsum = acc[:, 1:-1, 1:-1], wsum[:, 1:-1, 1:-1]
    mask = wsum > 0
    out = torch.where(
        mask, acc / wsum.clamp(min=1e-30), torch.tensor(-1.0 if is_image else 0.0, device=frame.device)
    )
    return out.permute(0, 3, 1, 2), mask.permute(0, 3, 1, 2).float()


# ------------------------------------------------------------------------------------------- timing


def timed(fn, device: torch.device, warmup: int, reps: int) -> list[float]:
    """Milliseconds per call (device events on CUDA, wall clock on CPU) after warm-up calls."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(reps):
        if device.type == "cuda":
            torch.cuda.synchronize()
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            torch.cuda.synchronize()
            out.append(a.elapsed_time(b))
        else:
            t = time.perf_counter()
            fn()
            out.append((time.perf_counter() - t) * 1e3)
    return out


def hbm_bandwidth(device: torch.device) -> float:
    """Datasheet HBM bandwidth (bytes/s) of the device, for the floor estimate."""
    if device.type != "cuda":
        return 50e9
    name = torch.cuda.get_device_name(device)
    if "H200" in name:
        return 4.8e12
    if "H100" in name:
        return 2.0e12 if "PCIe" in name else 3.35e12
    if "A100" in name:
        return 2.0e12
    return 1.0e12


# ------------------------------------------------------------------------------------------- checks


def correctness_checks(scene: Scene, w2cs, K, H, W, backend: str) -> dict:
    """Fast backend vs the torch path on 3 full-size views, and vs the float64 reference on small random
    scenes. Returns the measured errors; raises if they are out of tolerance."""
    idx = [0, 60, 120] if len(w2cs) > 120 else [0, len(w2cs) // 2, len(w2cs) - 1]
    res = {}
    for mode, splat in (("fused", "gen3c"), ("fused", "zbuffer"), ("full", "zbuffer")):
        kw = dict(mode=mode, splat=splat, outputs=("rgb", "rgb_float", "mask", "depth", "object_mask"))
        a = scene.render(w2cs[idx], K, H, W, backend=backend, **kw)
        b = scene.render(w2cs[idx], K, H, W, backend="torch", **kw)
        err = (a.rgb_float - b.rgb_float).abs().max().item() / 127.5
        res[f"{mode}/{splat} vs torch"] = {
            "rgb_max_abs_err_pm1": err,
            "mask_diff_px": int((a.mask != b.mask).sum()),
            "object_mask_diff_px": int((a.object_mask != b.object_mask).sum()),
            "depth_max_rel_err": float(((a.depth - b.depth).abs() / b.depth.clamp(min=1e-6)).max()),
        }
        ok = err <= 1e-4 and res[f"{mode}/{splat} vs torch"]["mask_diff_px"] == 0
        if splat == "zbuffer" or mode == "full":
            ok = ok and torch.equal(a.rgb, b.rgb) and torch.equal(a.object_mask, b.object_mask)
        res[f"{mode}/{splat} vs torch"]["ok"] = bool(ok)
    sys.path.insert(0, str(ROOT / "tests"))
    try:
        from test_render_reference import ALL, assert_zbuffer_equal, random_setup
        from test_render_reference import H as h
        from test_render_reference import W as w

        dev = scene.device
        for seed in (0, 1):
            s, cams, k = random_setup(seed, two_slots=seed == 1)
            s = Scene.from_state_dict(s.state_dict(), dev)
            for mode, splat in (("fused", "gen3c"), ("full", "zbuffer"), ("fused", "zbuffer")):
                kw = dict(mode=mode, splat=splat, outputs=ALL)
                fa = s.render(cams, k, h, w, backend=backend, **kw)
                fb = s.render(cams, k, h, w, backend="reference", **kw)
                fa = type(fa)(
                    **{f: (getattr(fa, f).cpu() if getattr(fa, f) is not None else None) for f in ALL}
                )
                fb = type(fb)(
                    **{f: (getattr(fb, f).cpu() if getattr(fb, f) is not None else None) for f in ALL}
                )
                if splat == "gen3c":
                    e = (fa.rgb_float - fb.rgb_float).abs().max().item() / 127.5
                    assert e <= 1e-4 and torch.equal(fa.mask, fb.mask), (seed, mode, e)
                    res[f"reference seed{seed} {mode}/{splat}"] = {"rgb_max_abs_err_pm1": e, "ok": True}
                else:
                    assert_zbuffer_equal(fa, fb)
                    res[f"reference seed{seed} {mode}/{splat}"] = {"identical_winners": True, "ok": True}
    except ImportError as exc:  # tests folder absent
        res["reference"] = f"skipped ({exc})"
    return res


# ------------------------------------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--small", action="store_true", help="88x160, 9 frames, small objects (CPU check)")
    ap.add_argument("--frames", type=int, default=None)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--baseline-reps", type=int, default=2)
    ap.add_argument("--no-check", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "render_bench.json"))
    args = ap.parse_args()
    device = torch.device(args.device)
    H, W = (88, 160) if args.small else (704, 1280)
    T = args.frames or (9 if args.small else 121)
    obj_sizes = (2_000, 20_000) if args.small else (50_000, 500_000)
    backend = "triton" if device.type == "cuda" else "torch"

    img, depth, K = synthetic_rgbd(H, W)
    w2cs = gen3c_left_center_facing(T)
    scene = Scene.from_rgbd(img, depth, K, device=device)
    scene2 = Scene.from_rgbd(img, depth, K, device=device)
    scene2.add_view(img[:, ::-1].copy(), depth, K, w2cs[T // 2])
    objs = {n: object_cloud(n) for n in obj_sizes}
    place = np.eye(4)
    place[:3, 3] = [0.3, 0.4, 2.2]
    scenes_obj = {}
    for n, (p, c) in objs.items():
        s = Scene.from_rgbd(img, depth, K, device=device)
        s.add_object(p, c, place)
        scenes_obj[n] = s

    info = {
        "date": datetime.date.today().isoformat(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "backend": backend,
        "H": H,
        "W": W,
        "frames": T,
        "scene_points": H * W,
        "object_points": list(obj_sizes),
        "hbm_bytes_per_s": hbm_bandwidth(device),
    }
    try:
        import triton

        info["triton"] = triton.__version__
    except ImportError:
        info["triton"] = None
    print(json.dumps(info), flush=True)

    if not args.no_check:
        t = time.time()
        try:
            info["check"] = correctness_checks(scenes_obj[obj_sizes[0]], w2cs, K, H, W, backend)
        except Exception:  # report and go on timing: one device session should bring back everything
            info["check"] = {"error": traceback.format_exc()}
        print("check:", json.dumps(info["check"]), f"({time.time() - t:.1f}s)", flush=True)

    # baseline: upstream-equivalent loop, cache on the CPU
    pts_cpu = torch.from_numpy(scene.slot_points(0, valid_only=False)[0]).view(H, W, 3)
    img_cpu = torch.from_numpy(img).permute(2, 0, 1).float() / 127.5 - 1
    Ks = np.repeat(K[None], T, 0)
    base = {}
    for name, rd in (("upstream-like loop (image+mask)", False), ("upstream-like loop (+depth)", True)):
        ms = timed(
            lambda rd=rd: upstream_like_render(pts_cpu, img_cpu, w2cs, Ks, device, render_depth=rd),
            device,
            1,
            args.baseline_reps,
        )
        base[name] = statistics.median(ms)
        print(f"{name:48s} {base[name]:10.2f} ms", flush=True)
    baseline_ms = base["upstream-like loop (image+mask)"]

    rows = []
    core = ("rgb", "mask", "depth")
    configs = [
        ("scene gen3c", scene, "scene", "gen3c", core),
        ("scene gen3c, 2 slots", scene2, "scene", "gen3c", core),
        ("scene zbuffer 2x2", scene, "scene", "zbuffer", core),
        ("scene zbuffer 1px", scene, "scene", "zbuffer", core, 1),
    ]
    for n in obj_sizes:
        s = scenes_obj[n]
        k = f"{n // 1000}k"
        configs += [
            (f"fused gen3c + {k} object", s, "fused", "gen3c", core),
            (f"fused zbuffer + {k} object", s, "fused", "zbuffer", core),
            (f"fused zbuffer + {k} object (+object_mask)", s, "fused", "zbuffer", core + ("object_mask",)),
            (f"fused zbuffer + {k} object, object radius 1.0 px", s, "fused", "zbuffer", core, 2, 1.0),
            (f"full + {k} object", s, "full", "zbuffer", core),
            (f"objects only {k}", s, "objects", "zbuffer", core),
        ]
    bw = info["hbm_bytes_per_s"]
    for cfg in configs:
        name, s, mode, splat, outs = cfg[:5]
        fp = cfg[5] if len(cfg) > 5 else 2
        rad = cfg[6] if len(cfg) > 6 else 0.75
        fn = lambda s=s, mode=mode, splat=splat, outs=outs, fp=fp, rad=rad: s.render(  # noqa: E731
            w2cs,
            K,
            H,
            W,
            mode=mode,
            splat=splat,
            outputs=outs,
            footprint=fp,
            object_radius_px=rad,
            backend=backend,
        )
        try:
            ms = timed(fn, device, args.warmup, args.reps)
        except Exception:
            print(f"{name}: FAILED\n{traceback.format_exc()}", flush=True)
            rows.append({"name": name, "error": traceback.format_exc()})
            continue
        med = statistics.median(ms)
        slots = 1 if mode == "objects" else s.num_slots
        pts = (0 if mode == "objects" else s.num_points) + s.num_object_points
        out_b = {"rgb": 3, "mask": 1, "depth": 4, "object_mask": 2}
        floor_bytes = T * (pts * 16 + slots * H * W * sum(out_b[o] for o in outs))
        floor_ms = floor_bytes / bw * 1e3
        row = {
            "name": name,
            "mode": mode,
            "splat": splat,
            "object_radius_px": rad,
            "footprint": fp,
            "outputs": list(outs),
            "slots": slots,
            "points": pts,
            "ms_median": med,
            "ms_all": ms,
            "ms_per_frame": med / T,
            "speedup_vs_baseline": baseline_ms / med,
            "floor_ms": floor_ms,
            "fraction_of_floor": floor_ms / med,
        }
        rows.append(row)
        print(
            f"{name:48s} {med:10.2f} ms  x{baseline_ms / med:8.1f} vs baseline  floor {floor_ms:6.2f} ms "
            f"({100 * floor_ms / med:5.1f}%)",
            flush=True,
        )
        if device.type == "cuda":
            torch.cuda.empty_cache()
    info["baseline_ms"] = base
    info["rows"] = rows
    if device.type == "cuda":
        info["max_memory_allocated_gb"] = torch.cuda.max_memory_allocated(device) / 1e9
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(info, indent=1))
    print(
        f"\n| renderer ({T} frames, {H}x{W}) | ms / trajectory | vs upstream-like loop | floor ms | % of floor |"
    )
    print("|---|---|---|---|---|")
    for name, ms in base.items():
        print(f"| {name} | {ms:.1f} | 1.0x{'' if ms == baseline_ms else f' ({baseline_ms / ms:.2f})'} | | |")
    for r in rows:
        if "error" in r:
            print(f"| {r['name']} | failed | | | |")
            continue
        print(
            f"| {r['name']} | {r['ms_median']:.2f} | {r['speedup_vs_baseline']:.0f}x | {r['floor_ms']:.2f} | "
            f"{100 * r['fraction_of_floor']:.0f}% |"
        )
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
