"""Camera path files: an explicit camera per frame, the alternative to a GEN3C trajectory preset.

Format (JSON, OpenCV cameras: x right, y down, z forward; pixel centres at integer coordinates)::

    {"width": 1280, "height": 704,
     "frames": [{"K": [[fx, 0, cx], [0, fy, cy], [0, 0, 1]],
                 "w2c": [[r00, r01, r02, tx], [r10, r11, r12, ty], [r20, r21, r22, tz], [0, 0, 0, 1]]},
                ...]}

``K`` is in pixels at width x height; ``w2c`` maps world points (the world frame is the input camera's
frame: the input view has w2c = identity) into the camera. Rotations must be orthonormal with det +1;
the checks are the servers' own (``objvid.runtime.geometry``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from objvid.runtime import geometry


@dataclass(frozen=True)
class CameraPath:
    """width, height in pixels; Ks (T, 3, 3) float64 pixels; w2cs (T, 4, 4) float64 OpenCV world-to-camera."""

    width: int
    height: int
    Ks: np.ndarray
    w2cs: np.ndarray

    @property
    def num_frames(self) -> int:
        return int(self.w2cs.shape[0])


def _matrix(value, rows: int, cols: int, name: str) -> np.ndarray:
    if not isinstance(value, list) or len(value) != rows:
        raise ValueError(f"{name}: expected a {rows}x{cols} list of rows")
    out = np.empty((rows, cols))
    for r, row in enumerate(value):
        if not isinstance(row, list) or len(row) != cols:
            raise ValueError(f"{name}: row {r} must be a list of {cols} numbers")
        for c, x in enumerate(row):
            if isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x):
                raise ValueError(f"{name}: element [{r}][{c}] must be a finite number, got {x!r}")
            out[r, c] = x
    return out


def parse_camera_path(data, source: str = "camera path") -> CameraPath:
    """A decoded JSON object -> CameraPath; ValueError naming the field (e.g. ``frames[3].w2c``)."""
    if not isinstance(data, dict):
        raise ValueError(f"{source}: expected a JSON object with width, height and frames")
    for key in ("width", "height"):
        v = data.get(key)
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise ValueError(f"{source}: {key} must be a positive integer, got {v!r}")
    frames = data.get("frames")
    if not isinstance(frames, list) or not frames:
        raise ValueError(f"{source}: frames must be a non-empty list of {{'K', 'w2c'}} objects")
    Ks, w2cs = [], []
    for i, frame in enumerate(frames):
        where = f"{source}: frames[{i}]"
        if not isinstance(frame, dict):
            raise ValueError(f"{where}: expected an object with K and w2c")
        for key in ("K", "w2c"):
            if key not in frame:
                raise ValueError(f"{where}: missing {key}")
        K = _matrix(frame["K"], 3, 3, f"{where}.K")
        w2c = _matrix(frame["w2c"], 4, 4, f"{where}.w2c")
        geometry.check_intrinsics(K, f"{where}.K")
        geometry.check_transform(w2c, f"{where}.w2c")
        Ks.append(K)
        w2cs.append(w2c)
    return CameraPath(int(data["width"]), int(data["height"]), np.stack(Ks), np.stack(w2cs))


def load_camera_path(path: str | Path) -> CameraPath:
    """Read and validate a camera path JSON file; ValueError naming the file and the field."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ValueError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"{path}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    return parse_camera_path(data, str(path))


def camera_path_dict(width: int, height: int, Ks: np.ndarray, w2cs: np.ndarray) -> dict:
    """(T, 3, 3) Ks and (T, 4, 4) w2cs -> the JSON object (for saving trajectories as camera paths)."""
    w2cs = np.asarray(w2cs, dtype=np.float64)
    Ks = np.broadcast_to(np.asarray(Ks, dtype=np.float64), (len(w2cs), 3, 3))
    return {
        "width": int(width),
        "height": int(height),
        "frames": [{"K": K.tolist(), "w2c": w.tolist()} for K, w in zip(Ks, w2cs, strict=True)],
    }


def save_camera_path(path: str | Path, width: int, height: int, Ks: np.ndarray, w2cs: np.ndarray) -> None:
    """Write a camera path JSON file."""
    Path(path).write_text(json.dumps(camera_path_dict(width, height, Ks, w2cs), indent=1))
