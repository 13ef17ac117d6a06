"""Object placement: stand an object upright on the support plane under an anchor pixel.

1. Scene points seen around the anchor pixel (a square window in the seed view; in a multi-view scene
   the points of every source view, nearest per pixel, so the other views fill the seed's gaps) -> Open3D
   ``segment_plane`` (RANSAC, seeded) -> plane n.x + d = 0 with n towards the camera ("up").
2. The anchor pixel's ray meets the plane at the anchor point A.
3. The object's ``up_axis`` (object frame, default +y as in glTF) is turned onto n, its front
   (+z, or +y for z-up objects) towards the camera; its size is, in order of precedence: ``height``
   scene units tall; ``scale`` scene units per object unit (real size: a metric object in a metric scene,
   e.g. 1.0 for metres in metres); else the size heuristic: the longest side of its bounding box becomes
   ``DEFAULT_SIZE_FRACTION`` (7.5 %) of the camera depth of A (a 0.30 m shoe seen from 4 m), a hand-held
   object's size at that distance, whatever units it came in. It is moved so the centre of its footprint
   sits at A with its lowest point on the plane.
Errors (``ValueError``) name the argument: no points near the anchor, no plane, ray misses the plane.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from . import validate as V

if TYPE_CHECKING:
    from .scene import Scene

DEFAULT_SIZE_FRACTION = 0.075  # longest side / camera depth of the anchor when the size is unknown
_AXES = {
    "+x": (1, 0, 0),
    "-x": (-1, 0, 0),
    "+y": (0, 1, 0),
    "-y": (0, -1, 0),
    "+z": (0, 0, 1),
    "-z": (0, 0, -1),
}


def default_anchor(height: int, width: int) -> tuple[int, int]:
    """Horizontally centred, two thirds down the image: (u, v) pixels."""
    return width // 2, (2 * height) // 3


def place_object(
    scene: Scene,
    oid: int,
    anchor_px: Any = None,
    height: float | None = None,
    up_axis: str = "+y",
    scale: float | None = None,
    window_px: int | None = None,
    plane_tolerance: float = 0.01,
    min_inlier_fraction: float = 0.3,
    camera: tuple[Any, Any, int, int] | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Compute, apply and return the object's (4,4) float64 transform (rotation * uniform scale, translation).

    ``camera`` (K, w2c, height, width) is needed for scenes without a seed view (``Scene.from_points``).
    ``window_px``: half-size of the pixel window for plane fitting (default 8% of the shorter side, >= 8).
    ``plane_tolerance``: RANSAC inlier distance as a fraction of the median depth of the window points.
    """
    if up_axis not in _AXES:
        raise ValueError(f"up_axis: expected one of {sorted(_AXES)}, got {up_axis!r}")
    if camera is None:
        camera = scene.seed_camera
        if camera is None:
            raise ValueError("camera: scene has no seed view (built from points); pass camera=(K, w2c, H, W)")
    K = V.intrinsics(camera[0], "camera K")
    w2c = V.rigid(camera[1], "camera w2c")
    H, W = V.image_size(int(camera[2]), int(camera[3]))
    u, v = _anchor(anchor_px, H, W)
    half = int(window_px) if window_px is not None else max(8, int(0.08 * min(H, W)))
    if half <= 0:
        raise ValueError(f"window_px: must be > 0, got {window_px!r}")
    pts, zs = _window_points(scene, K, w2c, H, W, u, v, half)
    solid = zs < 0.999 * scene.max_depth  # sky / invalid depth sits at max_depth: never a support
    pts, zs = pts[solid], zs[solid]
    if len(pts) < 30:
        raise ValueError(
            f"anchor_px: only {len(pts)} scene points near the anchor ({u:.1f}, {v:.1f}); no plane found"
        )
    n, d, inliers = _fit_plane(pts, plane_tolerance * float(np.median(zs)), seed)
    if inliers < max(30, min_inlier_fraction * len(pts)):
        raise ValueError(
            f"anchor_px: no plane found near the anchor ({inliers}/{len(pts)} points on the best plane)"
        )
    R_wc, C = w2c[:3, :3].T, -w2c[:3, :3].T @ w2c[:3, 3]  # camera->world rotation, camera centre
    if n @ C + d < 0:
        n, d = -n, -d
    ray = R_wc @ np.linalg.solve(K, np.array([u, v, 1.0]))
    ray /= np.linalg.norm(ray)
    denom = n @ ray
    if abs(denom) < 0.05:
        raise ValueError("anchor_px: the anchor ray grazes the plane (view too oblique to place the object)")
    t = -(n @ C + d) / denom
    if t <= 0:
        raise ValueError("anchor_px: the anchor ray does not hit the plane in front of the camera")
    A = C + t * ray
    anchor_depth = float((w2c[:3, :3] @ A + w2c[:3, 3])[2])
    if height is not None:
        size = ("height", V.positive(height, "height"))
    elif scale is not None:
        size = ("scale", V.positive(scale, "scale"))
    else:
        size = ("longest", DEFAULT_SIZE_FRACTION * anchor_depth)
    T = _stand(scene, oid, n, C - A, A, size, np.array(_AXES[up_axis], np.float64))
    scene.set_transform(oid, T)
    return T


