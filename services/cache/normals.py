"""Point normals for back-face culling of object points.

Object points are drawn as small discs in a z-buffer; where the front surface's discs leave a pixel
uncovered, a point of the object's far side wins it and shows as a wrong-colour speck that shimmers as the
camera moves. Culling points whose normal faces away from the camera (``n . (C - p) < 0``) removes them.

Sources: the sampled face's normal for meshes (``io.load_object(with_normals=True)``) or a PLY cloud's
nx/ny/nz; the cache service culls those. ``estimate`` (opt-in, ``add_object(normals="estimate")``): Open3D's
PCA normals over the 16 nearest neighbours, oriented away from the cloud's centroid where the normal clearly
points along the centroid direction (|cos| >= ``MIN_ORIENT_COS``), zero (never culled) elsewhere and for flat
clouds. Measured on the demo sneaker it does more harm than good (concave and thin parts get flipped normals;
docs/renderer.md), so it is not used by default. A zero normal always means "not culled".
"""

from __future__ import annotations

import numpy as np

KNN = 16
MIN_ORIENT_COS = 0.3


def estimate(points: np.ndarray) -> np.ndarray:
    """(M,3) points -> (M,3) float32 unit normals oriented outwards, zero where the orientation is unsure."""
    import open3d as o3d

    pts = np.asarray(points, np.float64)
    if len(pts) < 4:
        return np.zeros((len(pts), 3), np.float32)
    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(pts))
    pcd.estimate_normals(o3d.geometry.KDTreeSearchParamKNN(knn=min(KNN, len(pts) - 1)))
    n = np.asarray(pcd.normals, np.float64)
    out = pts - pts.mean(axis=0)
    dist = np.linalg.norm(out, axis=1)
    cos = np.einsum("ij,ij->i", n, out) / np.maximum(dist, 1e-12)
    n = np.where(cos[:, None] < 0, -n, n)
    n[np.abs(cos) < MIN_ORIENT_COS] = 0.0
    return n.astype(np.float32)


def check(normals, n: int, name: str = "normals") -> np.ndarray:
    """(n,3) finite float32 normals (rows normalised, zero rows kept) or ValueError naming ``name``."""
    a = np.asarray(normals, np.float64)
    if a.shape != (n, 3):
        raise ValueError(f"{name}: expected shape ({n}, 3), got {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name}: non-finite values")
    length = np.linalg.norm(a, axis=1, keepdims=True)
    return np.where(length > 0, a / np.where(length > 0, length, 1), 0.0).astype(np.float32)
