#!/usr/bin/env python
"""Multi-view benchmark: the cache's per-chunk buffer selection and the geometry model (VGGT).

1. Cache: N posed views of the demo room (``assets_multiview.room_views``; views beyond the bundled two
   are spread along x with yaw), a sneaker of 250k points, 121 cameras of GEN3C's left / center_facing /
   0.3 trajectory from view 0. Rows: single-view chunk (``Scene.render``, 1 slot), multi-view chunk
   (``plan_buffers`` + ``render_selected``: coverage pass over all N + fused render of the 2 kept), and
   the coverage pass alone. ms per 121-frame chunk (median of --reps after a warm-up).
2. Geometry: ``GeometryModel.lift_views`` for N views at the working size with random weights in the
   official layout (full VGGT-1B by default; ``--tiny`` for the few-layer test network). Seconds per call
   and peak device memory.

    python bench/multiview_bench.py                       # CUDA, 1280x704, N = 2, 4, 8, VGGT-1B size
    python bench/multiview_bench.py --tiny --device cpu   # quick CPU check (320x176, tiny VGGT, 9 frames)

Prints a markdown table and writes JSON to --out (default bench/results/multiview_bench.json).
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from objvid.cache import Scene
from objvid.cache.multiview import plan_buffers, render_selected, source_coverage
from objvid.runtime import trajectory as traj
from objvid.testing.assets import sample_surface, sneaker_mesh
from objvid.testing.assets_multiview import room_views


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _time(fn, device: str, reps: int) -> float:
    fn()
    _sync(device)
    runs = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        runs.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(runs)


def cache_rows(width: int, height: int, counts: list[int], frames: int, device: str, reps: int) -> list[dict]:
    rows = []
    L, _ = traj.generate_camera_trajectory("left", np.eye(4), np.eye(3), frames, 0.3, "center_facing")
    L = np.asarray(L, np.float64).reshape(-1, 4, 4)
    pts, cols = sample_surface(sneaker_mesh(), 250_000 if width >= 1280 else 20_000)
    for n in counts:
        spec = tuple((-0.25 * i, 15.0 * i) for i in range(n))
        v = room_views(width, height, spec)
        Ks = np.repeat(v["Ks"][:1], frames, 0)
        one = Scene.from_rgbd(
            v["images"][0], v["depths"][0], v["Ks"][0], device=device, filter_points_threshold=0.05
        )
        multi = Scene.from_views(v["images"], v["depths"], v["Ks"], v["w2cs"], device=device,
                                 filter_points_threshold=0.05)  # fmt: skip
        pose = np.diag([0.3, 0.3, 0.3, 1.0])
        pose[:3, 3] = (0.0, 0.3, 2.5)  # in front of view 0, on the way down to the floor
        for s in (one, multi):
            s.add_object(pts, cols, pose)
        kw = dict(outputs=("rgb", "mask", "object_mask"))
        single_ms = _time(lambda: one.render(L, Ks, height, width, **kw), device, reps)  # noqa: B023
        multi_ms = _time(lambda: render_selected(multi, L, Ks, height, width, **kw), device, reps)  # noqa: B023
        cov_ms = _time(lambda: source_coverage(multi, L, Ks, height, width), device, reps)  # noqa: B023
        sel = plan_buffers(multi, L, Ks, height, width)
        rows.append({"views": n, "frames": frames, "single_ms": round(single_ms, 1), "multi_ms": round(multi_ms, 1),
                     "coverage_ms": round(cov_ms, 1), "kept": sel.sources.tolist(),
                     "frames_one_slot": int((sel.active.sum(1) == 1).sum())})  # fmt: skip
        print(
            f"cache N={n}: single {single_ms:.1f} ms, multi {multi_ms:.1f} ms (coverage {cov_ms:.1f})",
            flush=True,
        )
    return rows


def geometry_rows(
    width: int, height: int, counts: list[int], device: str, tiny: bool, reps: int
) -> list[dict]:
    from objvid.depth.geometry import GeometryModel
    from objvid.depth.vggt import VGGT
    from objvid.testing.geometry_model import random_vggt, tiny_config

    net = random_vggt(tiny_config()) if tiny else VGGT()
    net = net.to(device).eval().requires_grad_(False)
    model = GeometryModel(net, "random", torch.device(device), bf16=device.startswith("cuda"))
    rows = []
    rng = np.random.default_rng(0)
    for n in counts:
        imgs = [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(n)]
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        ms = _time(lambda: model.lift_views(imgs, (height, width)), device, reps)  # noqa: B023
        peak = torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None
        rows.append({"views": n, "ms": round(ms, 1), "peak_gib": None if peak is None else round(peak, 2)})
        print(f"geometry N={n}: {ms:.1f} ms, peak {peak} GiB", flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--tiny", action="store_true", help="320x176, 9 frames, the tiny VGGT (CPU check)")
    p.add_argument("--views", default="2,4,8")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parent / "results" / "multiview_bench.json"
    )
    a = p.parse_args()
    width, height, frames = (320, 176, 9) if a.tiny else (1280, 704, 121)
    counts = [int(x) for x in a.views.split(",")]
    result = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name() if a.device.startswith("cuda") else "cpu",
        "size": [width, height],
        "cache": cache_rows(width, height, counts, frames, a.device, a.reps),
        "geometry": geometry_rows(width, height, counts, a.device, a.tiny, a.reps),
    }
    print(
        "\n| views | single-view chunk ms | multi-view chunk ms | coverage pass ms | LiftViews ms | peak GiB |"
    )
    print("|---|---|---|---|---|---|")
    for c, g in zip(result["cache"], result["geometry"], strict=True):
        print(
            f"| {c['views']} | {c['single_ms']} | {c['multi_ms']} | {c['coverage_ms']} | {g['ms']} | {g['peak_gib']} |"
        )
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
