"""Camera paths from keyframes: smooth interpolation of camera poses (pure numpy + scipy, no I/O).

A keyframe is a camera pose given as camera-to-world (OpenCV axes: x right, y down, z forward), the
form a 3D viewer reports. The path runs through every keyframe, in order, at evenly spaced times (or at
the times given):

- positions (camera centres): a cubic spline (``scipy.interpolate.CubicSpline``, natural ends: C2, no
  overshoot forced at the ends); two keyframes give a straight line; one gives a still camera;
- orientations: a rotation spline (``scipy.spatial.transform.RotationSpline``: C2 in angular rate,
  through every keyframe) for three or more keyframes, spherical linear interpolation (``Slerp``) for two.

Both are scipy's well-tested implementations rather than hand-written ones. The output is world-to-camera
4x4 matrices, the form ``--camera-path`` files hold (``objvid.client.camera_path``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.interpolate import CubicSpline
from scipy.spatial.transform import Rotation, RotationSpline, Slerp


@dataclass(frozen=True)
class Keyframe:
    """One camera pose: ``c2w`` (4, 4) float64 camera-to-world, rigid, OpenCV axes."""

    c2w: np.ndarray

    @staticmethod
    def from_wxyz_position(wxyz, position) -> Keyframe:
        """A pose as a viewer reports it: unit quaternion (w, x, y, z) and camera centre (3,)."""
        q = np.asarray(wxyz, np.float64).reshape(4)
        c2w = np.eye(4)
        c2w[:3, :3] = Rotation.from_quat([q[1], q[2], q[3], q[0]]).as_matrix()
        c2w[:3, 3] = np.asarray(position, np.float64).reshape(3)
        return Keyframe(c2w)

    @staticmethod
    def from_w2c(w2c) -> Keyframe:
        return Keyframe(invert_rigid(np.asarray(w2c, np.float64)))

    @property
    def position(self) -> np.ndarray:
        return self.c2w[:3, 3].copy()

    @property
    def wxyz(self) -> np.ndarray:
        x, y, z, w = Rotation.from_matrix(self.c2w[:3, :3]).as_quat()
        return np.array([w, x, y, z])

    @property
    def w2c(self) -> np.ndarray:
        return invert_rigid(self.c2w)


def invert_rigid(m: np.ndarray) -> np.ndarray:
    """Inverse of a rigid (4, 4) transform [R | t] -> [R^T | -R^T t]."""
    out = np.eye(4)
    R = m[:3, :3]
    out[:3, :3] = R.T
    out[:3, 3] = -R.T @ m[:3, 3]
    return out


def keyframe_times(count: int, times=None) -> np.ndarray:
    """Keyframe times in [0, 1]: evenly spaced, or the given strictly increasing values (rescaled)."""
    if times is None:
        return np.linspace(0.0, 1.0, count) if count > 1 else np.zeros(1)
    t = np.asarray(times, np.float64).reshape(-1)
    if len(t) != count:
        raise ValueError(f"times: {len(t)} values for {count} keyframes")
    if not np.isfinite(t).all() or (count > 1 and np.any(np.diff(t) <= 0)):
        raise ValueError("times: must be finite and strictly increasing")
    return (t - t[0]) / (t[-1] - t[0]) if count > 1 else np.zeros(1)


def interpolate_c2w(keyframes: list[Keyframe], num_frames: int, times=None) -> np.ndarray:
    """Keyframes -> (num_frames, 4, 4) camera-to-world poses; frame 0 and the last frame are the first and
    last keyframes exactly. ValueError on no keyframes or num_frames < 1."""
    if not keyframes:
        raise ValueError("keyframes: add at least one keyframe")
    if isinstance(num_frames, bool) or not isinstance(num_frames, int | np.integer) or num_frames < 1:
        raise ValueError(f"num_frames: must be an integer >= 1, got {num_frames!r}")
    n = len(keyframes)
    t_key = keyframe_times(n, times)
    t = np.linspace(0.0, 1.0, num_frames) if num_frames > 1 else np.zeros(1)
    pos = np.stack([k.c2w[:3, 3] for k in keyframes])
    rots = Rotation.from_matrix(np.stack([k.c2w[:3, :3] for k in keyframes]))
    out = np.tile(np.eye(4), (num_frames, 1, 1))
    if n == 1:
        out[:, :3, :3] = rots[0].as_matrix()
        out[:, :3, 3] = pos[0]
        return out
    if n == 2:
        out[:, :3, 3] = pos[0] + t[:, None] * (pos[1] - pos[0])
        out[:, :3, :3] = Slerp(t_key, rots)(t).as_matrix()
    else:
        out[:, :3, 3] = CubicSpline(t_key, pos, bc_type="natural")(t)
        out[:, :3, :3] = RotationSpline(t_key, rots)(t).as_matrix()
    # Hit the keyframes exactly (the splines agree to rounding; this keeps exports bit-stable).
    idx = np.rint(t_key * (num_frames - 1)).astype(int)
    exact = np.abs(t[idx] - t_key) < 1e-12
    for k in np.nonzero(exact)[0]:
        out[idx[k]] = keyframes[k].c2w
    return out


def interpolate_w2c(keyframes: list[Keyframe], num_frames: int, times=None) -> np.ndarray:
    """Keyframes -> (num_frames, 4, 4) world-to-camera poses (the camera path file's ``w2c``)."""
    c2w = interpolate_c2w(keyframes, num_frames, times)
    R = c2w[:, :3, :3]
    w2c = np.tile(np.eye(4), (len(c2w), 1, 1))
    w2c[:, :3, :3] = np.transpose(R, (0, 2, 1))
    w2c[:, :3, 3] = -np.einsum("nji,nj->ni", R, c2w[:, :3, 3])
    return w2c


def fov_y(K: np.ndarray, height: int) -> float:
    """Vertical field of view in radians of pixel intrinsics K at ``height`` pixels."""
    return float(2.0 * np.arctan2(height / 2.0, K[1, 1]))
