"""Vectorised PyTorch renderer backend (CPU default; CUDA fallback when Triton is missing).

Same primitives as the Triton backend (``kernels.py``), batched over a chunk of C cameras:
- ``gen3c_acc``: GEN3C soft splat into an accumulator (C, H*W, 5) float32 = [sum w, sum w*r, sum w*g,
  sum w*b, sum w*z], added with ``index_add_`` (never ``index_put_``).
- ``zbuffer``: packed (z, index) int64 keys reduced with ``scatter_reduce_("amin")``.
- ``resolve``: accumulators / keys -> uint8 RGB, float32 depth, bool mask, int16 object id.
Point clouds are passed as ``xyz`` (3,P) float32 and ``packed`` (P,) int32 colours (render_common).
Cameras are ``P`` (C,3,4) float64 = K @ w2c[:3] (row 2 = camera z).
"""

from __future__ import annotations

import torch

from .render_common import (
    DEPTH_WEIGHT_SCALE,
    INDEX_MASK,
    KEY_EMPTY,
    LOG_EPS,
    PROJ_EPS,
    Footprint,
    snap_within,
)

# Upper bound on point-views projected at once (bounds the temporaries to ~ 40 bytes each).
POINT_VIEWS_PER_STEP = 1 << 22


def _steps(n_points: int, n_views: int):
    per = max(1, POINT_VIEWS_PER_STEP // max(1, n_points))
    for c0 in range(0, n_views, per):
        yield c0, min(n_views, c0 + per)


ZBUF_SNAP = 1.0 / 512.0


def _project(
    xyz: torch.Tensor, P: torch.Tensor, snap_tol: torch.Tensor | float = ZBUF_SNAP, eps: float = 0.0
):
    """(3,P) float32 points, (C,3,4) float64 cameras -> u, v (C,P) float64, z (C,P) float32.

    ``u = p_x / (z + eps)`` snapped onto pixel centres within ``snap_tol`` (a float or (C,) per camera).
    The projection runs in float64: a float32 u near 1000 px has a 6e-5 px ulp, which would perturb
    the bilinear weights of points close to a pixel boundary far beyond the reference tolerance.
    """
    cam = torch.matmul(P[:, :, :3], xyz.to(torch.float64)) + P[:, :, 3:]
    z = cam[:, 2]
    tol = snap_tol if not torch.is_tensor(snap_tol) else snap_tol.to(cam)[:, None]
    u = snap_within(cam[:, 0] / (z + eps), tol)
    v = snap_within(cam[:, 1] / (z + eps), tol)
    return u, v, z.to(torch.float32)


def gen3c_zmax(xyz: torch.Tensor, P: torch.Tensor) -> torch.Tensor:
    """(C,) float32 max over every point (valid or not) of the camera z clamped at 0 (upstream's
    ``log_depth.max()`` before log1p, one view)."""
    out = torch.zeros(P.shape[0], dtype=torch.float32, device=xyz.device)
    for c0, c1 in _steps(xyz.shape[1], P.shape[0]):
        z = (torch.matmul(P[c0:c1, 2:3, :3], xyz.to(torch.float64)) + P[c0:c1, 2:3, 3:])[:, 0]
        out[c0:c1] = z.to(torch.float32).clamp(min=0).amax(dim=1) if xyz.shape[1] else 0.0
    return out


def _unpack_float(packed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    p = packed.to(torch.int32)
    rgb = torch.stack([p & 255, (p >> 8) & 255, (p >> 16) & 255], dim=-1).to(torch.float32)
    return rgb, ((p >> 24) & 1).bool()


def gen3c_acc(
    xyz: torch.Tensor,
    packed: torch.Tensor,
    P: torch.Tensor,
    H: int,
    W: int,
    zmax: torch.Tensor | None = None,
    snap_tol: torch.Tensor | None = None,
) -> torch.Tensor:
    """GEN3C bilinear soft splat. Returns (C, H*W, 5) float32 accumulators.

    Weight of a point at its 4 neighbours (floor/ceil of u, v, upstream's formulas, so a point exactly
    on a pixel centre puts weight 4 on it): ``prox * exp(-50 * log1p(z) / (log1p(zmax) + 1e-7))``.
    ``zmax`` (C,) float32 is the normaliser's max camera z per camera (default: this cloud's own, see
    ``gen3c_zmax``); ``snap_tol`` (C,) float64 the per-camera snap tolerance (default 0: upstream, no snap).
    """
    C = P.shape[0]
    acc = torch.zeros(C * H * W, 5, dtype=torch.float32, device=xyz.device)
    rgb, valid = _unpack_float(packed)
    if zmax is None:
        zmax = gen3c_zmax(xyz, P)
    if snap_tol is None:
        snap_tol = torch.zeros(C, dtype=torch.float64, device=xyz.device)
    for c0, c1 in _steps(xyz.shape[1], C):
        u, v, z = _project(xyz, P[c0:c1], snap_tol[c0:c1], PROJ_EPS)
        zl = torch.log1p(z.clamp(min=0))
        norm = torch.log1p(zmax[c0:c1].to(xyz.device, torch.float32))[:, None] + LOG_EPS
        wd = torch.exp(-zl * (DEPTH_WEIGHT_SCALE / norm))
        ok = (z > 0) & valid[None] & (u > -1) & (u < W) & (v > -1) & (v < H)
        ci, pi = ok.nonzero(as_tuple=True)
        u, v, z, wd = u[ci, pi], v[ci, pi], z[ci, pi], wd[ci, pi]
        col = rgb[pi]
        base = (ci + c0) * (H * W)
        x0, y0 = torch.floor(u), torch.floor(v)
        x1, y1 = torch.ceil(u), torch.ceil(v)
        for xs, wx in ((x0, 1 - (u - x0)), (x1, 1 - (x1 - u))):
            for ys, wy in ((y0, 1 - (v - y0)), (y1, 1 - (y1 - v))):
                m = (xs >= 0) & (xs < W) & (ys >= 0) & (ys < H)
                w = (wx * wy).to(torch.float32) * wd
                vals = torch.cat([w[:, None], w[:, None] * col, (w * z)[:, None]], dim=1)
                idx = base + ys.long() * W + xs.long()
                acc.index_add_(0, idx[m], vals[m])
    return acc.view(C, H * W, 5)


def _footprint_pixels(u: torch.Tensor, v: torch.Tensor, fp: Footprint):
    """Yield (px, py, include) candidate pixels (float tensors) for each footprint offset."""
    if fp.is_disc and fp.window == 2:  # radius < 1: floor/ceil neighbours, the nearest always included
        cx, cy = torch.floor(u + 0.5), torch.floor(v + 0.5)
        r2 = fp.radius * fp.radius
        for py in (torch.floor(v), torch.ceil(v)):
            for px in (torch.floor(u), torch.ceil(u)):
                yield px, py, ((px - u) ** 2 + (py - v) ** 2 <= r2) | ((px == cx) & (py == cy))
        return
    if fp.is_disc:
        R = fp.window // 2
        cx, cy = torch.floor(u + 0.5), torch.floor(v + 0.5)
        r2 = fp.radius * fp.radius
        for dy in range(-R, R + 1):
            for dx in range(-R, R + 1):
                px, py = cx + dx, cy + dy
                inc = (
                    ((px - u) ** 2 + (py - v) ** 2 <= r2)
                    if (dx or dy)
                    else torch.ones_like(u, dtype=torch.bool)
                )
                yield px, py, inc
        return
    k = fp.size
    if k % 2 == 1:
        h = (k - 1) // 2
        cx, cy = torch.floor(u + 0.5), torch.floor(v + 0.5)
        xs = [cx + d for d in range(-h, h + 1)]
        ys = [cy + d for d in range(-h, h + 1)]
    else:
        h = k // 2
        fx, fy, gx, gy = torch.floor(u), torch.floor(v), torch.ceil(u), torch.ceil(v)
        xs = [fx - (h - 1) + d for d in range(h)] + [gx + d for d in range(h)]
        ys = [fy - (h - 1) + d for d in range(h)] + [gy + d for d in range(h)]
    for py in ys:
        for px in xs:
            yield px, py, None


def zbuffer(
    keys: torch.Tensor,
    xyz: torch.Tensor,
    packed: torch.Tensor,
    P: torch.Tensor,
    index_base: int,
    fp: Footprint,
    cull: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> None:
    """Rasterise points into ``keys`` (C, H, W) int64 in place (atomic min of packed (z, index) keys).
    ``cull`` = (normals (3,P) float32, eyes (C,3) float64 camera centres in the points' frame): points with
    ``n . (eye - p) < 0`` face away from the camera and are skipped (back-face culling)."""
    C, H, W = keys.shape
    flat = keys.view(-1)
    _, valid = _unpack_float(packed)
    n = xyz.shape[1]
    idx = torch.arange(n, device=xyz.device, dtype=torch.int64) + index_base
    margin = fp.window
    for c0, c1 in _steps(n, C):
        u, v, z = _project(xyz, P[c0:c1])
        ok = (z > 0) & valid[None] & (u > -margin) & (u < W + margin) & (v > -margin) & (v < H + margin)
        if cull is not None:
            nrm, eye = cull
            facing = (eye[c0:c1, :, None] - xyz.to(torch.float64)[None]) * nrm.to(torch.float64)[None]
            ok &= facing.sum(dim=1) >= 0
        ci, pi = ok.nonzero(as_tuple=True)
        u, v, z = u[ci, pi], v[ci, pi], z[ci, pi].contiguous()
        key = (z.view(torch.int32).to(torch.int64) << 32) | idx[pi]
        base = (ci + c0) * (H * W)
        for px, py, inc in _footprint_pixels(u, v, fp):
            m = (px >= 0) & (px < W) & (py >= 0) & (py < H)
            if inc is not None:
                m &= inc
            pix = base + py.long() * W + px.long()
            flat.scatter_reduce_(0, pix[m], key[m], reduce="amin", include_self=True)


def new_keys(C: int, H: int, W: int, device) -> torch.Tensor:
    """Empty z-buffer (C, H, W) int64."""
    return torch.full((C, H, W), KEY_EMPTY, dtype=torch.int64, device=device)


def _decode(keys, obj_packed, obj_oid, scene_packed, n_obj):
    """keys (C,H,W) -> valid, rgb (C,H,W,3) f32, z, oid (int32; -1 for scene points)."""
    valid = keys != KEY_EMPTY
    idx = keys & INDEX_MASK
    z = (keys >> 32).to(torch.int32).view(torch.float32)
    is_obj = valid & (idx < n_obj)
    if n_obj > 0:
        op = obj_packed[idx.clamp(max=n_obj - 1)]
        oid = torch.where(is_obj, obj_oid[idx.clamp(max=n_obj - 1)].to(torch.int32), -1)
    else:
        op = torch.zeros_like(idx, dtype=torch.int32)
        oid = torch.full_like(idx, -1, dtype=torch.int32)
    if scene_packed is not None and scene_packed.numel() > 0:
        sp = scene_packed[(idx - n_obj).clamp(0, scene_packed.numel() - 1)]
        packed = torch.where(is_obj, op, sp)
    else:
        packed = op
    rgb, _ = _unpack_float(packed)
    return valid, rgb, z, oid


def resolve(
    out: dict,
    scene_acc: torch.Tensor | None,
    scene_keys: torch.Tensor | None,
    obj_keys: torch.Tensor | None,
    scene_packed: torch.Tensor | None,
    obj_packed: torch.Tensor,
    obj_oid: torch.Tensor,
    n_obj: int,
    H: int,
    W: int,
) -> None:
    """Write final images into the (C,H,W,...) tensors in ``out`` (keys among rgb, mask, depth,
    object_mask, rgb_float; missing keys are skipped).

    Scene layer: ``scene_acc`` (GEN3C) or ``scene_keys`` (z-buffer; in ``full`` mode it holds objects
    too). Object layer ``obj_keys`` is depth-tested against the scene layer; ties go to the object.
    """
    C = (scene_acc if scene_acc is not None else scene_keys if scene_keys is not None else obj_keys).shape[0]
    dev = obj_packed.device
    if scene_acc is not None:
        a = scene_acc.view(C, H, W, 5)
        w = a[..., 0]
        s_valid = w > 0
        safe = torch.where(s_valid, w, torch.ones_like(w))
        s_rgb = (a[..., 1:4] / safe[..., None]).clamp(0, 255)
        s_z = a[..., 4] / safe
        s_oid = torch.full((C, H, W), -1, dtype=torch.int32, device=dev)
    elif scene_keys is not None:
        s_valid, s_rgb, s_z, s_oid = _decode(scene_keys, obj_packed, obj_oid, scene_packed, n_obj)
    else:
        s_valid = torch.zeros((C, H, W), dtype=torch.bool, device=dev)
        s_rgb = torch.zeros((C, H, W, 3), dtype=torch.float32, device=dev)
        s_z = torch.zeros((C, H, W), dtype=torch.float32, device=dev)
        s_oid = torch.full((C, H, W), -1, dtype=torch.int32, device=dev)
    if obj_keys is not None:
        o_valid, o_rgb, o_z, o_oid = _decode(obj_keys, obj_packed, obj_oid, None, n_obj)
        take = o_valid & (~s_valid | (o_z <= s_z))
        s_valid = s_valid | o_valid
        s_rgb = torch.where(take[..., None], o_rgb, s_rgb)
        s_z = torch.where(take, o_z, s_z)
        s_oid = torch.where(take, o_oid, s_oid)
    s_rgb = torch.where(s_valid[..., None], s_rgb, torch.zeros_like(s_rgb))
    if "rgb" in out:
        out["rgb"].copy_(torch.floor(s_rgb + 0.5).to(torch.uint8))  # round half up
    if "rgb_float" in out:
        out["rgb_float"].copy_(s_rgb)
    if "mask" in out:
        out["mask"].copy_(s_valid)
    if "depth" in out:
        out["depth"].copy_(torch.where(s_valid, s_z, torch.zeros_like(s_z)))
    if "object_mask" in out:
        out["object_mask"].copy_(torch.where(s_valid, s_oid, -1).to(torch.int16))