def _anchor(anchor_px, H: int, W: int) -> tuple[float, float]:
    if anchor_px is None:
        return tuple(float(x) for x in default_anchor(H, W))
    a = V.to_numpy(anchor_px, "anchor_px").astype(np.float64).reshape(-1)
    if a.shape != (2,) or not np.isfinite(a).all():
        raise ValueError(f"anchor_px: expected finite (u, v), got {anchor_px!r}")
    if not (0 <= a[0] <= W - 1 and 0 <= a[1] <= H - 1):
        raise ValueError(f"anchor_px: ({a[0]}, {a[1]}) is outside the {W}x{H} image")
    return float(a[0]), float(a[1])


def _window_points(scene: Scene, K, w2c, H, W, u, v, half):
    """World points (n,3) visible inside the window and their camera depths, from the support slots
    (the seed view; every source view of a multi-view scene: the nearest point per pixel wins)."""
    slots = scene.support_slots
    pts = np.concatenate([scene.slot_points(i, valid_only=False)[0] for i in slots]).astype(np.float64)
    valid = np.concatenate([scene.slot_valid(i) for i in slots])
    cam = pts @ w2c[:3, :3].T + w2c[:3, 3]
    z = cam[:, 2]
    front = valid & (z > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        pu = (cam @ K.T)[:, 0] / z
        pv = (cam @ K.T)[:, 1] / z
    px, py = np.floor(pu + 0.5), np.floor(pv + 0.5)
    inside = front & (np.abs(px - round(u)) <= half) & (np.abs(py - round(v)) <= half)
    inside &= (px >= 0) & (px < W) & (py >= 0) & (py < H)
    idx = np.nonzero(inside)[0]
    if len(idx) == 0:
        return np.zeros((0, 3)), np.zeros(0)
    # keep the nearest point per pixel (what the camera sees)
    pix = (py[idx] * W + px[idx]).astype(np.int64)
    order = np.lexsort((z[idx], pix))
    first = np.ones(len(order), bool)
    first[1:] = pix[order][1:] != pix[order][:-1]
    keep = idx[order[first]]
    return pts[keep], z[keep]


def _fit_plane(pts: np.ndarray, tol: float, seed: int):
    try:
        import open3d as o3d
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ValueError(f"anchor_px: placement needs open3d ({exc})") from exc
    pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(pts))
    o3d.utility.random.seed(seed)  # Open3D's RANSAC draws from its own global generator
    model, inl = pc.segment_plane(distance_threshold=max(tol, 1e-9), ransac_n=3, num_iterations=1000)
    n = np.asarray(model[:3], np.float64)
    norm = np.linalg.norm(n)
    if norm == 0:
        raise ValueError("anchor_px: no plane found near the anchor (degenerate fit)")
    return n / norm, float(model[3]) / norm, len(inl)


def _stand(scene: Scene, oid: int, up_w, to_cam, A, size: tuple[str, float], up_l) -> np.ndarray:
    """size: ("height", scene units) | ("scale", factor) | ("longest", scene units of the longest side)."""
    pts, _ = scene.object_points(oid, world=False)
    p = pts.astype(np.float64)
    front_l = np.array([0.0, 0.0, 1.0]) if abs(up_l[2]) < 0.5 else np.array([0.0, 1.0, 0.0])
    right_l = np.cross(up_l, front_l)
    front_w = to_cam - (to_cam @ up_w) * up_w
    if np.linalg.norm(front_w) < 1e-9:  # camera straight above: any horizontal direction
        front_w = np.cross(up_w, [1.0, 0.0, 0.0] if abs(up_w[0]) < 0.9 else [0.0, 0.0, 1.0])
    front_w /= np.linalg.norm(front_w)
    right_w = np.cross(up_w, front_w)
    R = np.stack([right_w, up_w, front_w], 1) @ np.stack([right_l, up_l, front_l], 1).T
    along_up = p @ up_l
    extent = along_up.max() - along_up.min()
    if extent <= 0:
        raise ValueError(f"oid: object {oid} has zero height along its up axis")
    pr, pf = p @ right_l, p @ front_l
    kind, value = size
    if kind == "height":
        s = value / extent
    elif kind == "scale":
        s = value
    else:
        s = value / max(extent, np.ptp(pr), np.ptp(pf))
    if not 1e-9 <= s <= 1e9:  # beyond this the transform check reads the rotation block as degenerate
        raise ValueError(
            f"object_id: object {oid} is {extent:.3g} units tall; placing it at {kind} {value:.3g} needs a scale of "
            f"{s:.3g}, outside [1e-9, 1e9] (rescale the object, e.g. export it in metres)"
        )
    c_l = (
        0.5 * (pr.max() + pr.min()) * right_l + along_up.min() * up_l + 0.5 * (pf.max() + pf.min()) * front_l
    )
    T = np.eye(4)
    T[:3, :3] = s * R
    T[:3, 3] = A - s * R @ c_l
    return T
