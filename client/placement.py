"""Object placement options: ``--object-pose`` and ``--anchor`` parsing.

``--object-pose`` is either ``x,y,z[,rx,ry,rz[,s]]`` (translation in scene units, Euler angles in degrees
with R = Rz Ry Rx, uniform scale: X = t + s R x) or the path of a JSON file holding a 4x4 object-to-world
matrix (a list of 4 rows, or ``{"matrix": [[...], ...]}``; rotation times a uniform scale, last row
0 0 0 1). ``--anchor U,V`` is a pixel of the input view (u right, v down) at the working resolution, or
percentages of width and height such as ``50%,70%``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from objvid.runtime import geometry
from objvid.v1 import types_pb2


def _numbers(text: str, name: str) -> list[float]:
    parts = [p.strip() for p in text.split(",")]
    out = []
    for p in parts:
        try:
            v = float(p)
        except ValueError:
            raise ValueError(f"{name}: {p!r} is not a number (in {text!r})") from None
        if not math.isfinite(v):
            raise ValueError(f"{name}: values must be finite, got {p!r}")
        out.append(v)
    return out


def load_pose_matrix(path: Path, name: str = "--object-pose") -> np.ndarray:
    """A JSON file with a 4x4 matrix (rows, or {"matrix": rows}, or 16 row-major numbers) -> (4, 4) float64."""
    where = f"{name} {path}"
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise ValueError(f"{where}: cannot read ({exc.strerror or exc})") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if isinstance(data, dict):
        if "matrix" not in data:
            raise ValueError(f"{where}: expected a 4x4 list or an object with 'matrix'")
        data = data["matrix"]
    try:
        m = np.asarray(data, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: the matrix must hold numbers only") from None
    if m.shape == (16,):
        m = m.reshape(4, 4)
    if m.shape != (4, 4):
        raise ValueError(f"{where}: expected a 4x4 matrix, got shape {m.shape}")
    geometry.check_transform(m, where, allow_scale=True)
    return m


def parse_object_pose(text: str, name: str = "--object-pose") -> types_pb2.Transform:
    """``x,y,z[,rx,ry,rz[,s]]`` or a 4x4 JSON file path -> ``objvid.v1.Transform``; ValueError naming ``name``."""
    text = text.strip()
    if not text:
        raise ValueError(f"{name}: empty value (expected x,y,z[,rx,ry,rz[,s]] or a 4x4 JSON file)")
    if text.lower().endswith(".json") or Path(text).is_file():
        m = load_pose_matrix(Path(text), name)
        return types_pb2.Transform(matrix=types_pb2.Matrix4(values=m.ravel().tolist()))
    v = _numbers(text, name)
    if len(v) not in (3, 6, 7):
        raise ValueError(
            f"{name}: expected 3, 6 or 7 comma-separated numbers (x,y,z[,rx,ry,rz[,s]]), got {len(v)}"
        )
    scale = v[6] if len(v) == 7 else 1.0
    if scale <= 0:
        raise ValueError(f"{name}: scale must be > 0, got {scale}")
    rot = v[3:6] if len(v) >= 6 else [0.0, 0.0, 0.0]
    return types_pb2.Transform(pose=types_pb2.Pose(translation=v[:3], rotation_deg=rot, scale=scale))


def transform_matrix(t: types_pb2.Transform) -> np.ndarray:
    """``objvid.v1.Transform`` -> (4, 4) float64 object-to-world (the servers' convention, R = Rz Ry Rx)."""
    if t.WhichOneof("kind") == "matrix":
        return np.asarray(t.matrix.values, dtype=np.float64).reshape(4, 4)
    p = t.pose
    return geometry.pose_matrix(list(p.translation) or (0.0, 0.0, 0.0), list(p.rotation_deg) or (0.0, 0.0, 0.0),
                                p.scale or 1.0)  # fmt: skip


def parse_anchor(text: str, width: int, height: int, name: str = "--anchor") -> tuple[float, float]:
    """``U,V`` pixels or ``U%,V%`` -> (u, v) pixels inside the width x height view."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 2:
        raise ValueError(f"{name}: expected U,V (pixels) or U%,V% (percent), got {text!r}")
    out = []
    for p, size, axis in zip(parts, (width, height), ("U", "V"), strict=True):
        pct = p.endswith("%")
        try:
            v = float(p[:-1] if pct else p)
        except ValueError:
            raise ValueError(f"{name}: {axis} {p!r} is not a number") from None
        if not math.isfinite(v):
            raise ValueError(f"{name}: {axis} must be finite")
        v = v / 100.0 * (size - 1) if pct else v
        if not 0 <= v <= size - 1:
            raise ValueError(f"{name}: {axis}={p} is outside the {width}x{height} view")
        out.append(v)
    return out[0], out[1]
