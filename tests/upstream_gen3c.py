"""Independent restatement of upstream GEN3C's cache render, for tests and benches (not used by objvid).

Restated from nv-tlabs/GEN3C @ db2ffe1 (``cache_3d.Cache3D_Base`` and ``forward_warp_utils_pytorch``:
``unproject_points``, ``project_points``, ``forward_warp``, ``bilinear_splatting``,
``reliable_depth_mask_range_batch``, ``points_to_mesh``, the Warp ray-triangle kernel), in the dtype asked
for (float32 = upstream's default ``weight_dtype``; float64 = the same arithmetic without round-off). No
snapping anywhere; written from the definitions, sharing no code with ``objvid.cache``.

Layout: one source view per buffer slot, points (N, H, W, 3), colours (N, H, W, 3) in [-1, 1], masks
(N, H, W) {0,1}; T target cameras. Views are flattened in (camera, slot) order and warped in chunks of
``chunk`` (upstream: 2); the log-depth normaliser is the max over one chunk.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

MAX_EXPONENT = {torch.float32: 80.0, torch.float64: 700.0}


def reliable_mask(depth: torch.Tensor, thr: float = 0.05, window: int = 5, eps: float = 1e-6) -> torch.Tensor:
    """(H,W) depth -> (H,W) bool: (box max - box min) / (box mean + eps) < thr and depth > 0 (zero padding
    for the mean, -inf padding for max / min as max-pooling does)."""
    d = depth[None, None]
    pad = window // 2
    hi = F.max_pool2d(d, window, 1, pad)
    lo = -F.max_pool2d(-d, window, 1, pad)
    mean = F.avg_pool2d(d, window, 1, pad)  # count_include_pad: zeros count
    return (((hi - lo) / (mean + eps)) < thr)[0, 0] & (depth > 0)


def lift(depth: np.ndarray, K: np.ndarray, w2c: np.ndarray, dtype=torch.float32) -> torch.Tensor:
    """Cache3D_Base: NaN -> 100, clamp [0, 100], ``unproject_points`` (inverses in float32, as upstream's
    ``inverse_with_conversion``); pixels with depth 0 get the point (0, 0, 0). -> (H, W, 3) ``dtype``."""
    d = torch.nan_to_num(torch.as_tensor(depth, dtype=dtype), nan=100.0).clamp(0, 100)
    H, W = d.shape
    k_inv = torch.linalg.inv(torch.as_tensor(K, dtype=torch.float32)).to(dtype)
    c2w = torch.linalg.inv(torch.as_tensor(w2c, dtype=torch.float32)).to(dtype)
    ys, xs = torch.meshgrid(torch.arange(H, dtype=dtype), torch.arange(W, dtype=dtype), indexing="ij")
    pix = torch.stack([xs, ys, torch.ones_like(xs)], -1)[..., None]  # (H, W, 3, 1)
    cam = d[..., None, None] * (k_inv @ pix)
    world = (c2w @ torch.cat([cam, torch.ones_like(cam[..., :1, :])], -2))[..., :3, 0]
    return torch.where((d > 0)[..., None], world, torch.zeros_like(world))


def _splat(values, weights, rows, cols, H, W):
    """Sum ``values * w`` and ``w`` of 4 corners into a padded (H+2, W+2) canvas per view."""
    B, C = values.shape[0], values.shape[-1]
    acc = torch.zeros(B, H + 2, W + 2, C, dtype=values.dtype, device=values.device)
    wsum = torch.zeros(B, H + 2, W + 2, 1, dtype=values.dtype, device=values.device)
    b = torch.arange(B, device=values.device)[:, None, None].expand_as(rows[0])
    for r, c, w in zip(rows, cols, weights, strict=True):
        acc.index_put_((b, r, c), values * w[..., None], accumulate=True)
        wsum.index_put_((b, r, c), w[..., None], accumulate=True)
    return acc[:, 1:-1, 1:-1], wsum[:, 1:-1, 1:-1]


def warp_chunk(points, colors, masks, w2cs, Ks, dtype):
    """``forward_warp`` for a chunk of B views: points (B,H,W,3), colors (B,H,W,3) [-1,1], masks (B,H,W),
    w2cs (B,4,4), Ks (B,3,3). -> images (B,H,W,3) [-1,1] (holes -1), masks (B,H,W) bool, depth (B,H,W)
    (weighted mean camera z, 0 in holes), camera points (B,H,W,3)."""
    B, H, W, _ = points.shape
    X = torch.cat([points, torch.ones_like(points[..., :1])], -1)[..., None]  # (B,H,W,4,1)
    cam = (w2cs[:, None, None] @ X)[..., :3, :]
    p = (Ks[:, None, None] @ cam)[..., 0]  # (B,H,W,3)
    z = p[..., 2]
    m = masks * (z > 0).to(dtype)
    coords = p[..., :2] / (z[..., None] + 1e-7)
    dev = points.device
    ys, xs = torch.meshgrid(
        torch.arange(H, dtype=dtype, device=dev), torch.arange(W, dtype=dtype, device=dev), indexing="ij"
    )
    grid = torch.stack([xs, ys], -1)
    pos = (coords - grid) + grid + 1  # upstream: flow = coords - grid; splat at flow + grid, 1-px pad
    x, y = pos[..., 0], pos[..., 1]
    x0, x1 = torch.floor(x).long().clamp(0, W + 1), torch.ceil(x).long().clamp(0, W + 1)
    y0, y1 = torch.floor(y).long().clamp(0, H + 1), torch.ceil(y).long().clamp(0, H + 1)
    x, y = x.clamp(0, W + 1), y.clamp(0, H + 1)
    log_z = torch.log1p(z.clamp(min=0))
    expo = (log_z / (log_z.max() + 1e-7) * 50).clamp(max=MAX_EXPONENT[dtype])
    wd = torch.exp(expo) + 1e-7
    wx0, wx1 = 1 - (x - x0), 1 - (x1 - x)
    wy0, wy1 = 1 - (y - y0), 1 - (y1 - y)
    weights = [wy0 * wx0 * m / wd, wy1 * wx0 * m / wd, wy0 * wx1 * m / wd, wy1 * wx1 * m / wd]
    rows, cols = [y0, y1, y0, y1], [x0, x0, x1, x1]
    acc, wsum = _splat(colors, weights, rows, cols, H, W)
    covered = wsum[..., 0] > 0
    img = torch.where(covered[..., None], acc / wsum, torch.full_like(acc, -1.0)).clamp(-1, 1)
    zacc, _ = _splat(z[..., None], weights, rows, cols, H, W)
    depth = torch.where(covered, zacc[..., 0] / wsum[..., 0], torch.zeros_like(zacc[..., 0]))
    return img, covered, depth, cam[..., 0]


def render_cache(
    points, colors, masks, w2cs, Ks, dtype=torch.float32, chunk: int = 2, boundary=None, device="cpu"
):
    """``Cache3D_Base.render_cache`` for N slots and T cameras (float64 inputs are cast to ``dtype``).

    points (N,H,W,3), colors (N,H,W,3) in [-1,1], masks (N,H,W) or None, w2cs (T,4,4), Ks (T,3,3);
    boundary (N,H,W) bool turns on foreground masking. -> images (T,N,H,W,3), masks (T,N,H,W) bool,
    depth (T,N,H,W)."""
    pts = torch.as_tensor(points).to(device, dtype)
    col = torch.as_tensor(colors).to(device, dtype)
    N, H, W, _ = pts.shape
    msk = torch.ones(N, H, W, dtype=dtype) if masks is None else torch.as_tensor(masks).to(dtype)
    msk = msk.to(device)
    w2c_t = torch.as_tensor(w2cs).to(device, dtype)
    K_t = torch.as_tensor(Ks).to(device, dtype)
    T = len(w2c_t)
    views = [(t, n) for t in range(T) for n in range(N)]
    imgs = torch.empty(T, N, H, W, 3, dtype=dtype)
    covs = torch.empty(T, N, H, W, dtype=torch.bool)
    deps = torch.empty(T, N, H, W, dtype=dtype)
    imgs, covs, deps = imgs.to(device), covs.to(device), deps.to(device)
    for i in range(0, len(views), chunk):
        vs = views[i : i + chunk]
        tt, nn = [t for t, _ in vs], [n for _, n in vs]
        img, cov, dep, cam = warp_chunk(pts[nn], col[nn], msk[nn], w2c_t[tt], K_t[tt], dtype)
        if boundary is not None:
            for j, (t, n) in enumerate(vs):
                occluded = foreground_occlusion(cam[j], boundary[n], K_t[t], dep[j])
                cov[j] &= ~occluded
                img[j][occluded] = -1.0
                dep[j][occluded] = 0.0
        for j, (t, n) in enumerate(vs):
            imgs[t, n], covs[t, n], deps[t, n] = img[j], cov[j], dep[j]
    return imgs, covs, deps


# ------------------------------------------------------------------------------------------- foreground masking
def boundary_mesh(cam_points: torch.Tensor, boundary: torch.Tensor, factor: int = 4):
    """``points_to_mesh`` at (H//factor, W//factor): camera points bilinearly resized (align_corners=False),
    the boundary mask nearest-resized; two triangles (tl, tr, bl), (tr, br, bl) per 2x2 vertex patch with
    any boundary vertex. -> vertices (V,3), faces (F,3) long (unused vertices kept: they do not matter)."""
    H, W = boundary.shape
    h, w = H // factor, W // factor
    pts = F.interpolate(cam_points.permute(2, 0, 1)[None], size=(h, w), mode="bilinear", align_corners=False)
    pts = pts[0].permute(1, 2, 0).reshape(-1, 3)
    m = F.interpolate(boundary[None, None].float(), size=(h, w), mode="nearest")[0, 0] > 0
    patch = m[:-1, :-1] | m[:-1, 1:] | m[1:, :-1] | m[1:, 1:]
    r, c = torch.nonzero(patch, as_tuple=True)
    tl, tr, bl, br = r * w + c, r * w + c + 1, (r + 1) * w + c, (r + 1) * w + c + 1
    faces = torch.cat([torch.stack([tl, tr, bl], 1), torch.stack([tr, br, bl], 1)])
    return pts, faces


def ray_cast(K: torch.Tensor, H: int, W: int, vertices: torch.Tensor, faces: torch.Tensor, eps: float = 1e-8):
    """Möller-Trumbore from the camera centre through every pixel (x, y) (unit rays of K^-1 (x, y, 1),
    K inverted in float32) -> (H,W) nearest hit distance t > eps, 0 when no triangle is hit. Brute force
    over all triangles (small sizes only)."""
    dt = vertices.dtype
    k_inv = torch.linalg.inv(K.to(torch.float32)).to(dt)
    ys, xs = torch.meshgrid(torch.arange(H, dtype=dt), torch.arange(W, dtype=dt), indexing="ij")
    d = torch.stack([xs, ys, torch.ones_like(xs)], -1) @ k_inv.T
    d = d / d.norm(dim=-1, keepdim=True)
    d = d.reshape(-1, 1, 3)
    v0, v1, v2 = (vertices[faces[:, i]][None] for i in range(3))
    e1, e2 = v1 - v0, v2 - v0
    h = torch.cross(d.expand(-1, e2.shape[1], -1), e2.expand(d.shape[0], -1, -1), dim=-1)
    a = (e1 * h).sum(-1)
    ok = a.abs() >= eps
    f = 1.0 / torch.where(ok, a, torch.ones_like(a))
    s = -v0  # ray origin 0
    u = f * (s * h).sum(-1)
    q = torch.cross(s.expand_as(h), e1.expand_as(h), dim=-1)
    v = f * (d * q).sum(-1)
    t = f * (e2 * q).sum(-1)
    hit = ok & (u >= 0) & (u <= 1) & (v >= 0) & (u + v <= 1) & (t > eps)
    t = torch.where(hit, t, torch.full_like(t, float("inf"))).amin(dim=1)
    t = torch.where(torch.isinf(t), torch.zeros_like(t), t)
    return t.reshape(H, W), d.reshape(H, W, 3)


def foreground_occlusion(cam_points, boundary, K, warped_depth, margin: float = 0.02):
    """(H,W) bool: pixels where the boundary mesh is nearer than the warped depth by more than ``margin``."""
    H, W = boundary.shape
    verts, faces = boundary_mesh(cam_points, torch.as_tensor(boundary, dtype=torch.bool))
    if len(faces) == 0:
        return torch.zeros(H, W, dtype=torch.bool)
    t, rays = ray_cast(K, H, W, verts, faces)
    mesh_z = t * rays[..., 2]
    return (mesh_z > 0) & (mesh_z + margin < warped_depth)
