"""Peak device memory and per-frame render time of the dynamic (video) cache, ``objvid.cache.DynamicScene``.

Builds the synthetic posed RGB-D video of ``objvid.testing.video`` (F frames of HxW, a moving camera and a
moving box), adds an object, and renders a GEN3C trajectory frame-synchronously (target f <- source
start + f), streaming one frame at a time as the pipeline does. Reports the resident source bytes, the
peak device memory after building and during rendering (CUDA: ``torch.cuda.max_memory_allocated``; CPU:
the sources' bytes only), and the render time per frame.

H200 command (lead): ``python bench/dynamic_cache_bench.py --device cuda`` (121 frames of 704x1280,
float16 and float32 depth). CPU smoke run: ``python bench/dynamic_cache_bench.py --tiny``.
JSON goes to ``--out`` (default ``$OUT/dynamic_cache.json`` when $OUT is set, else
``bench/results/dynamic_cache-<device>-<F>x<H>x<W>.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from objvid.cache.dynamic import DynamicScene, frame_peak_bytes, source_bytes
from objvid.runtime import trajectory as traj
from objvid.testing.video import synthetic_rgbd_video


def run(frames: int, height: int, width: int, device: str, depth_dtype: str, render_frames: int,
        object_side: int = 60) -> dict:  # fmt: skip
    video = synthetic_rgbd_video(frames=frames, height=height, width=width)
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    t0 = time.perf_counter()
    scene = DynamicScene(video["rgb"], video["depth"], video["K"], video["w2c"], video["mask"], device=device,
                         depth_dtype=depth_dtype, filter_points_threshold=0.05)  # fmt: skip
    g = np.linspace(-0.05, 0.05, object_side)
    pts = (
        np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3).astype(np.float32)
    )  # object_side^3 points
    pose = np.eye(4)
    pose[:3, 3] = [0.45, 0.2, 2.5]
    scene.add_object(pts, np.full((len(pts), 3), 200, np.uint8), pose)
    if cuda:
        torch.cuda.synchronize()
        peak_build = torch.cuda.max_memory_allocated() - base
    build_s = time.perf_counter() - t0
    T = min(render_frames, frames)
    w2cs, Ks = traj.generate_camera_trajectory(
        "left", video["w2c"][:T], video["K"][:T], T, 0.3, "center_facing"
    )
    times = []
    for out in scene.render_frames(w2cs, Ks, start=0, outputs=("rgb", "mask", "object_mask")):
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter())
        del out
    per_frame = np.diff([t0 + build_s, *times]) * 1e3
    row = {"frames": frames, "height": height, "width": width, "device": device, "depth_dtype": depth_dtype,
           "points_total": frames * height * width, "source_bytes": scene.source_bytes(),
           "estimated_bytes": source_bytes(frames, height, width, depth_dtype) + frame_peak_bytes(height, width),
           "build_s": round(build_s, 3), "rendered": T,
           "render_ms_p50": round(float(np.median(per_frame[1:] if T > 1 else per_frame)), 2)}  # fmt: skip
    if cuda:
        row["peak_build_bytes"] = int(peak_build)
        row["peak_render_bytes"] = int(torch.cuda.max_memory_allocated() - base)
    del scene
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--frames", type=int, default=121)
    ap.add_argument("--height", type=int, default=704)
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--render-frames", type=int, default=121, help="frames rendered (timing)")
    ap.add_argument("--depth-dtypes", default="float16,float32")
    ap.add_argument("--object-side", type=int, default=60, help="object cube of side^3 points (60: 216k)")
    ap.add_argument("--tiny", action="store_true", help="9 frames of 48x80, a 1k-point object (CPU, seconds)")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    if a.tiny:
        a.frames, a.height, a.width, a.render_frames, a.object_side = 9, 48, 80, 9, 10
    rows = [run(a.frames, a.height, a.width, a.device, dt, a.render_frames, a.object_side)
            for dt in a.depth_dtypes.split(",")]  # fmt: skip
    print(f"{'depth':>8} {'frames':>6} {'size':>10} {'points':>12} {'sources MiB':>12} {'peak build MiB':>15} "
          f"{'peak render MiB':>16} {'ms/frame':>9}")  # fmt: skip
    for r in rows:
        mib = {
            k: f"{r[k] / 2**20:.0f}" if k in r else "-"
            for k in ("source_bytes", "peak_build_bytes", "peak_render_bytes")
        }
        print(f"{r['depth_dtype']:>8} {r['frames']:>6} {r['width']}x{r['height']:<5} {r['points_total']:>12,} "
              f"{mib['source_bytes']:>12} {mib['peak_build_bytes']:>15} {mib['peak_render_bytes']:>16} "
              f"{r['render_ms_p50']:>9}")  # fmt: skip
    out = a.out
    if out is None:
        name = f"dynamic_cache-{a.device.split(':')[0]}-{a.frames}x{a.height}x{a.width}.json"
        out = (
            Path(os.environ["OUT"]) / "dynamic_cache.json"
            if os.environ.get("OUT")
            else Path("bench/results") / name
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rows": rows}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
