"""GEN3C's ``foreground_masking`` (upstream ``forward_warp(..., foreground_masking=True)``).

Upstream, per target view: the slot's points are taken to camera space, bilinearly downsampled to
(H//4, W//4) (``align_corners=False``) and the boundary mask (depth edges: ``~reliable_depth_mask`` with ratio
0.05, 5x5, on the source depth) nearest-downsampled; every 2x2 vertex patch with a boundary vertex gives two
triangles (tl, tr, bl) and (tr, br, bl). A ray from the camera centre through every full-resolution pixel
(integer coordinates) finds the nearest triangle (Moller-Trumbore, t > 1e-8); where that mesh depth is more
than 0.02 nearer than the splat's weighted-mean depth, the pixel becomes a hole. The mesh is a "wall" over
each depth discontinuity: background points that leak through a foreground silhouette are cut.

Here: the downsampling commutes with the rigid transform, so the mesh is built once per slot in world space
(``BoundaryMesh``), and each camera *rasterises* it instead of casting H*W rays against every triangle:
every triangle visits the pixels of its projected bounding box (the whole image for a triangle crossing the
camera plane) and runs the same Moller-Trumbore test there, in float32 like upstream's Warp kernel. The
nearest hit per pixel is an ``amin`` scatter. Plain PyTorch (CPU or CUDA), batched over (triangle, pixel)
pairs; ``tests/upstream_gen3c.py`` holds the brute-force ray-cast reference the tests compare against.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

MESH_DOWNSAMPLE = 4  # upstream mesh_downsample_factor
MARGIN = 0.02  # upstream: mesh_z + 0.02 < warped depth
BOUNDARY_RATIO = 0.05  # upstream reliable_depth_mask_range_batch default ratio
MT_EPS = 1e-8  # upstream Warp kernel epsilon
PAIRS_PER_STEP = 1 << 23  # (triangle, pixel) candidates tested at once (~40 B of temporaries each)


@dataclass
class BoundaryMesh:
    """World-space mesh over one slot's depth edges: vertices (V,3) float32, faces (F,3) int64 (device)."""

    vertices: torch.Tensor
    faces: torch.Tensor


def boundary_mesh(xyz: torch.Tensor, boundary: torch.Tensor, grid: tuple[int, int]) -> BoundaryMesh:
    """xyz (3, H*W) float32 world points of a grid slot, boundary (H*W,) bool -> ``BoundaryMesh``."""
    H, W = grid
    h, w = H // MESH_DOWNSAMPLE, W // MESH_DOWNSAMPLE
    dev = xyz.device
    if h < 2 or w < 2:
        return BoundaryMesh(torch.zeros(0, 3, device=dev), torch.zeros(0, 3, dtype=torch.int64, device=dev))
    pts = F.interpolate(xyz.view(1, 3, H, W), size=(h, w), mode="bilinear", align_corners=False)
    verts = pts[0].reshape(3, -1).T.contiguous()
    m = F.interpolate(boundary.view(1, 1, H, W).float(), size=(h, w), mode="nearest")[0, 0] > 0
    patch = m[:-1, :-1] | m[:-1, 1:] | m[1:, :-1] | m[1:, 1:]
    r, c = torch.nonzero(patch, as_tuple=True)
    tl, tr, bl, br = r * w + c, r * w + c + 1, (r + 1) * w + c, (r + 1) * w + c + 1
    faces = torch.cat([torch.stack([tl, tr, bl], 1), torch.stack([tr, br, bl], 1)])
    return BoundaryMesh(verts, faces)


def _boxes(tri_cam: torch.Tensor, K: torch.Tensor, H: int, W: int):
    """Per triangle the candidate pixel box (x0, y0, bw, bh) (int64, empty boxes have bw or bh <= 0)."""
    z = tri_cam[..., 2]
    in_front = (z > 1e-6).all(dim=1)
    any_front = (z > 0).any(dim=1)
    p = tri_cam @ K.T
    uv = p[..., :2] / torch.where(in_front[:, None, None], p[..., 2:3], torch.ones_like(p[..., 2:3]))
    lo = torch.floor(uv.amin(dim=1)) - 1
    hi = torch.ceil(uv.amax(dim=1)) + 1
    full_lo = torch.zeros_like(lo)
    full_hi = torch.tensor([W - 1, H - 1], dtype=lo.dtype, device=lo.device).expand_as(hi)
    crossing = any_front & ~in_front  # part of it in front: its projection is unbounded
    lo = torch.where(crossing[:, None], full_lo, lo)
    hi = torch.where(crossing[:, None], full_hi, hi)
    lo = torch.maximum(lo, full_lo)
    hi = torch.minimum(hi, full_hi)
    size = (hi - lo + 1).clamp(min=0)
    size = torch.where(any_front[:, None], size, torch.zeros_like(size))
    lo = lo.clamp(min=-1e9, max=1e9)  # finite before the cast (NaN/inf vertices)
    return lo[:, 0].long(), lo[:, 1].long(), size[:, 0].long(), size[:, 1].long()


