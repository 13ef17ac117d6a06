"""The work dir's run record: manifest.json (inputs, options, versions, per-stage timings, outputs) and
the per-chunk render masks.

masks_chunkNN.npz holds, for the frames that chunk contributed to the video:
``mask`` uint8 (T, N, H, ceil(W/8)) bit-packed along W (1 = rendered, newest slot first), ``object``
uint8 (T, H, W) = object id + 1 in slot 0 (0 = no object, ids above 254 clipped), ``frames`` int64 (T,)
the global frame indices, ``width`` the unpacked W. :func:`load_masks` unpacks it.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np


def file_record(path: str | Path | None) -> dict | None:
    """{path, bytes, sha256} of an input file."""
    if path is None:
        return None
    p = Path(path)
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return {"path": str(p.resolve()), "bytes": p.stat().st_size, "sha256": h.hexdigest()}


def versions() -> dict[str, str]:
    """Versions of objvid and the packages on the client's path."""
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in ("objvid", "numpy", "grpcio", "protobuf", "tritonclient", "av", "psutil", "typer", "rich"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


class Timings:
    """Wall-clock seconds per stage, accumulated (a stage can run once per chunk)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._start = time.perf_counter()

    @contextmanager
    def stage(self, name: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - t0)

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    @property
    def total(self) -> float:
        return time.perf_counter() - self._start

    def as_dict(self) -> dict[str, float]:
        out = {k: round(v, 3) for k, v in self.seconds.items()}
        out["total"] = round(self.total, 3)
        return out


def write_json(path: str | Path, data: dict) -> None:
    """Write JSON atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=_jsonable))
    os.replace(tmp, path)


def _jsonable(value):
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def save_masks(path: str | Path, masks: np.ndarray, object_ids: np.ndarray, frames: np.ndarray) -> None:
    """masks (T, N, H, W) uint8 {0,1}; object_ids (T, H, W) int (-1 = none); frames (T,) global indices."""
    obj = np.clip(object_ids.astype(np.int32) + 1, 0, 255).astype(np.uint8)
    np.savez_compressed(
        path,
        mask=np.packbits(masks.astype(bool), axis=-1),
        object=obj,
        frames=np.asarray(frames, np.int64),
        width=np.int64(masks.shape[-1]),
    )


def load_masks(path: str | Path) -> dict[str, np.ndarray]:
    """-> {"mask": (T, N, H, W) uint8, "object": (T, H, W) int16 (-1 = none), "frames": (T,) int64}."""
    with np.load(path) as data:
        w = int(data["width"])
        return {
            "mask": np.unpackbits(data["mask"], axis=-1, count=w).astype(np.uint8),
            "object": data["object"].astype(np.int16) - 1,
            "frames": data["frames"],
        }
