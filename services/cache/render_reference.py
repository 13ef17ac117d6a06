"""Plain PyTorch reference renderers (readable, one camera at a time, float64 by default, CPU).

They define the semantics the fast backends (``render_torch``, ``kernels``) must reproduce:
- ``gen3c_view``: upstream GEN3C ``forward_warp`` written out literally (``u = p_x / (p_z + 1e-7)``,
  padded canvas, floor/ceil neighbours, ``prox / (exp(min(50 * log1p(z) / (log1p(zmax) + 1e-7), 80)) + 1e-7)``,
  ``index_put_(accumulate=True)``), with upstream's normaliser (max z over each warp chunk of 2 views) and
  no snapping except at the slot's own source camera (``render_common.source_snap``).
- ``zbuffer_view``: every footprint pixel of every point becomes a candidate (pixel, z, index); the
  candidates are sorted and the first per pixel wins (nearest z, then lowest index).
- ``render``: the modes (fused / full / scene / objects) per buffer slot.
Only differences to the fast code: float64 arithmetic and no packed keys.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .render_common import (
    DEPTH_WEIGHT_SCALE,
    LOG_EPS,
    PROJ_EPS,
    Footprint,
    normaliser_groups,
    object_footprint,
    projection_matrices,
    snap,
    snap_within,
    source_snap,
)


@dataclass
class RefCloud:
    """World-space points (P,3), uint8 colours (P,3), validity (P,) and an object id (-1 = scene)."""

    points: np.ndarray
    colors: np.ndarray
    valid: np.ndarray
    object_ids: np.ndarray  # (P,) int, -1 for scene points
    source_P: np.ndarray | None = None  # (3,4) K @ w2c[:3] of the view the points were lifted from
    normals: np.ndarray | None = None  # (P,3) world unit normals of object points (zero = never culled)


def _project(points: torch.Tensor, w2c: torch.Tensor, K: torch.Tensor):
    cam = points @ w2c[:3, :3].T + w2c[:3, 3]
    p = cam @ K.T
    z = p[:, 2]
    return snap(p[:, 0] / z), snap(p[:, 1] / z), z


def view_zmax(cloud: RefCloud, w2c, K, dtype=torch.float64) -> float:
    """Max camera z (clamped at 0) over every point of the cloud, valid or not."""
    X = torch.as_tensor(cloud.points, dtype=dtype)
    z = X @ torch.as_tensor(w2c, dtype=dtype)[2, :3] + float(w2c[2][3])
    return float(torch.clamp(z, min=0).max()) if len(X) else 0.0


def gen3c_view(cloud: RefCloud, w2c, K, H: int, W: int, dtype=torch.float64, zmax: float | None = None):
    """One camera. Returns (rgb (H,W,3) in [0,255], depth (H,W), mask (H,W) bool), holes 0 / False.
    ``zmax``: the normaliser's max camera z (default: this view's own)."""
    X = torch.as_tensor(cloud.points, dtype=dtype)
    col = torch.as_tensor(cloud.colors, dtype=dtype)
    w2c_t, K_t = torch.as_tensor(w2c, dtype=dtype), torch.as_tensor(K, dtype=dtype)
    p = (X @ w2c_t[:3, :3].T + w2c_t[:3, 3]) @ K_t.T
    z = p[:, 2]
    tol = float(
        source_snap(projection_matrices(np.asarray(w2c)[None], np.asarray(K)[None]), cloud.source_P)[0]
    )
    u = snap_within(p[:, 0] / (z + PROJ_EPS), tol)
    v = snap_within(p[:, 1] / (z + PROJ_EPS), tol)
    if zmax is None:
        zmax = view_zmax(cloud, w2c, K, dtype)
    log_z = torch.log1p(torch.clamp(z, min=0))
    log_max = float(np.log1p(zmax))
    expo = torch.clamp(log_z / (log_max + LOG_EPS) * DEPTH_WEIGHT_SCALE, max=80.0)
    w_depth = torch.exp(expo) + 1e-7
    keep = torch.as_tensor(cloud.valid, dtype=torch.bool) & (z > 0)
    u, v, z, col, w_depth = u[keep], v[keep], z[keep], col[keep], w_depth[keep]
    # upstream: 1-px padded canvas, positions offset by 1, floor/ceil clamped into the canvas
    x = torch.clamp(u, -2.0, W + 2.0) + 1
    y = torch.clamp(v, -2.0, H + 2.0) + 1
    xf, yf = torch.floor(x).long().clamp(0, W + 1), torch.floor(y).long().clamp(0, H + 1)
    xc, yc = torch.ceil(x).long().clamp(0, W + 1), torch.ceil(y).long().clamp(0, H + 1)
    x, y = x.clamp(0, W + 1), y.clamp(0, H + 1)
    corners = (
        (yf, xf, (1 - (y - yf)) * (1 - (x - xf))),
        (yc, xf, (1 - (yc - y)) * (1 - (x - xf))),
        (yf, xc, (1 - (y - yf)) * (1 - (xc - x))),
        (yc, xc, (1 - (yc - y)) * (1 - (xc - x))),
    )
    canvas = torch.zeros(H + 2, W + 2, 5, dtype=dtype)
    values = torch.cat([torch.ones_like(z)[:, None], col, z[:, None]], dim=1)
    for rows, cols, prox in corners:
        w = prox / w_depth
        canvas.index_put_((rows, cols), values * w[:, None], accumulate=True)
    canvas = canvas[1:-1, 1:-1]
    wsum = canvas[..., 0]
    mask = wsum > 0
    safe = torch.where(mask, wsum, torch.ones_like(wsum))
    rgb = torch.where(mask[..., None], (canvas[..., 1:4] / safe[..., None]).clamp(0, 255), 0.0)
    depth = torch.where(mask, canvas[..., 4] / safe, 0.0)
    return rgb, depth, mask


def _footprint_offsets(u: float, v: float, fp: Footprint):
    """Pixels (x, y) covered by one point: a literal restatement of ``Footprint``'s rule."""
    if fp.is_disc:
        cx, cy = int(np.floor(u + 0.5)), int(np.floor(v + 0.5))
        R = int(np.ceil(fp.radius))
        out = [(cx, cy)]
        for y in range(cy - R, cy + R + 1):
            for x in range(cx - R, cx + R + 1):
                if (x, y) != (cx, cy) and (x - u) ** 2 + (y - v) ** 2 <= fp.radius**2:
                    out.append((x, y))
        return out
    k = fp.size
    if k % 2 == 1:
        h = (k - 1) // 2
        cx, cy = int(np.floor(u + 0.5)), int(np.floor(v + 0.5))
        xs, ys = range(cx - h, cx + h + 1), range(cy - h, cy + h + 1)
    else:
        h = k // 2
        xs = sorted({x for x in range(int(np.floor(u)) - h + 1, int(np.ceil(u)) + h)})
        ys = sorted({y for y in range(int(np.floor(v)) - h + 1, int(np.ceil(v)) + h)})
    return [(x, y) for y in ys for x in xs]


