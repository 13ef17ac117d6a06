"""Speed of the ``preview`` model (CPU): seconds per chunk on synthetic renders, two hole patterns.

- ``moving``: a panning textured scene with a growing edge hole and a moving disk hole (slot 1 covers the
  top half of the holes), like a camera path revealing unseen areas;
- ``scattered``: 25 % of the pixels missing independently in each slot (worst case for hole handling).

Usage: python bench/preview_bench.py [--small] [--frames 121 --height 704 --width 1280 --threads 2]
Prints one JSON line per pattern and writes bench/results/preview_bench.json (not with --small).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import cv2
import numpy as np

from objvid.diffusion.base import GenerateOptions, validate_chunk
from objvid.diffusion.preview import PreviewModel


def moving_holes(frames: int, height: int, width: int, seed: int = 0):
    """(first_frame, renders (T, 2, H, W, 3), masks (T, 2, H, W)) with contiguous holes that move and grow."""
    rng = np.random.default_rng(seed)
    scene = cv2.resize(
        rng.integers(0, 256, (height // 8, width // 4, 3), dtype=np.uint8), (width * 2, height)
    )
    renders = np.zeros((frames, 2, height, width, 3), np.uint8)
    masks = np.zeros((frames, 2, height, width), np.uint8)
    yy, xx = np.mgrid[:height, :width]
    for t in range(frames):
        view = scene[:, t * width // (2 * frames) :][:, :width]
        seen = np.ones((height, width), bool)
        seen[:, width - (t * width) // (3 * frames) - 1 :] = False
        cy, cx = height // 2, width // 4 + t * width // (2 * frames)
        seen &= (yy - cy) ** 2 + (xx - cx) ** 2 > (height // 6) ** 2
        other = seen.copy()
        other[: height // 2] = True
        for slot, mask in enumerate((seen, other)):
            renders[t, slot][mask] = view[mask]
            masks[t, slot] = mask
    return renders[0, 0].copy(), renders, masks


def scattered_holes(frames: int, height: int, width: int, seed: int = 0):
    """Random content, each pixel missing with probability 0.25 in each slot independently."""
    rng = np.random.default_rng(seed)
    renders = rng.integers(0, 256, (frames, 2, height, width, 3), dtype=np.uint8)
    masks = (rng.random((frames, 2, height, width)) > 0.25).astype(np.uint8)
    renders[masks == 0] = 0
    return renders[0, 0].copy(), renders, masks


def run(pattern: str, frames: int, height: int, width: int, threads: int) -> dict:
    make = {"moving": moving_holes, "scattered": scattered_holes}[pattern]
    first, renders, masks = make(frames, height, width)
    chunk = validate_chunk(first, renders, masks)
    start = time.perf_counter()
    video = PreviewModel().generate(chunk, GenerateOptions())
    seconds = time.perf_counter() - start
    return {
        "bench": "preview",
        "pattern": pattern,
        "frames": frames,
        "height": height,
        "width": width,
        "threads": threads,
        "hole_fraction": round(float((masks.max(axis=1) == 0).mean()), 4),
        "seconds": round(seconds, 3),
        "ms_per_frame": round(1000 * seconds / frames, 2),
        "output_shape": list(video.shape),
    }


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="9 frames at 64x96 (smoke run)")
    parser.add_argument("--frames", type=int, default=121)
    parser.add_argument("--height", type=int, default=704)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--threads", type=int, default=2, help="cv2.setNumThreads")
    parser.add_argument(
        "--out", default=str(pathlib.Path(__file__).parent / "results" / "preview_bench.json")
    )
    args = parser.parse_args(argv)
    if args.small:
        args.frames, args.height, args.width = 9, 64, 96
    cv2.setNumThreads(args.threads)
    results = []
    for pattern in ("moving", "scattered"):
        results.append(run(pattern, args.frames, args.height, args.width, args.threads))
        print(json.dumps(results[-1]), flush=True)
    if not args.small:
        pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        pathlib.Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
