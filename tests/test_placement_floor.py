"""Scene.place_object on a synthetic floor (RGB-D of a plane seen from a camera 1.5 units above it)."""

from __future__ import annotations

import numpy as np
import pytest

from objvid.cache import Scene

H, W = 48, 64
K = np.array([[50.0, 0, W / 2], [0, 50.0, H / 2], [0, 0, 1]])
FLOOR_Y = 1.5  # OpenCV: y points down, so the floor is at +1.5 below the camera


def floor_depth(tilt=0.25):
    """Camera pitched down by ``tilt`` rad. The seed camera is the world frame (w2c = I), so the floor
    is a tilted plane in it; sky pixels get depth inf (-> 100, GEN3C's sky)."""
    c, s = np.cos(tilt), np.sin(tilt)
    R = np.array([[1, 0, 0], [0, c, s], [0, -s, c]])  # camera->level frame (camera pitched down)
    v, u = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
    rays = np.stack([u, v, np.ones_like(u)], -1) @ np.linalg.inv(K).T  # camera rays, z = 1
    level = rays @ R.T
    with np.errstate(divide="ignore"):
        t = FLOOR_Y / level[..., 1]
    depth = np.where(t > 0, t, np.inf)  # z-depth because rays have z = 1
    return depth.astype(np.float32), R


def cube(n=12):
    a = np.linspace(-0.5, 0.5, n)
    X, Y, Z = np.meshgrid(a, a, a, indexing="ij")
    pts = np.stack([X.ravel(), Y.ravel() + 0.5, Z.ravel()], 1).astype(np.float32)  # y in [0, 1]: +y up
    return pts, np.full((len(pts), 3), 200, np.uint8)


@pytest.fixture
def floor_scene():
    depth, R = floor_depth()
    img = np.full((H, W, 3), 120, np.uint8)
    return Scene.from_rgbd(img, depth, K), R


def test_object_stands_on_the_floor(floor_scene):
    scene, R = floor_scene
    pts, col = cube()
    oid = scene.add_object(pts, col)
    T = scene.place_object(oid, anchor_px=(40, 36), height=0.5)
    assert T.shape == (4, 4) and np.allclose(scene.get_transform(oid), T)
    world, _ = scene.object_points(oid)
    level = world.astype(np.float64) @ R.T  # into the level frame where the floor is y = 1.5
    np.testing.assert_allclose(level[:, 1].max(), FLOOR_Y, atol=0.02)  # lowest point on the floor
    np.testing.assert_allclose(level[:, 1].max() - level[:, 1].min(), 0.5, rtol=0.02)  # upright, 0.5 tall
    # centred on the anchor pixel's floor point
    ray = np.linalg.solve(K, [40.0, 36.0, 1.0]) @ R.T
    anchor = ray * FLOOR_Y / ray[1]
    base = level[level[:, 1] > FLOOR_Y - 0.01]
    np.testing.assert_allclose(base[:, [0, 2]].mean(0), anchor[[0, 2]], atol=0.03)
    # it renders in front of the floor at the anchor
    out = scene.render(np.eye(4), K, H, W, mode="fused")
    assert out.object_mask[0, 0, 30, 40] == oid


def test_default_anchor_and_height(floor_scene):
    scene, R = floor_scene
    pts, col = cube()
    oid = scene.add_object(pts, col)
    flat = pts * np.array([1.0, 0.25, 0.5], np.float32)  # a box 4x longer than tall, 2x than deep
    oid = scene.add_object(flat, col)
    scene.place_object(oid)  # anchor (W/2, 2H/3), longest side 7.5 % of the anchor depth
    world, _ = scene.object_points(oid)
    level = world.astype(np.float64) @ R.T
    ray = np.linalg.solve(K, [W // 2, 2 * H // 3, 1.0])
    anchor_depth = (ray * FLOOR_Y / (ray @ R.T)[1])[2]
    extent = level.max(0) - level.min(0)
    np.testing.assert_allclose(extent.max(), 0.075 * anchor_depth, rtol=0.02)
    np.testing.assert_allclose(extent[1], 0.25 * 0.075 * anchor_depth, rtol=0.03)  # height along "up"
    # real size: scale 1 keeps the object's own extent (a metric object in a metric scene)
    own = flat.max(0) - flat.min(0)
    scene.place_object(oid, scale=1.0)
    world, _ = scene.object_points(oid)
    np.testing.assert_allclose(np.sort((world.astype(np.float64) @ R.T).ptp(0)), np.sort(own), rtol=1e-3)
    scene.place_object(oid, scale=0.01, height=0.5)  # an explicit height wins
    world, _ = scene.object_points(oid)
    np.testing.assert_allclose((world.astype(np.float64) @ R.T)[:, 1].ptp(), 0.5, rtol=1e-3)
    with pytest.raises(ValueError, match="^scale"):
        scene.place_object(oid, scale=0.0)


def test_placement_errors(floor_scene):
    scene, _ = floor_scene
    pts, col = cube()
    oid = scene.add_object(pts, col)
    with pytest.raises(ValueError, match="^anchor_px"):
        scene.place_object(oid, anchor_px=(W // 2, 2))  # sky: no points near the anchor
    with pytest.raises(ValueError, match="^anchor_px"):
        scene.place_object(oid, anchor_px=(W + 5, 10))
    with pytest.raises(ValueError, match="^height"):
        scene.place_object(oid, height=-1)
    with pytest.raises(ValueError, match="^up_axis"):
        scene.place_object(oid, up_axis="up")
    rng = np.random.default_rng(0)
    noise = Scene.from_rgbd(np.zeros((H, W, 3), np.uint8), rng.uniform(1, 10, (H, W)).astype(np.float32), K)
    noise.add_object(pts, col)
    with pytest.raises(ValueError, match="no plane"):
        noise.place_object(0)
    cloud = Scene.from_points(pts, col)
    cloud.add_object(pts, col)
    with pytest.raises(ValueError, match="^camera"):
        cloud.place_object(0)


def test_point_scene_with_explicit_camera(floor_scene):
    scene, R = floor_scene
    pts_scene, col_scene = scene.slot_points()
    cloud = Scene.from_points(pts_scene, col_scene)
    pts, col = cube()
    oid = cloud.add_object(pts, col)
    T = cloud.place_object(oid, anchor_px=(32, 40), height=0.3, camera=(K, np.eye(4), H, W))
    assert np.isclose(np.cbrt(np.linalg.det(T[:3, :3])), 0.3, rtol=1e-6)