def zbuffer_view(clouds: list[tuple[RefCloud, Footprint]], w2c, K, H: int, W: int, dtype=torch.float64):
    """Nearest point per pixel over several clouds sharing one index space (cloud i's points come after
    cloud i-1's). Returns (winner (H,W) int64 global index or -1, depth (H,W), cloud-local lookup).
    """
    pix, zs, gidx = [], [], []
    base = 0
    for cloud, fp in clouds:
        X = torch.as_tensor(cloud.points, dtype=dtype)
        u, v, z = _project(X, torch.as_tensor(w2c, dtype=dtype), torch.as_tensor(K, dtype=dtype))
        valid = np.asarray(cloud.valid, bool)
        if cloud.normals is not None:  # back-face culling: keep points with n . (C - p) >= 0
            w2c_a = np.asarray(w2c, np.float64)
            eye = -w2c_a[:3, :3].T @ w2c_a[:3, 3]
            valid = valid & (np.einsum("ij,ij->i", cloud.normals, eye[None] - np.asarray(cloud.points)) >= 0)
        for i in range(len(X)):
            if not valid[i] or not z[i] > 0:
                continue
            for x, y in _footprint_offsets(float(u[i]), float(v[i]), fp):
                if 0 <= x < W and 0 <= y < H:
                    pix.append(y * W + x)
                    zs.append(float(z[i]))
                    gidx.append(base + i)
        base += len(X)
    winner = torch.full((H * W,), -1, dtype=torch.int64)
    depth = torch.zeros(H * W, dtype=dtype)
    if pix:
        order = np.lexsort((np.array(gidx), np.array(zs), np.array(pix)))  # by pixel, then z, then index
        p_sorted = np.array(pix)[order]
        first = np.ones(len(order), bool)
        first[1:] = p_sorted[1:] != p_sorted[:-1]
        chosen = order[first]
        winner[torch.as_tensor(np.array(pix)[chosen])] = torch.as_tensor(np.array(gidx)[chosen])
        depth[torch.as_tensor(np.array(pix)[chosen])] = torch.as_tensor(np.array(zs)[chosen], dtype=dtype)
    return winner.view(H, W), depth.view(H, W)


