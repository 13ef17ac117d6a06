"""Buffer slots of a ``Scene``: posed RGB-D views lifted to one world point per pixel, as GEN3C's cache.

A view's depth is cleaned (``clean_depth``: NaN / inf handled, clamped to [0, max_depth]), optionally
filtered at unreliable depth edges (``reliable_depth_mask``) and unprojected (``unproject``) into a
``Slot``: a device ``render.Cloud`` plus the view's grid, K and w2c, which the renderer uses to snap at the
source camera and ``foreground`` uses to mesh the depth edges.

Units: world units are those of the depth map (GEN3C: MoGe units); cameras are OpenCV (K in pixels,
w2c (4,4) rigid world -> camera).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from . import validate as V
from .render import Cloud
from .render_common import pack_colors, projection_matrices

MAX_DEPTH = 100.0  # GEN3C clamps cache depth to [0, 100] (sky / invalid end up at 100)
BOUNDARY_RATIO = 0.05  # GEN3C's foreground-masking edge test (reliable_depth_mask default ratio)


@dataclass
class Slot:
    """One buffer slot: its points and, for RGB-D slots, the view they were lifted from."""

    cloud: Cloud
    grid: tuple[int, int] | None = None  # (H, W) when the points are one per pixel of a view
    K: np.ndarray | None = None  # (3,3) float64 of that view
    w2c: np.ndarray | None = None  # (4,4) float64 of that view
    mesh: Any = None  # foreground.BoundaryMesh, built on first use


def clean_depth(depth: np.ndarray, max_depth: float = MAX_DEPTH) -> np.ndarray:
    """GEN3C's clean-up: NaN and +inf -> max_depth, -inf -> 0, clamp to [0, max_depth]. float32."""
    d = np.nan_to_num(depth.astype(np.float32), nan=max_depth, posinf=max_depth, neginf=0.0)
    return np.clip(d, 0.0, max_depth).astype(np.float32)


def reliable_depth_mask(
    depth: np.ndarray, threshold: float, window: int = 5, eps: float = 1e-6
) -> np.ndarray:
    """GEN3C's ``reliable_depth_mask_range``: (max - min) / (mean + eps) over a window x window box
    (zero-padded mean, stride 1) is below ``threshold`` and depth > 0. (H,W) float32 -> (H,W) bool."""
    d = torch.from_numpy(np.ascontiguousarray(depth, dtype=np.float32))[None, None]
    pad = window // 2
    local_max = F.max_pool2d(d, window, stride=1, padding=pad)
    local_min = -F.max_pool2d(-d, window, stride=1, padding=pad)
    local_mean = F.avg_pool2d(d, window, stride=1, padding=pad)
    ratio = (local_max - local_min) / (local_mean + eps)
    return ((ratio < threshold) & (d > 0))[0, 0].numpy()


def unproject(depth: np.ndarray, K: np.ndarray, w2c: np.ndarray) -> np.ndarray:
    """(H,W) z-depth at integer pixel centres -> (H*W,3) float32 world points (computed in float64)."""
    H, W = depth.shape
    v, u = np.meshgrid(np.arange(H, dtype=np.float64), np.arange(W, dtype=np.float64), indexing="ij")
    rays = np.stack([u, v, np.ones_like(u)], -1).reshape(-1, 3) @ np.linalg.inv(K).T
    cam = rays * depth.reshape(-1, 1).astype(np.float64)
    R, t = w2c[:3, :3], w2c[:3, 3]
    return ((cam - t) @ R).astype(np.float32)  # R^T (x - t), row-vector form


def make_cloud(
    pts: np.ndarray,
    col: np.ndarray,
    valid: np.ndarray | None,
    device: torch.device,
    source_P: np.ndarray | None = None,
    boundary: np.ndarray | None = None,
) -> Cloud:
    """(P,3) float32 points, (P,3) uint8 colours, (P,) bool valid / boundary flags -> a ``Cloud`` on
    ``device`` (xyz (3,P) float32, packed (P,) int32)."""
    xyz = torch.from_numpy(np.ascontiguousarray(pts.T)).to(device)
    packed = torch.from_numpy(pack_colors(col, valid, boundary)).to(device)
    return Cloud(xyz, packed, source_P)


def source_P(K: np.ndarray, w2c: np.ndarray) -> np.ndarray:
    """(3,4) float64 ``K @ w2c[:3]`` of a slot's source view (the renderer snaps only at this camera)."""
    return projection_matrices(w2c[None], K[None])[0]


def check_threshold(thr: Any) -> float | None:
    """``filter_points_threshold``: None (off) or a positive float; ValueError naming the field."""
    if thr is None:
        return None
    return V.positive(thr, "filter_points_threshold")
