"""Triton-lang fast path (CUDA; runs on CPU tensors under ``TRITON_INTERPRET=1`` for tests).

Same primitives and semantics as ``render_torch`` (see there and ``render_common``):
- ``gen3c_acc``: pass 1 ``_zmax_kernel`` (per-camera max z, for the log-depth normaliser), pass 2
  ``_gen3c_kernel`` (project + weight + 5 float atomic adds at each of the 4 bilinear neighbours).
- ``zbuffer``: ``_zbuf_kernel`` (project + footprint + packed (z, index) int64 ``atomic_min``, skipped
  when a plain load already shows a nearer key: keys only decrease, so a stale read is safe).
- ``resolve``: in ``kernels_resolve`` (one pass per pixel: scene accumulator or keys, object keys, depth
  test, writes uint8 RGB, bool mask, float32 depth, int16 object id, optional float RGB).
Each point program keeps its points in registers and loops over the cameras of the chunk, so the
points are read from memory once per call. Projection runs in float64 (as in ``render_torch``).
No state is kept between calls; kernels compile once per process (Triton's own cache).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .kernels_resolve import resolve
from .render_common import DEPTH_WEIGHT_SCALE, KEY_EMPTY, LOG_EPS, PROJ_EPS, SNAP_PX, Footprint

POINT_BLOCK = 256


@triton.jit
def _project(x, y, z, P_ptr, c):
    """float64 point coordinates, camera c of the (C,3,4) float64 table -> (u, v) snapped, z (float64)."""
    p = P_ptr + c * 12
    px = tl.load(p + 0) * x + tl.load(p + 1) * y + tl.load(p + 2) * z + tl.load(p + 3)
    py = tl.load(p + 4) * x + tl.load(p + 5) * y + tl.load(p + 6) * z + tl.load(p + 7)
    pz = tl.load(p + 8) * x + tl.load(p + 9) * y + tl.load(p + 10) * z + tl.load(p + 11)
    safe = tl.where(pz > 0, pz, 1.0)
    u = px / safe
    v = py / safe
    ru = tl.floor(u + 0.5)
    rv = tl.floor(v + 0.5)
    u = tl.where(tl.abs(u - ru) <= SNAP, ru, u)
    v = tl.where(tl.abs(v - rv) <= SNAP, rv, v)
    return u, v, pz


SNAP = tl.constexpr(SNAP_PX)
PROJ_EPS_C = tl.constexpr(PROJ_EPS)


@triton.jit
def _project_g3(x, y, z, P_ptr, snap_ptr, c):
    """GEN3C splat projection (upstream ``project_points``): u = p_x / (p_z + 1e-7), snapped onto pixel
    centres only within the camera's tolerance snap[c] (non-zero at a slot's own source camera)."""
    p = P_ptr + c * 12
    px = tl.load(p + 0) * x + tl.load(p + 1) * y + tl.load(p + 2) * z + tl.load(p + 3)
    py = tl.load(p + 4) * x + tl.load(p + 5) * y + tl.load(p + 6) * z + tl.load(p + 7)
    pz = tl.load(p + 8) * x + tl.load(p + 9) * y + tl.load(p + 10) * z + tl.load(p + 11)
    den = pz + PROJ_EPS_C
    safe = tl.where(den != 0, den, 1.0)
    u = px / safe
    v = py / safe
    tol = tl.load(snap_ptr + c)
    ru = tl.floor(u + 0.5)
    rv = tl.floor(v + 0.5)
    u = tl.where(tl.abs(u - ru) <= tol, ru, u)
    v = tl.where(tl.abs(v - rv) <= tol, rv, v)
    return u, v, pz


@triton.jit
def _load_points(xyz_ptr, stride, offs, m):
    x = tl.load(xyz_ptr + offs, mask=m, other=0.0).to(tl.float64)
    y = tl.load(xyz_ptr + stride + offs, mask=m, other=0.0).to(tl.float64)
    z = tl.load(xyz_ptr + 2 * stride + offs, mask=m, other=0.0).to(tl.float64)
    return x, y, z


@triton.jit
def _zmax_kernel(xyz_ptr, stride, n, P_ptr, zmax_ptr, C, VPP, BLOCK: tl.constexpr):
    """zmax[c] = max over points of max(z_c, 0), stored as float32 bits in int32 (monotone for z >= 0)."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    x, y, z = _load_points(xyz_ptr, stride, offs, m)
    for c in range(tl.program_id(1) * VPP, tl.minimum(tl.program_id(1) * VPP + VPP, C)):
        _, _, pz = _project(x, y, z, P_ptr, c)
        zf = tl.where(m & (pz > 0), pz, 0.0).to(tl.float32)
        zb = tl.max(zf.to(tl.int32, bitcast=True), axis=0)
        tl.atomic_max(zmax_ptr + c, zb, sem="relaxed")