def mesh_depth(mesh: BoundaryMesh, w2c: np.ndarray, K: np.ndarray, H: int, W: int) -> torch.Tensor:
    """(H,W) float32 camera z of the nearest mesh hit along each pixel's ray, 0 where none."""
    dev = mesh.vertices.device
    out = torch.full((H * W,), float("inf"), dtype=torch.float32, device=dev)
    if mesh.faces.numel() == 0:
        return out.zero_().view(H, W)
    R = torch.as_tensor(w2c[:3, :3], dtype=torch.float32, device=dev)
    t = torch.as_tensor(w2c[:3, 3], dtype=torch.float32, device=dev)
    Kt = torch.as_tensor(K, dtype=torch.float32, device=dev)
    k_inv = torch.linalg.inv(torch.as_tensor(K, dtype=torch.float32)).to(dev)
    cam = mesh.vertices @ R.T + t
    tri = cam[mesh.faces]  # (F,3,3)
    x0, y0, bw, bh = _boxes(tri, Kt, H, W)
    area = bw * bh
    keep = area > 0
    tri, x0, y0, bw, area = tri[keep], x0[keep], y0[keep], bw[keep], area[keep]
    if not len(tri):
        return out.zero_().view(H, W)
    v0 = tri[:, 0]
    e1, e2 = tri[:, 1] - v0, tri[:, 2] - v0
    ends = torch.cumsum(area, 0)
    starts = ends - area
    f0 = 0
    n_tri = len(tri)
    while f0 < n_tri:  # triangle ranges whose candidate pairs fit one step
        limit = int(starts[f0]) + PAIRS_PER_STEP
        f1 = max(f0 + 1, int(torch.searchsorted(ends, torch.tensor(limit, device=dev), right=True)))
        f1 = min(f1, n_tri)
        a = area[f0:f1]
        idx = torch.repeat_interleave(torch.arange(f0, f1, device=dev), a)
        off = torch.arange(int(a.sum()), device=dev) - (starts[idx] - starts[f0])
        px = x0[idx] + off % bw[idx]
        py = y0[idx] + off // bw[idx]
        _hit(out, px, py, v0[idx], e1[idx], e2[idx], k_inv, W)
        f0 = f1
    out = torch.where(torch.isinf(out), torch.zeros_like(out), out)
    return out.view(H, W)


def _hit(out, px, py, v0, e1, e2, k_inv, W) -> None:
    """Moller-Trumbore of the rays through pixels (px, py) against their triangles; amin of hit z into out."""
    pix = torch.stack([px.float(), py.float(), torch.ones_like(px, dtype=torch.float32)], 1)
    d = pix @ k_inv.T
    d = d / d.norm(dim=1, keepdim=True)  # upstream's unit rays (t is a distance)
    h = torch.cross(d, e2, dim=1)
    a = (e1 * h).sum(1)
    ok = a.abs() >= MT_EPS
    f = 1.0 / torch.where(ok, a, torch.ones_like(a))
    s = -v0
    u = f * (s * h).sum(1)
    q = torch.cross(s, e1, dim=1)
    v = f * (d * q).sum(1)
    t = f * (e2 * q).sum(1)
    hit = ok & (u >= 0) & (u <= 1) & (v >= 0) & (u + v <= 1) & (t > MT_EPS)
    z = t * d[:, 2]
    pix_idx = (py * W + px)[hit]
    out.scatter_reduce_(0, pix_idx, z[hit], reduce="amin", include_self=True)


def occlude(acc: torch.Tensor, mesh_z: torch.Tensor, margin: float = MARGIN) -> None:
    """Cut pixels of GEN3C accumulators (C, H*W, 5) in place where the mesh (C,H,W) is nearer than the
    splat's weighted-mean depth by more than ``margin`` (they become holes: weight 0)."""
    w = acc[..., 0]
    depth = torch.where(w > 0, acc[..., 4] / torch.where(w > 0, w, torch.ones_like(w)), torch.zeros_like(w))
    mz = mesh_z.reshape(acc.shape[0], -1)
    cut = (mz > 0) & (mz + margin < depth)
    acc[cut] = 0.0


def render_hook(
    slots, ids, w2cs: np.ndarray, Ks: np.ndarray, H: int, W: int, mode: str, splat: str, backend: str
):
    """The ``render`` hook applying foreground masking to each slot's accumulators. ``slots``: the scene's
    slots (``.cloud``, ``.grid``, ``.mesh`` cached here), ``ids`` the rendered ones (None = all).
    ValueError naming ``foreground_masking`` for unsupported combinations."""
    from .render_common import unpack_boundary

    if splat != "gen3c" or mode not in ("fused", "scene"):
        raise ValueError("foreground_masking: needs splat='gen3c' and mode 'fused' or 'scene'")
    if backend == "reference":
        raise ValueError("foreground_masking: not available with backend='reference'")
    for i in range(len(slots)) if ids is None else ids:
        s = slots[i]
        if s.grid is None:
            raise ValueError("foreground_masking: needs RGB-D slots (a point scene has no depth edges)")
        if s.mesh is None:
            s.mesh = boundary_mesh(s.cloud.xyz, unpack_boundary(s.cloud.packed), s.grid)

    def hook(slot: int, c0: int, c1: int, acc: torch.Tensor) -> None:
        mesh = slots[slot].mesh
        mz = torch.stack([mesh_depth(mesh, w2cs[c], Ks[c], H, W) for c in range(c0, c1)])
        occlude(acc, mz)

    return hook
