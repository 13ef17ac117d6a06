"""Camera and transform conventions and checks, one home for the server and the client.

- Cameras: K (3, 3) pixel intrinsics, w2c (4, 4) world-to-camera, OpenCV axes (x right, y down, z forward).
- Object poses: ``pose_matrix(translation, rotation_deg, scale)`` = T(t) * s * Rz(rz) Ry(ry) Rx(rx) (angles
  in degrees, rotations about the fixed x, then y, then z axes: extrinsic XYZ, ``euler_deg``).
- ``check_intrinsics`` / ``check_transform`` raise ``ValueError("<name>: <reason>")`` (the gRPC servers
  map it to INVALID_ARGUMENT naming the field); the client runs the same checks before it sends.

Plain numpy on Python floats: these run once per request on the hot path (tens of microseconds).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

#: Tolerance of the rigid / similarity checks (float32 inputs round to ~1e-7; users often store 6 digits).
RIGID_TOL = 1e-4


def _is_unit_row(row: list[float]) -> bool:
    """``np.allclose(row, (0, ..., 0, 1), atol=1e-9)`` on Python floats (~30x cheaper for one row)."""
    return all(abs(x) <= 1e-9 for x in row[:-1]) and abs(row[-1] - 1.0) <= 1e-9 + 1e-5


def check_intrinsics(K: np.ndarray, name: str) -> None:
    """K (3, 3) float64: last row (0, 0, 1), positive focal lengths, invertible. A batch (T, 3, 3) is checked
    at once (the message names ``name[i]``, the first bad one)."""
    if K.ndim == 3:
        return _check_intrinsics_batch(K, name)
    if not _is_unit_row(K[2].tolist()):
        raise ValueError(f"{name}: last row must be (0, 0, 1), got {K[2].tolist()}")
    if not (K[0, 0] > 0 and K[1, 1] > 0):
        raise ValueError(f"{name}: focal lengths must be positive, got fx={K[0, 0]:g} fy={K[1, 1]:g}")
    det = float(np.linalg.det(K))
    if not math.isfinite(det) or abs(det) < 1e-12:
        raise ValueError(f"{name}: not invertible (det={det:g})")
    s = np.linalg.svd(K, compute_uv=False)  # np.linalg.cond(K) = s[0] / s[-1], without its overhead
    if not s[-1] > 0 or s[0] / s[-1] > 1e12:
        raise ValueError(f"{name}: not invertible (det={det:g})")


def check_transform(T: np.ndarray, name: str, *, allow_scale: bool = False):
    """T (4, 4) float64: finite, last row (0, 0, 0, 1) and rotation block s*R (R orthonormal, det +1;
    s == 1 unless ``allow_scale``). Returns s. A batch (T, 4, 4) is checked at once and returns the (T,)
    scales (the message names ``name[i]``, the first bad one)."""
    if T.ndim == 3:
        return _check_transform_batch(T, name, allow_scale)
    if not np.isfinite(T).all():
        raise ValueError(f"{name}: values must be finite")
    if not _is_unit_row(T[3].tolist()):
        raise ValueError(
            f"{name}: not a rigid transform (last row must be (0, 0, 0, 1), got {T[3].tolist()})"
        )
    M = T[:3, :3]
    det = float(np.linalg.det(M))
    kind = "similarity transform (rotation, translation, uniform scale)" if allow_scale else "rigid transform"
    if not det > 0:
        raise ValueError(f"{name}: not a {kind} (det of the rotation block is {det:g}, must be > 0)")
    s = det ** (1.0 / 3.0)
    if not allow_scale and abs(s - 1.0) > RIGID_TOL:
        raise ValueError(f"{name}: not a {kind} (the rotation block scales by {s:g})")
    R = M / s
    err = float(np.abs(R @ R.T - np.eye(3)).max())
    if err > RIGID_TOL:
        raise ValueError(f"{name}: not a {kind} (rotation block not orthonormal, error {err:.2g})")
    return s


def _first(bad: np.ndarray) -> int | None:
    return int(np.argmax(bad)) if bad.any() else None


def _check_intrinsics_batch(K: np.ndarray, name: str) -> None:
    """The rules of ``check_intrinsics`` over (T, 3, 3), vectorized."""
    last = K[:, 2]
    bad = ~((np.abs(last[:, :2]) <= 1e-9).all(1) & (np.abs(last[:, 2] - 1.0) <= 1e-9 + 1e-5))
    if (i := _first(bad)) is not None:
        raise ValueError(f"{name}[{i}]: last row must be (0, 0, 1), got {K[i, 2].tolist()}")
    if (i := _first(~((K[:, 0, 0] > 0) & (K[:, 1, 1] > 0)))) is not None:
        raise ValueError(
            f"{name}[{i}]: focal lengths must be positive, got fx={K[i, 0, 0]:g} fy={K[i, 1, 1]:g}"
        )
    det = np.linalg.det(K)
    sv = np.linalg.svd(K, compute_uv=False)
    with np.errstate(divide="ignore", invalid="ignore"):
        cond = sv[:, 0] / sv[:, -1]
    bad = ~(np.isfinite(det) & (np.abs(det) >= 1e-12) & (sv[:, -1] > 0) & (cond <= 1e12))
    if (i := _first(bad)) is not None:
        raise ValueError(f"{name}[{i}]: not invertible (det={det[i]:g})")


def _check_transform_batch(T: np.ndarray, name: str, allow_scale: bool) -> np.ndarray:
    """The rules of ``check_transform`` over (T, 4, 4), vectorized; returns the (T,) scales."""
    if (i := _first(~np.isfinite(T).all((1, 2)))) is not None:
        raise ValueError(f"{name}[{i}]: values must be finite")
    last = T[:, 3]
    bad = ~((np.abs(last[:, :3]) <= 1e-9).all(1) & (np.abs(last[:, 3] - 1.0) <= 1e-9 + 1e-5))
    if (i := _first(bad)) is not None:
        raise ValueError(
            f"{name}[{i}]: not a rigid transform (last row must be (0, 0, 0, 1), got {T[i, 3].tolist()})"
        )
    M = T[:, :3, :3]
    det = np.linalg.det(M)
    kind = "similarity transform (rotation, translation, uniform scale)" if allow_scale else "rigid transform"
    if (i := _first(~(det > 0))) is not None:
        raise ValueError(f"{name}[{i}]: not a {kind} (det of the rotation block is {det[i]:g}, must be > 0)")
    s = np.cbrt(det)
    if not allow_scale and (i := _first(np.abs(s - 1.0) > RIGID_TOL)) is not None:
        raise ValueError(f"{name}[{i}]: not a {kind} (the rotation block scales by {s[i]:g})")
    R = M / s[:, None, None]
    err = np.abs(R @ R.transpose(0, 2, 1) - np.eye(3)).max((1, 2))
    if (i := _first(err > RIGID_TOL)) is not None:
        raise ValueError(f"{name}[{i}]: not a {kind} (rotation block not orthonormal, error {err[i]:.2g})")
    return s


def euler_deg(rx: float, ry: float, rz: float) -> np.ndarray:
    """(3, 3) float64 R = Rz(rz) @ Ry(ry) @ Rx(rx), angles in degrees (x applied first, about fixed axes)."""
    ax, ay, az = np.radians([rx, ry, rz])
    Rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    Ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    Rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return Rz @ Ry @ Rx


def pose_matrix(
    translation: Sequence[float] = (0.0, 0.0, 0.0),
    rotation_deg: Sequence[float] = (0.0, 0.0, 0.0),
    scale: float = 1.0,
    name: str = "pose",
) -> np.ndarray:
    """(4, 4) float64 object-to-world similarity from a pose; ValueError naming ``name.<field>``."""
    for fname, v in (("translation", translation), ("rotation_deg", rotation_deg)):
        if len(v) != 3:
            raise ValueError(f"{name}.{fname}: expected 3 values (or none), got {len(v)}")
        if not all(math.isfinite(x) for x in v):
            raise ValueError(f"{name}.{fname}: values must be finite")
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"{name}.scale: must be finite and > 0 (0 means 1), got {scale}")
    T = np.eye(4)
    T[:3, :3] = scale * euler_deg(*rotation_deg)
    T[:3, 3] = translation
    return T
