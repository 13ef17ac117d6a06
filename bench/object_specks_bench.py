#!/usr/bin/env python
"""Demo sneaker: size next to the sofa and wrong-colour specks per frame (issue 11, item 6).

The demo room (metres) and sneaker (250k surface points, metres) from objvid.testing.assets, placed at the
default anchor as ``objvid-client demo`` does; 121 frames of ``left`` / ``center_facing`` / 0.3. A speck is an
object pixel whose winning point lies more than --tol behind the sneaker mesh's front surface at that pixel
(a point of the far side seen through a gap between front-side discs; the mesh is rasterised with
objvid.cache.foreground's ray-triangle test). Variants: the old default size (height 0.2 x anchor depth) and
the new ones (real size; size heuristic), each without culling, with the file's normals and with estimated
normals (objvid.cache.normals). Prints a table; JSON to --out.

    python bench/object_specks_bench.py --tiny      # 352x640, 13 frames (CPU)
    python bench/object_specks_bench.py             # 704x1280, 121 frames
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from render_bench import _ensure_objvid  # noqa: E402,F401

from objvid.cache import Scene  # noqa: E402
from objvid.cache.foreground import BoundaryMesh, mesh_depth  # noqa: E402
from objvid.cache.io import load_object  # noqa: E402
from objvid.client.ply import ply_bytes  # noqa: E402
from objvid.runtime.trajectory import generate_camera_trajectory  # noqa: E402
from objvid.testing.assets import render_room, sample_surface, sneaker_mesh  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--tol", type=float, default=0.01, help="metres behind the front surface = speck")
    ap.add_argument("--radius", type=float, default=1.5, help="object point radius in px (client default)")
    ap.add_argument("--every", type=int, default=1, help="measure every k-th frame (>= 1)")
    ap.add_argument("--only", default="", help="run only the variants whose name contains this text")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "object_specks_bench.json")
    a = ap.parse_args()
    W, H, T = (640, 352, 13) if a.tiny else (1280, 704, 121)
    image, depth, K = render_room(W, H)
    w2cs, _ = generate_camera_trajectory("left", np.eye(4), K, T, 0.3, "center_facing")
    mesh = sneaker_mesh()
    pos, col, nrm = sample_surface(mesh, 250_000, with_normals=True)
    pts, cols, file_nrm = load_object(ply_bytes(pos, col, normals=nrm), "sneaker.ply", with_normals=True)
    variants = {
        "old default (height 0.2 x depth), no culling": (dict(height="old"), None),
        "old default size, file normals (back-face culling)": (dict(height="old"), file_nrm),
        "old default size, estimated normals (Open3D)": (dict(height="old"), "estimate"),
        "size heuristic (7.5% of depth), no culling": ({}, None),
        "real size, no culling": (dict(scale=1.0), None),
        "real size, file normals (back-face culling)": (dict(scale=1.0), file_nrm),
        "real size, estimated normals (Open3D)": (dict(scale=1.0), "estimate"),
    }
    res = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name() if a.device == "cuda" else f"cpu {platform.machine()}",
        "size": [H, W],
        "frames": T,
        "tol_m": a.tol,
        "object_radius_px": a.radius,
        "variants": {},
    }
    for name, (size, normals) in variants.items():
        if a.only not in name:
            continue
        scene = Scene.from_rgbd(image, depth, K, device=a.device)
        oid = scene.add_object(pts, cols, normals=normals)
        if size.get("height") == "old":  # the previous default: 0.2 x the anchor's camera depth
            scene.place_object(oid, scale=1.0)
            anchor_z = scene.get_transform(oid)[2, 3]
            T_obj = scene.place_object(oid, height=0.2 * anchor_z)
        else:
            T_obj = scene.place_object(oid, **size)
        world = pts.astype(np.float64) @ T_obj[:3, :3].T + T_obj[:3, 3]
        extent = world.max(0) - world.min(0)
        verts = mesh.vertices.astype(np.float64) @ T_obj[:3, :3].T + T_obj[:3, 3]
        bm = BoundaryMesh(
            torch.as_tensor(verts, dtype=torch.float32, device=a.device),
            torch.as_tensor(mesh.faces, dtype=torch.int64, device=a.device),
        )
        fracs, counts, pixels = [], [], []
        for t in range(0, T, a.every):  # one frame at a time: bounded memory
            out = scene.render(
                w2cs[t], K, H, W, mode="objects", outputs=("depth", "object_mask"), object_radius_px=a.radius
            )
            front = mesh_depth(bm, w2cs[t], K, H, W)
            obj = out.object_mask[0, 0] == oid
            z = out.depth[0, 0]
            speck = obj & (front > 0) & (z > front + a.tol)
            n = int(obj.sum())
            counts.append(int(speck.sum()))
            pixels.append(n)
            fracs.append(counts[-1] / max(n, 1))
        s = T_obj[:3, :3]
        scale = float(np.cbrt(np.linalg.det(s)))
        res["variants"][name] = {
            "scale": scale,
            "length_height_width_m": [float(extent[0]), float(extent[1]), float(extent[2])],
            "max_speck_fraction": max(fracs),
            "specks_frame0": counts[0],
            "specks_mid": counts[len(counts) // 2],
            "measured_frames": len(counts),
            "object_pixels_frame0": pixels[0],
            "max_specks": max(counts),
        }
    print(f"# demo sneaker, {H}x{W}, {T} frames, radius {a.radius} px, {res['device']} ({res['date']})")
    print("| variant | scale | extent x/y/z (m) | object px f0 | specks f0 / mid | max speck fraction |")
    print("|---|---|---|---|---|---|")
    for name, v in res["variants"].items():
        e = "/".join(f"{x:.2f}" for x in v["length_height_width_m"])
        print(f"| {name} | {v['scale']:.3g} | {e} | {v['object_pixels_frame0']} | "
              f"{v['specks_frame0']} / {v['specks_mid']} | {v['max_speck_fraction']:.4%} |")  # fmt: skip
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=2))
    print(f"\nwrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
