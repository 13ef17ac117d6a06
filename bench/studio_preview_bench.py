"""Latency of the studio's preview: one ``Render`` RPC of the fused cache render at the preview size.

Starts a local cache service (CPU unless --device), builds the demo room at the scene size with the sneaker
placed, and times the studio's preview call (``StudioSession.render_preview``: UpdateObject + Render through
the SDK, as a drag does) per splat kind, with the studio's preview twin scene and without it (the
full-size scene rendered into the preview). Reports the median and p90 of wall time per preview.

Usage: python bench/studio_preview_bench.py [--tiny] [--scene 1280x704] [--preview 640x352] [--repeats 20]
Prints a table and writes bench/results/studio_preview_<device>.json (not with --tiny).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import tempfile
import time

import numpy as np

from objvid.client.sdk import ObjvidClient
from objvid.client.stack import LocalStack, StackConfig
from objvid.client.studio.pose import ObjectPose
from objvid.client.studio.session import StudioConfig, StudioSession
from objvid.testing.assets import write_assets


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="small scene (320x176), 3 repeats; no JSON")
    ap.add_argument("--scene", default="1280x704", help="scene (video) size WxH")
    ap.add_argument("--preview", type=int, default=640, help="preview width")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    w, h = (320, 176) if args.tiny else (int(v) for v in args.scene.split("x"))
    repeats = 3 if args.tiny else args.repeats
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="studio-bench-"))
    write_assets(tmp / "assets", w, h)
    rows = []
    with LocalStack(StackConfig(depth=False, backend=None, device=args.device), tmp / "logs") as stack:
        client = ObjvidClient(cache_addr=stack.cache_addr)
        for splat, twin in (("gen3c", True), ("zbuffer", True), ("gen3c", False)):
            cfg = StudioConfig(image=tmp / "assets/room.png", depth=tmp / "assets/room_depth.npy",
                               intrinsics=tmp / "assets/room_K.json", objects=[tmp / "assets/sneaker.ply"],
                               width=w, height=h, preview_width=args.preview, workdir=tmp / "work")  # fmt: skip
            s = StudioSession(cfg, client)
            s.load()
            s.splat = splat
            if not twin and s.preview_scene is not None:  # render the full-size scene into the preview
                s.preview_scene.delete()
                s.preview_scene = None
            base = s.objects[0].pose
            times = []
            for r in range(repeats + 1):
                x = base.position[0] + 0.01 * (r % 5)
                t0 = time.perf_counter()
                s.set_pose(0, ObjectPose((x, *base.position[1:]), base.rotation_deg, base.scale))
                s.render_preview(0)
                if r:  # the first call warms up
                    times.append((time.perf_counter() - t0) * 1000)
            s.close()
            pw, ph = s.preview_size
            rows.append({"splat": splat, "scene": f"{w}x{h}", "preview": f"{pw}x{ph}", "twin": twin,
                         "median_ms": round(float(np.median(times)), 1),
                         "p90_ms": round(float(np.percentile(times, 90)), 1), "repeats": repeats})  # fmt: skip
        client.close()
    print(f"{'splat':<8} {'scene':>10} {'preview':>9} {'twin':>5} {'median ms':>10} {'p90 ms':>8}")
    for r in rows:
        print(
            f"{r['splat']:<8} {r['scene']:>10} {r['preview']:>9} {str(r['twin']):>5} {r['median_ms']:>10} "
            f"{r['p90_ms']:>8}"
        )
    if not args.tiny:
        out = (
            pathlib.Path(__file__).parent / "results" / f"studio_preview_{args.device.replace(':', '')}.json"
        )
        out.write_text(json.dumps(rows, indent=1))
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