@triton.jit
def _gen3c_kernel(
    xyz_ptr, stride, packed_ptr, n, P_ptr, snap_ptr, zmax_ptr, acc_ptr, C, H, W, VPP, BLOCK: tl.constexpr
):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    x, y, z = _load_points(xyz_ptr, stride, offs, m)
    pk = tl.load(packed_ptr + offs, mask=m, other=0)
    valid = m & (((pk >> 24) & 1) != 0)
    r = (pk & 255).to(tl.float32)
    g = ((pk >> 8) & 255).to(tl.float32)
    b = ((pk >> 16) & 255).to(tl.float32)
    HW = H * W
    for c in range(tl.program_id(1) * VPP, tl.minimum(tl.program_id(1) * VPP + VPP, C)):
        u, v, pz = _project_g3(x, y, z, P_ptr, snap_ptr, c)
        zmax = tl.load(zmax_ptr + c).to(tl.float64)
        scale = DEPTH_SCALE / (tl.log(1.0 + zmax) + LOG_EPS_C)
        zf = pz.to(tl.float32)
        zl = tl.log(1.0 + tl.maximum(zf, 0.0).to(tl.float64))
        wd = tl.exp((-zl * scale).to(tl.float32))
        ok = valid & (pz > 0) & (u > -1.0) & (u < W) & (v > -1.0) & (v < H)
        x0 = tl.floor(u)
        y0 = tl.floor(v)
        x1 = tl.ceil(u)
        y1 = tl.ceil(v)
        wx0 = (1.0 - (u - x0)).to(tl.float32)
        wx1 = (1.0 - (x1 - u)).to(tl.float32)
        wy0 = (1.0 - (v - y0)).to(tl.float32)
        wy1 = (1.0 - (y1 - v)).to(tl.float32)
        ix0 = tl.where(ok, x0, -1.0).to(tl.int64)
        ix1 = tl.where(ok, x1, -1.0).to(tl.int64)
        iy0 = tl.where(ok, y0, -1.0).to(tl.int64)
        iy1 = tl.where(ok, y1, -1.0).to(tl.int64)
        base = c * HW
        _splat(acc_ptr, base, ix0, iy0, wx0 * wy0 * wd, r, g, b, zf, ok, H, W)
        _splat(acc_ptr, base, ix0, iy1, wx0 * wy1 * wd, r, g, b, zf, ok, H, W)
        _splat(acc_ptr, base, ix1, iy0, wx1 * wy0 * wd, r, g, b, zf, ok, H, W)
        _splat(acc_ptr, base, ix1, iy1, wx1 * wy1 * wd, r, g, b, zf, ok, H, W)


DEPTH_SCALE = tl.constexpr(DEPTH_WEIGHT_SCALE)
LOG_EPS_C = tl.constexpr(LOG_EPS)


@triton.jit
def _splat(acc_ptr, base, ix, iy, w, r, g, b, zf, ok, H, W):
    m = ok & (ix >= 0) & (ix < W) & (iy >= 0) & (iy < H)
    a = acc_ptr + (base + iy * W + ix) * 5
    tl.atomic_add(a, w, mask=m, sem="relaxed")
    tl.atomic_add(a + 1, w * r, mask=m, sem="relaxed")
    tl.atomic_add(a + 2, w * g, mask=m, sem="relaxed")
    tl.atomic_add(a + 3, w * b, mask=m, sem="relaxed")
    tl.atomic_add(a + 4, w * zf, mask=m, sem="relaxed")


