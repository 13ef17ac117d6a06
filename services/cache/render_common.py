"""Shared conventions of every renderer: constants, camera matrices, footprints, the output type.

Conventions (all renderers, fast and reference):
- OpenCV cameras, w2c (4,4) world->camera, K (3,3) in pixels, pixel centres at integer coordinates.
- GEN3C splat: a point projects as upstream's ``project_points``: ``u = p_x / (z + 1e-7)``,
  ``v = p_y / (z + 1e-7)`` with ``p = K (w2c X)``; points with ``z <= 0`` are dropped. No snapping, except at
  a slot's own source camera (``source_snap``): there upstream's output is float32 round-off noise (a point
  projects 1e-5 px off its pixel centre and the depth weighting can make that tiny bilinear weight win the
  neighbour pixel), so coordinates within ``SNAP_PX`` of a pixel centre are snapped and the source view comes
  back exactly. The log-depth normaliser is upstream's: max over each warp chunk of 2 (camera, slot) views
  (``normaliser_groups``).
- Z-buffer: ``u = p_x / z``, ``v = p_y / z``, always snapped within ``SNAP_PX`` (not an upstream splat).
- Colours are accumulated as floats in [0, 255]; uint8 outputs are ``floor(clamp(x, 0, 255) + 0.5)``.
- Z-buffer keys are int64 ``(float32_bits(z) << 32) | index``: for z > 0 the order of the keys is the
  order of (z, index), so ``atomic_min`` keeps the nearest point and, on an exact depth tie, the lowest
  index. Object points get the lowest indices (``[0, M)``), scene points ``[M, M + P)``: ties go to
  objects, then to the lower object id / point index.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

SNAP_PX = 1.0 / 512.0
PROJ_EPS = 1e-7  # upstream `project_points` / `forward_warp`: u = p_x / (p_z + 1e-7)
WARP_CHUNK = 2  # upstream `Cache3D_Base.render_cache` warp_chunk_size: views sharing one depth normaliser
SOURCE_RTOL = 1e-9  # a camera is a slot's source camera when its K @ w2c[:3] matches to this relative tol.
DEPTH_WEIGHT_SCALE = 50.0  # upstream `depth_weight_scale`
LOG_EPS = 1e-7  # upstream `log_depth.max() + 1e-7`
KEY_EMPTY = (1 << 63) - 1  # int64 max: "no point"
INDEX_BITS = 32
INDEX_MASK = (1 << INDEX_BITS) - 1
MAX_OBJECT_ID = 32767  # object ids are stored in int16 object masks

MODES = ("fused", "full", "scene", "objects")
SPLATS = ("gen3c", "zbuffer")
OUTPUTS = ("rgb", "mask", "depth", "object_mask", "rgb_float")
DEFAULT_OUTPUTS = ("rgb", "mask", "depth", "object_mask")


@dataclass(frozen=True)
class Footprint:
    """Pixels a point covers in a z-buffer.

    ``size`` k >= 1 (square): odd k covers the nearest pixel +-(k-1)/2; even k covers the pixels whose
    centre is strictly within k/2 of the point on each axis (k=2: floor/ceil, the 4 bilinear neighbours
    of the GEN3C splat, a single pixel when the point sits exactly on a pixel centre).
    ``radius`` r > 0 (disc, used for objects): pixels whose centre is within r of the point, plus the
    nearest pixel, so every visible point covers at least one pixel. For r < 1 only the floor/ceil
    neighbours can qualify (window 2); otherwise the (2 ceil(r) + 1)^2 window around the nearest pixel.
    """

    size: int = 2
    radius: float = 0.0

    @property
    def is_disc(self) -> bool:
        return self.radius > 0

    @property
    def window(self) -> int:
        """Number of candidate offsets per axis. A disc of radius < 1 only reaches the floor/ceil
        neighbours (any other pixel centre is >= 1 px away on one axis), so its window is 2."""
        if self.is_disc:
            return 2 if self.radius < 1 else 2 * int(np.ceil(self.radius)) + 1
        return self.size


@dataclass
class RenderOutput:
    """Result of ``Scene.render``; all tensors live on the scene's device.

    T = cameras, N = buffer slots (1 for ``mode="objects"``), H x W = image size.
    - ``rgb`` (T,N,H,W,3) uint8, 0 in holes
    - ``mask`` (T,N,H,W) bool, True = rendered (covered by some point)
    - ``depth`` (T,N,H,W) float32 camera z in scene units, 0 in holes (GEN3C splat: weighted mean z;
      z-buffer: the winning point's z)
    - ``object_mask`` (T,N,H,W) int16, -1 = no object, else the id of the object seen at the pixel
    - ``rgb_float`` (T,N,H,W,3) float32 in [0,255] before rounding (only when asked for), 0 in holes
    Outputs not asked for are None.
    """

    rgb: torch.Tensor | None
    mask: torch.Tensor | None
    depth: torch.Tensor | None
    object_mask: torch.Tensor | None
    rgb_float: torch.Tensor | None = None

    def to_model_input(self) -> tuple[torch.Tensor, torch.Tensor]:
        """GEN3C conditioning layout: (rgb (T,N,3,H,W) float32 in [-1,1], holes -1; mask (T,N,1,H,W) float32
        {0,1}). Uses ``rgb_float`` when present (no uint8 rounding), else ``rgb``."""
        if self.mask is None or (self.rgb is None and self.rgb_float is None):
            raise ValueError("outputs: to_model_input needs 'rgb' (or 'rgb_float') and 'mask'")
        src = self.rgb_float if self.rgb_float is not None else self.rgb
        x = src.to(torch.float32) / 127.5 - 1.0
        m = self.mask.unsqueeze(-1)
        x = torch.where(m, x, torch.full_like(x, -1.0))
        return x.permute(0, 1, 4, 2, 3).contiguous(), m.permute(0, 1, 4, 2, 3).to(torch.float32).contiguous()


def object_footprint(radius_px: float) -> Footprint:
    """Disc of ``radius_px`` for object points; 0 means the nearest pixel only."""
    return Footprint(radius=float(radius_px)) if radius_px > 0 else Footprint(size=1)


def projection_matrices(w2cs: np.ndarray, Ks: np.ndarray) -> np.ndarray:
    """(T,4,4) w2c and (T,3,3) K (float64) -> (T,3,4) float64 ``K @ w2c[:3]``. Row 2 gives camera z."""
    return np.einsum("tij,tjk->tik", Ks, w2cs[:, :3, :])


BOUNDARY_BIT = 25  # packed bit: the point sits on a depth edge of its source view (foreground masking)


def pack_colors(
    colors: np.ndarray, valid: np.ndarray | None = None, boundary: np.ndarray | None = None
) -> np.ndarray:
    """(N,3) uint8 + (N,) bool valid + (N,) bool boundary -> (N,) int32
    ``r | g<<8 | b<<16 | valid<<24 | boundary<<25``."""
    c = colors.astype(np.int32)
    packed = c[:, 0] | (c[:, 1] << 8) | (c[:, 2] << 16)
    v = np.ones(len(c), bool) if valid is None else valid
    packed = packed | (v.astype(np.int32) << 24)
    if boundary is not None:
        packed = packed | (boundary.astype(np.int32) << BOUNDARY_BIT)
    return packed.astype(np.int32)


def unpack_boundary(packed: torch.Tensor) -> torch.Tensor:
    """(N,) int32 packed -> (N,) bool depth-edge flags."""
    return ((packed.to(torch.int32) >> BOUNDARY_BIT) & 1).bool()


def unpack_colors(packed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N,) int32 packed -> ((N,3) uint8 colours, (N,) bool valid)."""
    p = packed.to(torch.int32)
    rgb = torch.stack([p & 255, (p >> 8) & 255, (p >> 16) & 255], dim=-1).to(torch.uint8)
    return rgb, ((p >> 24) & 1).bool()


def snap(u: torch.Tensor) -> torch.Tensor:
    """Snap coordinates within SNAP_PX of an integer onto it (any float dtype)."""
    r = torch.round(u)
    return torch.where((u - r).abs() <= SNAP_PX, r, u)


def source_snap(P: np.ndarray, source_P: np.ndarray | None) -> np.ndarray:
    """(T,3,4) float64 cameras, the slot's source (3,4) ``K @ w2c[:3]`` or None -> (T,) float64 snap tolerance:
    ``SNAP_PX`` for cameras equal to the source camera (relative tolerance ``SOURCE_RTOL``), else 0."""
    out = np.zeros(len(P), np.float64)
    if source_P is None or not len(P):
        return out
    scale = max(float(np.abs(source_P).max()), 1e-30)
    same = np.abs(P - source_P[None]).reshape(len(P), -1).max(axis=1) <= SOURCE_RTOL * scale
    out[same] = SNAP_PX
    return out


def normaliser_groups(zmax: torch.Tensor) -> torch.Tensor:
    """Upstream's depth normaliser: ``zmax`` (T, N) max camera z (clamped >= 0) of each view -> (T, N) max over
    the warp chunk each view falls in. Upstream flattens (frame, slot) in that order and warps
    ``WARP_CHUNK`` = 2 consecutive views per ``forward_warp`` call; ``log_depth.max()`` spans the call."""
    T, N = zmax.shape
    flat = zmax.reshape(-1)
    n = flat.numel()
    pad = (-n) % WARP_CHUNK
    padded = torch.cat([flat, flat.new_zeros(pad)]) if pad else flat
    g = padded.view(-1, WARP_CHUNK).amax(dim=1, keepdim=True).expand(-1, WARP_CHUNK).reshape(-1)[:n]
    return g.view(T, N).contiguous()


def snap_within(u: torch.Tensor, tol: torch.Tensor) -> torch.Tensor:
    """Snap coordinates onto the nearest integer where within ``tol`` (broadcastable, 0 = no snap)."""
    r = torch.floor(u + 0.5)
    return torch.where((u - r).abs() <= tol, r, u)
