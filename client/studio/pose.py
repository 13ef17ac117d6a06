"""Object poses as the studio edits them: position, Euler angles, uniform scale <-> 4x4 matrices.

The conventions are ``--object-pose``'s (``objvid.client.placement``; tests check the two agree): ``x,y,z,rx,ry,rz,s`` with
R = Rz(rz) Ry(ry) Rx(rx) in degrees and X_world = t + s R x_object.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation


def euler_matrix(rx: float, ry: float, rz: float) -> np.ndarray:
    """R = Rz(rz) Ry(ry) Rx(rx), degrees -> (3, 3) (intrinsic z-y'-x'' angles, as ``--object-pose``)."""
    return Rotation.from_euler("ZYX", [rz, ry, rx], degrees=True).as_matrix()


def check_similarity(m: np.ndarray, name: str) -> float:
    """ValueError unless m is a finite (4, 4) rotation x uniform scale > 0 + translation; returns the scale."""
    if m.shape != (4, 4) or not np.isfinite(m).all():
        raise ValueError(f"{name}: expected a finite 4x4 matrix")
    if not np.allclose(m[3], [0, 0, 0, 1], atol=1e-9):
        raise ValueError(f"{name}: last row must be [0, 0, 0, 1]")
    det = float(np.linalg.det(m[:3, :3]))
    if det <= 0:
        raise ValueError(f"{name}: the 3x3 block must be a rotation times a scale > 0")
    s = np.cbrt(det)
    if np.abs(m[:3, :3] @ m[:3, :3].T / s**2 - np.eye(3)).max() > 1e-4:
        raise ValueError(f"{name}: the 3x3 block must be a rotation times a uniform scale")
    return float(s)


@dataclass(frozen=True)
class ObjectPose:
    """position (3,) scene units; rotation_deg (rx, ry, rz) with R = Rz Ry Rx; scale > 0."""

    position: tuple[float, float, float]
    rotation_deg: tuple[float, float, float]
    scale: float

    @staticmethod
    def from_matrix(m: np.ndarray) -> ObjectPose:
        """A (4, 4) object-to-world similarity (rotation x uniform scale + translation) -> ObjectPose."""
        m = np.asarray(m, np.float64)
        s = check_similarity(m, "pose")
        rz, ry, rx = Rotation.from_matrix(m[:3, :3] / s).as_euler("ZYX", degrees=True)
        return ObjectPose(tuple(float(v) for v in m[:3, 3]), (float(rx), float(ry), float(rz)), s)

    @staticmethod
    def from_wxyz(position, wxyz, scale: float) -> ObjectPose:
        """From a gizmo's pose: position (3,), unit quaternion (w, x, y, z), and a uniform scale."""
        w, x, y, z = (float(v) for v in wxyz)
        m = np.eye(4)
        m[:3, :3] = scale * Rotation.from_quat([x, y, z, w]).as_matrix()
        m[:3, 3] = np.asarray(position, np.float64)
        return ObjectPose.from_matrix(m)

    def matrix(self) -> np.ndarray:
        m = np.eye(4)
        m[:3, :3] = self.scale * euler_matrix(*self.rotation_deg)
        m[:3, 3] = self.position
        return m

    @property
    def wxyz(self) -> np.ndarray:
        x, y, z, w = Rotation.from_matrix(euler_matrix(*self.rotation_deg)).as_quat()
        return np.array([w, x, y, z])

    def cli_value(self) -> str:
        """The ``--object-pose`` value (``x,y,z,rx,ry,rz,s``), rounded for reading (1e-6 units, 1e-4 deg)."""
        vals = [*(round(v, 6) for v in self.position), *(round(v, 4) for v in self.rotation_deg)]
        vals.append(round(self.scale, 6))
        return ",".join(f"{v:g}" for v in vals)