@triton.jit
def _zbuf_kernel(
    xyz_ptr,
    stride,
    packed_ptr,
    n,
    P_ptr,
    keys_ptr,
    C,
    H,
    W,
    index_base,
    r2,
    VPP,
    nrm_ptr,
    nstride,
    eye_ptr,
    DISC: tl.constexpr,
    K: tl.constexpr,
    CULL: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """K = footprint size (square) or window width 2R+1 (disc of squared radius r2). CULL: skip points
    whose normal faces away from camera c (``n . (eye_c - p) < 0``; eye_ptr (C,3) float64)."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    x, y, z = _load_points(xyz_ptr, stride, offs, m)
    pk = tl.load(packed_ptr + offs, mask=m, other=0)
    valid = m & (((pk >> 24) & 1) != 0)
    idx = offs.to(tl.int64) + index_base
    HW = H * W
    if CULL:
        nx = tl.load(nrm_ptr + offs, mask=m, other=0.0).to(tl.float64)
        ny = tl.load(nrm_ptr + nstride + offs, mask=m, other=0.0).to(tl.float64)
        nz = tl.load(nrm_ptr + 2 * nstride + offs, mask=m, other=0.0).to(tl.float64)
    for c in range(tl.program_id(1) * VPP, tl.minimum(tl.program_id(1) * VPP + VPP, C)):
        u, v, pz = _project(x, y, z, P_ptr, c)
        ok = valid & (pz > 0) & (u > -K) & (u < W + K) & (v > -K) & (v < H + K)
        if CULL:
            ex = tl.load(eye_ptr + c * 3)
            ey = tl.load(eye_ptr + c * 3 + 1)
            ez = tl.load(eye_ptr + c * 3 + 2)
            ok = ok & ((nx * (ex - x) + ny * (ey - y) + nz * (ez - z)) >= 0)
        zb = pz.to(tl.float32).to(tl.int32, bitcast=True).to(tl.int64)
        key = (zb << 32) | idx
        u = tl.where(ok, u, 0.0)
        v = tl.where(ok, v, 0.0)
        base = keys_ptr + c * HW
        if DISC and K == 2:  # radius < 1: floor/ceil neighbours, the nearest pixel always included
            nx = tl.floor(u + 0.5)
            ny = tl.floor(v + 0.5)
            for dy in tl.static_range(2):
                for dx in tl.static_range(2):
                    if dx == 0:
                        px = tl.floor(u)
                    else:
                        px = tl.ceil(u)
                    if dy == 0:
                        py = tl.floor(v)
                    else:
                        py = tl.ceil(v)
                    inc = (((px - u) * (px - u) + (py - v) * (py - v)) <= r2) | ((px == nx) & (py == ny))
                    _zmin(base, px, py, key, ok & inc, H, W)
        elif DISC:
            R: tl.constexpr = (K - 1) // 2
            cx = tl.floor(u + 0.5)
            cy = tl.floor(v + 0.5)
            for dy in tl.static_range(K):
                for dx in tl.static_range(K):
                    px = cx + (dx - R)
                    py = cy + (dy - R)
                    inc = ((px - u) * (px - u) + (py - v) * (py - v)) <= r2
                    if dx == R and dy == R:
                        inc = ok
                    _zmin(base, px, py, key, ok & inc, H, W)
        else:
            H2: tl.constexpr = K // 2
            if K % 2 == 1:
                fx = tl.floor(u + 0.5) - H2
                fy = tl.floor(v + 0.5) - H2
                gx = fx
                gy = fy
            else:
                fx = tl.floor(u) - (H2 - 1)
                fy = tl.floor(v) - (H2 - 1)
                gx = tl.ceil(u) - H2  # offsets >= H2 continue from ceil
                gy = tl.ceil(v) - H2
            for dy in tl.static_range(K):
                for dx in tl.static_range(K):
                    if K % 2 == 0 and dx >= H2:
                        px = gx + dx
                    else:
                        px = fx + dx
                    if K % 2 == 0 and dy >= H2:
                        py = gy + dy
                    else:
                        py = fy + dy
                    _zmin(base, px, py, key, ok, H, W)


@triton.jit
def _zmin(base, px, py, key, ok, H, W):
    m = ok & (px >= 0) & (px < W) & (py >= 0) & (py < H)
    addr = base + tl.where(m, py * W + px, 0.0).to(tl.int64)
    cur = tl.load(addr, mask=m, other=0)
    tl.atomic_min(addr, key, mask=m & (key < cur), sem="relaxed")


# ------------------------------------------------------------------------------------------ launchers
# Point programs: each takes POINT_BLOCK points and a run of VPP cameras. Enough programs to fill the GPU
# (small objects get short camera runs), long runs for big clouds (points stay in registers).
TARGET_PROGRAMS = 8192
# The z-buffer raster has its own launch shape (bench/zbuffer_tuning.py, docs/performance.md): its atomics
# are integer min, so the result does not depend on it; the GEN3C splat's float adds keep the one above.
ZBUF_POINT_BLOCK = 64
ZBUF_TARGET_PROGRAMS = 32768
ZBUF_WARPS = 2


def _point_grid(
    n: int, C: int, block: int | None = None, target: int | None = None
) -> tuple[tuple[int, int], int]:
    blocks = triton.cdiv(n, block or POINT_BLOCK)
    groups = min(C, max(1, triton.cdiv(target or TARGET_PROGRAMS, blocks)))
    vpp = triton.cdiv(C, groups)
    return (blocks, triton.cdiv(C, vpp)), vpp


def gen3c_zmax(xyz: torch.Tensor, P: torch.Tensor) -> torch.Tensor:
    """(C,) float32 max camera z (clamped at 0) over every point (see ``render_torch.gen3c_zmax``)."""
    C, n = P.shape[0], xyz.shape[1]
    zmax = torch.zeros(C, dtype=torch.int32, device=xyz.device)
    if n:
        grid, vpp = _point_grid(n, C)
        _zmax_kernel[grid](xyz, xyz.stride(0), n, P.contiguous(), zmax, C, vpp, BLOCK=POINT_BLOCK)
    return zmax.view(torch.float32)


def gen3c_acc(
    xyz: torch.Tensor,
    packed: torch.Tensor,
    P: torch.Tensor,
    H: int,
    W: int,
    zmax: torch.Tensor | None = None,
    snap_tol: torch.Tensor | None = None,
) -> torch.Tensor:
    """(C, H*W, 5) float32 GEN3C accumulators (see ``render_torch.gen3c_acc``)."""
    C, n = P.shape[0], xyz.shape[1]
    acc = torch.zeros(C * H * W * 5, dtype=torch.float32, device=xyz.device)
    if n:
        P = P.contiguous()
        if zmax is None:
            zmax = gen3c_zmax(xyz, P)
        zmax = zmax.to(xyz.device, torch.float32).contiguous()
        if snap_tol is None:
            snap_tol = torch.zeros(C, dtype=torch.float64, device=xyz.device)
        snap_tol = snap_tol.to(xyz.device, torch.float64).contiguous()
        grid, vpp = _point_grid(n, C)
        _gen3c_kernel[grid](
            xyz, xyz.stride(0), packed, n, P, snap_tol, zmax, acc, C, H, W, vpp, BLOCK=POINT_BLOCK
        )
    return acc.view(C, H * W, 5)


def new_keys(C: int, H: int, W: int, device) -> torch.Tensor:
    return torch.full((C, H, W), KEY_EMPTY, dtype=torch.int64, device=device)


def zbuffer(
    keys: torch.Tensor,
    xyz: torch.Tensor,
    packed: torch.Tensor,
    P: torch.Tensor,
    index_base: int,
    fp: Footprint,
    cull: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> None:
    """Atomic-min rasterisation of packed (z, index) keys into ``keys`` (C, H, W) int64; ``cull`` as in
    ``render_torch.zbuffer`` (back-face culling)."""
    C, H, W = keys.shape
    n = xyz.shape[1]
    if n == 0:
        return
    assert xyz.stride(1) == 1 and packed.is_contiguous() and keys.is_contiguous()
    if cull is not None:
        nrm, eye = cull
        assert nrm.stride(1) == 1
        eye = eye.to(torch.float64).contiguous()
    else:
        nrm, eye = xyz, P  # placeholders, never read
    grid, vpp = _point_grid(n, C, ZBUF_POINT_BLOCK, ZBUF_TARGET_PROGRAMS)
    _zbuf_kernel[grid](
        xyz,
        xyz.stride(0),
        packed,
        n,
        P.contiguous(),
        keys,
        C,
        H,
        W,
        index_base,
        float(fp.radius) ** 2,
        vpp,
        nrm,
        nrm.stride(0),
        eye,
        DISC=fp.is_disc,
        K=fp.window,
        CULL=cull is not None,
        BLOCK=ZBUF_POINT_BLOCK,
        num_warps=ZBUF_WARPS,
    )


__all__ = ["gen3c_acc", "gen3c_zmax", "new_keys", "resolve", "zbuffer"]
