"""Unposed views for ``--views DIR|GLOB|VIDEO``: which images or video frames become views.

Video frames are picked as the multi-view fork does (``gen3c_batch_images.py --frame_extraction_method``),
with T = the video's frame count and m = min(T, --max-views):

| --view-select      | frame indices                                              |
|--------------------|------------------------------------------------------------|
| first              | [0]                                                        |
| middle             | [T // 2]                                                   |
| last               | [T - 1]                                                    |
| all (default)      | range(0, T, max(1, T // m))[:m] (spread over the video)    |
| interval           | range(0, T, --view-interval)                               |
| first_max_frames   | [i * --view-step for i < m], indices >= T dropped          |

then at most --max-views are kept (the fork's --max_inputs). Image folders and globs give every image
(sorted by name), at most --max-views. Frames are decoded with PyAV: a count pass, then a pass that keeps
only the picked frames.
"""

from __future__ import annotations

import glob
from pathlib import Path

import numpy as np

SELECT_METHODS = ("first", "middle", "last", "all", "interval", "first_max_frames")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v")


def frame_indices(
    method: str, total: int, max_views: int = 10, step: int = 1, interval: int = 30
) -> list[int]:
    """Frame indices of a ``total``-frame video for ``method`` (see the module table)."""
    if method not in SELECT_METHODS:
        raise ValueError(f"--view-select must be one of {', '.join(SELECT_METHODS)}, got {method!r}")
    for name, v in (("--max-views", max_views), ("--view-step", step), ("--view-interval", interval)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
    if total < 1:
        raise ValueError("the video has no frames")
    m = min(total, max_views)
    picks = {
        "first": lambda: [0],
        "middle": lambda: [total // 2],
        "last": lambda: [total - 1],
        "all": lambda: list(range(0, total, max(1, total // m)))[:m],
        "interval": lambda: list(range(0, total, interval)),
        "first_max_frames": lambda: [i * step for i in range(m) if i * step < total],
    }[method]()
    return picks[:max_views]


def classify(spec: str) -> str:
    """ "npz", "video", "glob" or "dir" for a --views value (ValueError when it is none of them)."""
    s = str(spec)
    if s.lower().endswith(".npz"):
        return "npz"
    if any(c in s for c in "*?["):
        return "glob"
    p = Path(s)
    if p.is_dir():
        return "dir"
    if p.suffix.lower() in VIDEO_SUFFIXES:
        if not p.is_file():
            raise ValueError(f"--views {s}: no such video file")
        return "video"
    if not p.exists():
        raise ValueError(f"--views {s}: no such file or folder")
    raise ValueError(f"--views {s}: expected a .npz, an image folder, a glob of images or a video "
                     f"({', '.join(VIDEO_SUFFIXES)})")  # fmt: skip


def image_files(spec: str, kind: str, max_views: int) -> list[Path]:
    """Sorted image files of a folder or glob, at most ``max_views``; ValueError when there are none."""
    if kind == "dir":
        files = sorted(p for p in Path(spec).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    else:
        files = sorted(Path(p) for p in glob.glob(str(spec)) if Path(p).suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"--views {spec}: no images ({', '.join(IMAGE_SUFFIXES)})")
    return files[:max_views]


def read_video_frames(path: str | Path, method: str, max_views: int = 10, step: int = 1,
                      interval: int = 30) -> tuple[list[np.ndarray], list[int], int]:  # fmt: skip
    """Count the frames, pick them (``frame_indices``), read them: ((H, W, 3) uint8 frames, their
    indices, the video's frame count). Two decoding passes through PyAV; only the picked frames are kept."""
    from objvid.client.video import _av, probe_video

    total = probe_video(path)[0]
    wanted = sorted(set(frame_indices(method, total, max_views, step, interval)))
    av, frames = _av(), []
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            for i, frame in enumerate(container.decode(stream)):
                if i in wanted:
                    frames.append(frame.to_ndarray(format="rgb24"))
                if i >= wanted[-1]:
                    break
    except av.FFmpegError as exc:
        raise OSError(f"{path}: cannot decode the video ({exc})") from None
    if len(frames) != len(wanted):
        raise OSError(f"{path}: could only read {len(frames)} of the {len(wanted)} selected frames")
    return frames, wanted, total
