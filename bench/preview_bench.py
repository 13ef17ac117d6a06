"""Speed of the ``preview`` model (CPU): seconds per chunk at a given size, synthetic moving holes.

Usage: python bench/preview_bench.py [--small] [--frames 121 --height 704 --width 1280 --threads 2]
Prints one JSON line and writes bench/results/preview_bench.json.
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


def synthetic_chunk(frames: int, height: int, width: int, slots: int = 2, seed: int = 0):
    """Renders of a panning textured scene with a growing edge hole and a moving blob hole."""
    rng = np.random.default_rng(seed)
    scene = cv2.resize(rng.integers(0, 256, (height // 8, width // 4, 3), dtype=np.uint8), (width * 2, height))
    renders = np.zeros((frames, slots, height, width, 3), np.uint8)
    masks = np.zeros((frames, slots, height, width), np.uint8)
    yy, xx = np.mgrid[:height, :width]
    for t in range(frames):
        shift = t * width // (2 * max(frames, 1))
        view = scene[:, shift : shift + width]
        mask = np.ones((height, width), bool)
        mask[:, width - (t * width) // (3 * max(frames, 1)) - 1 :] = False
        cy, cx = height // 2, width // 4 + t * width // (2 * max(frames, 1))
        mask &= (yy - cy) ** 2 + (xx - cx) ** 2 > (height // 6) ** 2
        renders[t, 0][mask] = view[mask]
        masks[t, 0] = mask
        if slots > 1:
            other = mask.copy()
            other[: height // 2] = True
            renders[t, 1][other] = view[other]
            masks[t, 1] = other & ~mask | mask
    return renders[0, 0].copy(), renders, masks


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="9 frames at 64x96 (CI smoke run)")
    parser.add_argument("--frames", type=int, default=121)
    parser.add_argument("--height", type=int, default=704)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--threads", type=int, default=2, help="cv2.setNumThreads")
    parser.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results" / "preview_bench.json"))
    args = parser.parse_args(argv)
    if args.small:
        args.frames, args.height, args.width = 9, 64, 96
    cv2.setNumThreads(args.threads)
    first, renders, masks = synthetic_chunk(args.frames, args.height, args.width)
    chunk = validate_chunk(first, renders, masks)
    model = PreviewModel()
    start = time.perf_counter()
    video = model.generate(chunk, GenerateOptions())
    seconds = time.perf_counter() - start
    hole_fraction = float((masks.max(axis=1) == 0).mean())
    result = {
        "bench": "preview",
        "frames": args.frames,
        "height": args.height,
        "width": args.width,
        "threads": args.threads,
        "hole_fraction": round(hole_fraction, 4),
        "seconds": round(seconds, 3),
        "ms_per_frame": round(1000 * seconds / args.frames, 2),
        "output_shape": list(video.shape),
    }
    print(json.dumps(result))
    if not args.small:
        pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        pathlib.Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