def _lookup(clouds: list[RefCloud], winner: torch.Tensor):
    """Global winner index -> rgb (H,W,3) float, object id (H,W) int."""
    colors = np.concatenate([c.colors for c in clouds]).astype(np.float64)
    oids = np.concatenate([c.object_ids for c in clouds]).astype(np.int64)
    w = winner.numpy()
    hit = w >= 0
    rgb = np.zeros(w.shape + (3,))
    oid = np.full(w.shape, -1, np.int64)
    rgb[hit] = colors[w[hit]]
    oid[hit] = oids[w[hit]]
    return torch.as_tensor(rgb), torch.as_tensor(oid)


def render(
    slots: list[RefCloud],
    objects: RefCloud | None,
    w2cs: np.ndarray,
    Ks: np.ndarray,
    H: int,
    W: int,
    mode: str = "fused",
    splat: str = "gen3c",
    footprint: int = 2,
    object_radius_px: float = 0.75,
    dtype=torch.float64,
    slot_ids: list[int] | None = None,
) -> dict[str, torch.Tensor]:
    """Reference render of all cameras and slots. Returns CPU tensors: rgb_float (T,N,H,W,3) float in
    [0,255], rgb uint8, mask bool, depth (dtype), object_mask int16 (N = 1 for mode 'objects').
    ``objects`` holds every object's world-space points (object id per point); None if no objects.
    ``slots`` are all the scene's slots (the GEN3C normaliser groups views over them); ``slot_ids`` picks
    the ones to render (default all).
    """
    scene_fp = Footprint(size=footprint)
    obj_fp = object_footprint(object_radius_px)
    has_obj = objects is not None and len(objects.points) > 0
    T = len(w2cs)
    zmax = None
    if mode in ("fused", "scene") and splat == "gen3c":
        zmax = normaliser_groups(
            torch.tensor([[view_zmax(s, w2cs[t], Ks[t], dtype) for s in slots] for t in range(T)])
        )
    ids = list(range(len(slots))) if slot_ids is None else list(slot_ids)
    zmax = None if zmax is None else zmax[:, ids]
    slots = [slots[i] for i in ids]
    n_slots = 1 if mode == "objects" else len(slots)
    rgb = torch.zeros(T, n_slots, H, W, 3, dtype=dtype)
    depth = torch.zeros(T, n_slots, H, W, dtype=dtype)
    mask = torch.zeros(T, n_slots, H, W, dtype=torch.bool)
    oid = torch.full((T, n_slots, H, W), -1, dtype=torch.int64)
    for t in range(T):
        w2c, K = w2cs[t], Ks[t]
        obj_layer = None
        if has_obj and mode in ("fused", "objects"):
            win, oz = zbuffer_view([(objects, obj_fp)], w2c, K, H, W, dtype)
            orgb, ooid = _lookup([objects], win)
            obj_layer = (win >= 0, orgb, oz, ooid)
        for n in range(n_slots):
            if mode == "objects":
                s_valid = torch.zeros(H, W, dtype=torch.bool)
                s_rgb, s_z, s_oid = (
                    torch.zeros(H, W, 3, dtype=dtype),
                    torch.zeros(H, W, dtype=dtype),
                    oid[t, n],
                )
            elif mode == "full":  # one z-buffer: object points first (lower indices win exact ties)
                clouds = ([(objects, obj_fp)] if has_obj else []) + [(slots[n], scene_fp)]
                win, s_z = zbuffer_view(clouds, w2c, K, H, W, dtype)
                s_rgb, s_oid = _lookup([c for c, _ in clouds], win)
                s_valid = win >= 0
            elif splat == "gen3c":
                s_rgb, s_z, s_valid = gen3c_view(slots[n], w2c, K, H, W, dtype, float(zmax[t, n]))
                s_oid = torch.full((H, W), -1, dtype=torch.int64)
            else:
                win, s_z = zbuffer_view([(slots[n], scene_fp)], w2c, K, H, W, dtype)
                s_rgb, s_oid = _lookup([slots[n]], win)
                s_valid = win >= 0
            if obj_layer is not None:
                o_valid, o_rgb, o_z, o_oid = obj_layer
                take = o_valid & (~s_valid | (o_z <= s_z))  # ties go to the object
                s_rgb = torch.where(take[..., None], o_rgb, s_rgb)
                s_z = torch.where(take, o_z, s_z)
                s_oid = torch.where(take, o_oid, s_oid)
                s_valid = s_valid | o_valid
            rgb[t, n], depth[t, n], mask[t, n] = s_rgb, s_z, s_valid
            oid[t, n] = torch.where(s_valid, s_oid, -1)
    rgb = torch.where(mask[..., None], rgb, 0.0)
    return {
        "rgb_float": rgb,
        "rgb": torch.floor(rgb + 0.5).to(torch.uint8),
        "mask": mask,
        "depth": torch.where(mask, depth, 0.0),
        "object_mask": oid.to(torch.int16),
    }
