"""objvid.cache Scene + renderers on the CPU: exactness, analytic scenes, modes, slots, persistence."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from objvid.cache import ObjectNotFoundError, RenderOutput, Scene

H, W = 24, 32
K = np.array([[28.0, 0, W / 2], [0, 28.0, H / 2], [0, 0, 1]])


def pose(R=None, t=(0, 0, 0)) -> np.ndarray:
    T = np.eye(4)
    if R is not None:
        T[:3, :3] = R
    T[:3, 3] = t
    return T


def rot_y(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def rot_x(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


@pytest.fixture
def rgbd():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    depth = rng.uniform(1.0, 6.0, (H, W)).astype(np.float32)
    depth[4:12, 6:15] = 1.3  # a near block: strong soft-z-buffer contrast at its edges
    return img, depth


# ----------------------------------------------------------------------------- exactness
@pytest.mark.parametrize("splat,footprint", [("gen3c", 2), ("zbuffer", 1), ("zbuffer", 2)])
@pytest.mark.parametrize("seed_w2c", [None, pose(rot_y(0.3) @ rot_x(-0.2), (0.4, -0.1, 0.7))])
def test_identity_camera_reproduces_input(rgbd, splat, footprint, seed_w2c):
    img, depth = rgbd
    scene = Scene.from_rgbd(img, depth, K, w2c=seed_w2c)
    cam = np.eye(4) if seed_w2c is None else seed_w2c
    out = scene.render(cam, K, H, W, mode="scene", splat=splat, footprint=footprint)
    assert out.rgb.shape == (1, 1, H, W, 3) and out.rgb.dtype == torch.uint8
    assert out.mask.all()
    np.testing.assert_array_equal(out.rgb[0, 0].numpy(), img)
    np.testing.assert_allclose(out.depth[0, 0].numpy(), depth, rtol=2e-6)
    assert (out.object_mask == -1).all()


def test_reference_backend_identity(rgbd):
    img, depth = rgbd
    scene = Scene.from_rgbd(img, depth, K)
    for splat in ("gen3c", "zbuffer"):
        out = scene.render(np.eye(4), K, H, W, mode="scene", splat=splat, backend="reference")
        np.testing.assert_array_equal(out.rgb[0, 0].numpy(), img)


# ----------------------------------------------------------------------------- analytic scenes
def plane_scene(z0=4.0, slope=0.0, h=H, w=W, k=K):
    """Plane z = z0 + slope * y (world = input camera), seen from the identity camera."""
    v = np.arange(h, dtype=np.float64)[:, None].repeat(w, 1)
    z = z0 / (1 - slope * (v - k[1, 2]) / k[1, 1])
    img = np.full((h, w, 3), 128, np.uint8)
    return Scene.from_rgbd(img, z.astype(np.float32), k), z


def plane_depth(w2c, z0, slope, h=H, w=W, k=K):
    """Analytic target depth of the plane n.X = z0 (n = (0, -slope, 1)) for every pixel of a camera."""
    c2w = np.linalg.inv(w2c)
    v, u = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    rays_c = np.stack([u, v, np.ones_like(u)], -1) @ np.linalg.inv(k).T  # z-component 1
    rays_w = rays_c @ c2w[:3, :3].T
    n = np.array([0.0, -slope, 1.0])
    t = (z0 - n @ c2w[:3, 3]) / (rays_w @ n)
    return t  # camera z, since rays_c has z = 1


@pytest.mark.parametrize("splat", ["gen3c", "zbuffer"])
def test_fronto_parallel_plane_translations(splat):
    scene, _ = plane_scene(4.0)
    # forward by 1: depth 3 everywhere covered; the plane now overfills the view -> full coverage
    out = scene.render(pose(t=(0, 0, -1.0)), K, H, W, mode="scene", splat=splat)
    assert out.mask[0, 0, 2:-2, 2:-2].all()
    np.testing.assert_allclose(out.depth[0, 0][out.mask[0, 0]].numpy(), 3.0, rtol=1e-5)
    # sideways: camera moves +0.5 in x -> image content shifts left by fx*0.5/4 = 3.5 px
    out = scene.render(pose(t=(-0.5, 0, 0)), K, H, W, mode="scene", splat=splat)
    m = out.mask[0, 0].numpy()
    assert m[:, : W - 5].all() and not m[:, W - 3 :].any()
    np.testing.assert_allclose(out.depth[0, 0].numpy()[m], 4.0, rtol=1e-5)


@pytest.mark.parametrize("splat", ["gen3c", "zbuffer"])
def test_tilted_plane_from_moved_camera(splat):
    z0, slope = 4.0, 0.25
    scene, _ = plane_scene(z0, slope)
    w2c = pose(rot_y(0.08) @ rot_x(0.05), (0.2, -0.1, 0.3))
    out = scene.render(w2c, K, H, W, mode="scene", splat=splat)
    truth = plane_depth(w2c, z0, slope)
    # where the plane point of each target pixel falls in the source image (identity camera)
    c2w = np.linalg.inv(w2c)
    v, u = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
    cam = (np.stack([u, v, np.ones_like(u)], -1) @ np.linalg.inv(K).T) * truth[..., None]
    src = (cam @ c2w[:3, :3].T + c2w[:3, 3]) @ K.T
    su, sv = src[..., 0] / src[..., 2], src[..., 1] / src[..., 2]
    inside = (su > 1) & (su < W - 2) & (sv > 1) & (sv < H - 2)
    outside = (su < -1.5) | (su > W + 0.5) | (sv < -1.5) | (sv > H + 0.5)
    m = out.mask[0, 0].numpy()
    assert inside.sum() > 0.5 * H * W and m[inside].all() and not m[outside].any()
    err = np.abs(out.depth[0, 0].numpy() - truth) / truth
    assert np.median(err[inside]) < 0.01 and err[inside].max() < 0.05


def box_points(lo, hi, step):
    """Points on the 6 faces of an axis-aligned box, spaced ``step``."""
    faces = []
    axes = [np.arange(lo[i], hi[i] + 1e-9, step) for i in range(3)]
    for a in range(3):
        b, c = [i for i in range(3) if i != a]
        B, C = np.meshgrid(axes[b], axes[c], indexing="ij")
        for val in (lo[a], hi[a]):
            p = np.zeros((B.size, 3))
            p[:, a], p[:, b], p[:, c] = val, B.ravel(), C.ravel()
            faces.append(p)
    return np.concatenate(faces).astype(np.float32)


def box_depth(w2c, lo, hi, h=H, w=W, k=K):
    """Analytic camera z of the nearest box hit per pixel (inf = miss); slab method."""
    c2w = np.linalg.inv(w2c)
    v, u = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    d = (np.stack([u, v, np.ones_like(u)], -1) @ np.linalg.inv(k).T) @ c2w[:3, :3].T
    o = c2w[:3, 3]
    with np.errstate(divide="ignore", invalid="ignore"):
        t1, t2 = (np.array(lo) - o) / d, (np.array(hi) - o) / d
    tmin = np.minimum(t1, t2).max(-1)
    tmax = np.maximum(t1, t2).min(-1)
    return np.where((tmax >= tmin) & (tmin > 0), tmin, np.inf)


def test_box_from_moved_camera_zbuffer():
    lo, hi = (-0.6, -0.5, 3.0), (0.6, 0.5, 4.0)
    pts = box_points(lo, hi, 0.02)
    scene = Scene.from_points(pts, np.full_like(pts, 0.5))
    w2c = pose(rot_y(-0.35) @ rot_x(0.2), (0.8, 0.2, 0.6))
    out = scene.render(w2c, K, H, W, mode="scene", splat="zbuffer", footprint=2)
    truth = box_depth(w2c, lo, hi)
    hit = np.isfinite(truth)
    m = out.mask[0, 0].numpy()
    assert hit.sum() > 50
    assert m[hit].mean() > 0.95  # coverage of the silhouette
    grown = hit.copy()
    grown[1:] |= hit[:-1]
    grown[:-1] |= hit[1:]
    grown[:, 1:] |= grown[:, :-1].copy()
    grown[:, :-1] |= grown[:, 1:].copy()
    assert not (m & ~grown).any()  # nothing outside the silhouette (+1 px)
    both = m & hit
    rel = np.abs(out.depth[0, 0].numpy()[both] - truth[both]) / truth[both]
    assert np.median(rel) < 0.03  # nearest of the ~4 points within 1 px: biased towards the camera


# ----------------------------------------------------------------------------- modes
def flat_patch(z, half=0.3, step=0.02, color=(255, 0, 0)):
    a = np.arange(-half, half + 1e-9, step)
    X, Y = np.meshgrid(a, a)
    pts = np.stack([X.ravel(), Y.ravel(), np.full(X.size, z)], 1).astype(np.float32)
    return pts, np.tile(np.array(color, np.uint8), (len(pts), 1))


@pytest.fixture
def step_scene():
    """Background: left half at z=2, right half at z=6 (grey levels 50 / 90)."""
    depth = np.full((H, W), 6.0, np.float32)
    depth[:, : W // 2] = 2.0
    img = np.full((H, W, 3), 90, np.uint8)
    img[:, : W // 2] = 50
    return Scene.from_rgbd(img, depth, K)


@pytest.mark.parametrize("mode,splat", [("fused", "gen3c"), ("fused", "zbuffer"), ("full", "zbuffer")])
def test_object_in_front_behind_and_partly_occluded(step_scene, mode, splat):
    patch, col = flat_patch(0.0, half=0.8)
    oid = step_scene.add_object(patch, col, pose(t=(0, 0, 4.0)))  # between the two halves
    out = step_scene.render(np.eye(4), K, H, W, mode=mode, splat=splat)
    om = out.object_mask[0, 0].numpy()
    cols = np.nonzero((om == oid).any(0))[0]
    assert len(cols) > 0 and cols.min() >= W // 2  # occluded by the near left half, visible on the right
    r, c = np.nonzero(om == oid)
    assert (out.rgb[0, 0].numpy()[r, c] == [255, 0, 0]).all()
    np.testing.assert_allclose(out.depth[0, 0].numpy()[r, c], 4.0, rtol=1e-6)
    # behind everything: invisible
    step_scene.set_transform(oid, pose(t=(0, 0, 9.0)))
    out = step_scene.render(np.eye(4), K, H, W, mode=mode, splat=splat)
    assert (out.object_mask == -1).all()
    # in front of everything: the whole patch shows
    step_scene.set_transform(oid, pose(t=(0, 0, 1.0)))
    out = step_scene.render(np.eye(4), K, H, W, mode=mode, splat=splat)
    assert (out.object_mask[0, 0] == oid).sum() > 0.5 * H * W


@pytest.mark.parametrize("mode", ["fused", "full"])
def test_depth_ties_go_to_the_object(step_scene, mode):
    patch, col = flat_patch(0.0, half=3.5, step=0.1)
    oid = step_scene.add_object(patch, col, pose(t=(0, 0, 6.0)))  # exactly on the far half's depth
    out = step_scene.render(np.eye(4), K, H, W, mode=mode, splat="zbuffer", footprint=1, object_radius_px=0.5)
    right = out.object_mask[0, 0, 8:16, W // 2 + 2 : W - 2]
    assert (right == oid).all()


def test_modes_scene_and_objects(step_scene):
    patch, col = flat_patch(0.0)
    oid = step_scene.add_object(patch, col, pose(t=(0, 0, 1.0)))
    scene_only = step_scene.render(np.eye(4), K, H, W, mode="scene")
    assert (scene_only.object_mask == -1).all() and scene_only.mask.all()
    objs = step_scene.render(np.eye(4), K, H, W, mode="objects")
    assert objs.rgb.shape == (1, 1, H, W, 3)
    assert objs.mask.any() and not objs.mask.all()
    assert ((objs.object_mask == oid) == objs.mask).all()
    assert (objs.rgb[~objs.mask] == 0).all() and (objs.depth[~objs.mask] == 0).all()


@pytest.mark.parametrize("backend", ["torch", "reference"])
def test_objects_mode_without_objects_is_all_holes(step_scene, backend):
    outs = ("rgb", "mask", "depth", "object_mask", "rgb_float")
    out = step_scene.render(np.eye(4), K, H, W, mode="objects", outputs=outs, backend=backend)
    assert out.rgb.shape == (1, 1, H, W, 3) and not out.mask.any()
    assert (out.rgb == 0).all() and (out.rgb_float == 0).all() and (out.depth == 0).all()
    assert (out.object_mask == -1).all()


def test_object_scale_and_removal(step_scene):
    patch, col = flat_patch(0.0, half=0.1)
    a = step_scene.add_object(patch, col, pose(t=(0, 0, 1.0)))
    small = step_scene.render(np.eye(4), K, H, W, mode="objects").mask.sum()
    big_T = pose(t=(0, 0, 1.0))
    big_T[:3, :3] *= 2.0
    step_scene.set_transform(a, big_T)
    big = step_scene.render(np.eye(4), K, H, W, mode="objects").mask.sum()
    assert big > 3 * small
    b = step_scene.add_object(patch, col)
    step_scene.remove_object(a)
    c = step_scene.add_object(patch, col)
    assert (a, b, c) == (0, 1, 2) and step_scene.object_ids == [1, 2]
    with pytest.raises(ObjectNotFoundError, match="oid"):
        step_scene.remove_object(a)
    with pytest.raises(ValueError, match="oid"):
        step_scene.set_transform(7, np.eye(4))
    np.testing.assert_array_equal(step_scene.get_transform(b), np.eye(4))


# ----------------------------------------------------------------------------- buffer slots
def test_two_buffer_slots_policy(rgbd):
    img, depth = rgbd
    scene = Scene.from_rgbd(img, depth, K)
    assert scene.num_slots == 1 and scene.seed_camera[2:] == (H, W)
    img2 = np.full_like(img, 7)
    cam2 = pose(t=(0.1, 0, 0))
    scene.add_view(img2, depth, K, cam2)
    assert scene.num_slots == 2
    out = scene.render(np.stack([np.eye(4), cam2]), K, H, W, mode="scene", splat="zbuffer")
    assert out.rgb.shape == (2, 2, H, W, 3)
    np.testing.assert_array_equal(out.rgb[1, 0].numpy(), img2)  # slot 0 = newest, at its own camera
    np.testing.assert_array_equal(out.rgb[0, 1].numpy(), img)  # seed kept in the last slot
    img3 = np.full_like(img, 200)
    scene.add_view(img3, depth, K, cam2)  # replaces slot 0, seed stays
    assert scene.num_slots == 2
    out = scene.render(np.stack([np.eye(4), cam2]), K, H, W, mode="fused")
    np.testing.assert_array_equal(out.rgb[1, 0].numpy(), img3)
    np.testing.assert_array_equal(out.rgb[0, 1].numpy(), img)
    assert scene.seed_camera is not None and np.allclose(scene.seed_camera[1], np.eye(4))


def test_fused_applies_per_slot(rgbd):
    img, depth = rgbd
    scene = Scene.from_rgbd(img, depth, K)
    scene.add_view(img, depth + 10.0, K, np.eye(4))
    patch, col = flat_patch(0.0, half=0.2)
    oid = scene.add_object(patch, col, pose(t=(0, 0, 8.0)))  # behind slot 1 (seed), in front of slot 0
    out = scene.render(np.eye(4), K, H, W, mode="fused", splat="zbuffer")
    assert (out.object_mask[0, 0] == oid).any()
    assert not (out.object_mask[0, 1] == oid).any()


# ----------------------------------------------------------------------------- determinism, persistence
def test_determinism_and_state_dict_roundtrip(rgbd, tmp_path):
    img, depth = rgbd
    scene = Scene.from_rgbd(img, depth, K, filter_points_threshold=0.05)
    patch, col = flat_patch(0.0)
    scene.add_object(patch, col, pose(t=(0.1, 0, 2.0)))
    scene.add_view(img[::-1].copy(), depth, K, pose(t=(0.05, 0, 0)))
    cams = np.stack([pose(rot_y(0.05 * i), (0.05 * i, 0, 0.1 * i)) for i in range(3)])
    a = scene.render(cams, K, H, W)
    b = scene.render(cams, K, H, W)
    for f in ("rgb", "mask", "depth", "object_mask"):
        assert torch.equal(getattr(a, f), getattr(b, f))
    buf = io.BytesIO()
    torch.save(scene.state_dict(), buf)
    buf.seek(0)
    restored = Scene.from_state_dict(torch.load(buf, weights_only=True), device="cpu")
    c = restored.render(cams, K, H, W)
    for f in ("rgb", "mask", "depth", "object_mask"):
        assert torch.equal(getattr(a, f), getattr(c, f))
    assert restored.object_ids == scene.object_ids and restored.num_slots == 2
    assert restored.add_object(patch, col) == 1
    assert restored.device_bytes() > scene.device_bytes()


def test_properties_and_export_ply(rgbd):
    img, depth = rgbd
    scene = Scene.from_rgbd(img, depth, K)
    assert scene.num_points == H * W and scene.num_objects == 0 and scene.device == torch.device("cpu")
    assert scene.device_bytes() == H * W * 16
    patch, col = flat_patch(0.0)
    scene.add_object(patch, col, pose(t=(0, 0, 2.0)))
    data = scene.export_ply()
    assert data.startswith(b"ply\nformat binary_little_endian 1.0\n")
    n = H * W + len(patch)
    assert f"element vertex {n}\n".encode() in data
    body = data[data.index(b"end_header\n") + len(b"end_header\n") :]
    assert len(body) == n * 15
    rec = np.frombuffer(body, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("c", "u1", (3,))])
    np.testing.assert_allclose(rec["z"][-len(patch) :], 2.0)
    assert b"element vertex 768\n" in scene.export_ply(include_objects=False)
    assert Scene.from_points(patch, col).seed_camera is None


def test_to_model_input_layout(step_scene):
    out = step_scene.render(
        np.stack([np.eye(4), pose(t=(1.0, 0, 0))]), K, H, W, outputs=("rgb", "mask", "rgb_float")
    )
    assert isinstance(out, RenderOutput) and out.depth is None and out.object_mask is None
    x, m = out.to_model_input()
    assert x.shape == (2, 1, 3, H, W) and m.shape == (2, 1, 1, H, W)
    assert x.dtype == torch.float32 and x.min() >= -1 and x.max() <= 1
    holes = m[:, :, 0] == 0
    assert holes.any() and (x.permute(0, 1, 3, 4, 2)[holes] == -1).all()
    np.testing.assert_allclose(x[0, 0, :, 0, 0].numpy(), 50 / 127.5 - 1, atol=1e-6)


def test_depth_cleanup_and_reliability_filter():
    img = np.full((H, W, 3), 100, np.uint8)
    depth = np.full((H, W), 3.0, np.float32)
    depth[0, 0], depth[0, 1], depth[0, 2], depth[0, 3] = np.nan, np.inf, -np.inf, 1e6
    depth[:, 20:] = 5.0  # a depth edge
    scene = Scene.from_rgbd(img, depth, K)
    pts, _ = scene.slot_points(-1, valid_only=False)
    z = pts.reshape(H, W, 3)[..., 2]
    assert z[0, 0] == 100 and z[0, 1] == 100 and z[0, 3] == 100
    valid = scene.slot_valid().reshape(H, W)
    assert not valid[0, 2] and valid[0, 0]  # -inf -> 0 -> no point
    filtered = Scene.from_rgbd(img, depth, K, filter_points_threshold=0.05).slot_valid().reshape(H, W)
    assert not filtered[10, 18:22].any() and filtered[10, 5:15].all()
    masked = np.ones((H, W), bool)
    masked[5, 5] = False
    assert not Scene.from_rgbd(img, depth, K, mask=masked).slot_valid().reshape(H, W)[5, 5]


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "kwargs,name",
    [
        ({"K": np.full((3, 3), np.nan)}, "K"),
        ({"K": np.array([[0.0, 0, 1], [0, 0, 1], [0, 0, 1]])}, "K"),
        ({"K": np.eye(4)}, "K"),
        ({"w2c": np.diag([2.0, 2, 2, 1])}, "w2c"),
        ({"w2c": np.array([[1, 0.5, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]])}, "w2c"),
        ({"depth": np.ones((H, W + 1), np.float32)}, "depth"),
        ({"image": np.zeros((0, W, 3), np.uint8)}, "image"),
        ({"depth": np.zeros((H, W), np.float32)}, "depth"),
        ({"mask": np.ones((H, 3), bool)}, "mask"),
        ({"filter_points_threshold": -1}, "filter_points_threshold"),
    ],
)
def test_from_rgbd_bad_input(kwargs, name):
    args = {"image": np.zeros((H, W, 3), np.uint8), "depth": np.ones((H, W), np.float32), "K": K}
    args.update(kwargs)
    with pytest.raises(ValueError, match=f"^{name}"):
        Scene.from_rgbd(**args)


def test_points_objects_and_render_bad_input(step_scene):
    with pytest.raises(ValueError, match="^points"):
        Scene.from_points(np.zeros((0, 3)), np.zeros((0, 3), np.uint8))
    with pytest.raises(ValueError, match="^points"):
        Scene.from_points(np.array([[0, 0, np.nan]]), np.zeros((1, 3), np.uint8))
    with pytest.raises(ValueError, match="^colors"):
        Scene.from_points(np.zeros((2, 3)), np.zeros((3, 3), np.uint8))
    with pytest.raises(ValueError, match="^points"):
        step_scene.add_object(np.full((4, 3), np.inf), np.zeros((4, 3), np.uint8))
    shear = np.eye(4)
    shear[0, 1] = 0.3
    with pytest.raises(ValueError, match="^transform"):
        step_scene.add_object(np.zeros((4, 3)), np.zeros((4, 3), np.uint8), shear)
    scaled = np.diag([3.0, 3.0, 3.0, 1.0])
    assert step_scene.add_object(np.zeros((4, 3)), np.zeros((4, 3), np.uint8), scaled) == 0
    cases = [
        (dict(w2cs=np.diag([1.0, 1, 2, 1])), "w2cs"),
        (dict(w2cs=np.full((4, 4), np.nan)), "w2cs"),
        (dict(Ks=np.zeros((3, 3))), "Ks"),
        (dict(Ks=np.stack([K, K, K]), w2cs=np.stack([np.eye(4)] * 2)), "Ks"),
        (dict(height=0), "height"),
        (dict(width=-3), "width"),
        (dict(mode="both"), "mode"),
        (dict(splat="gauss"), "splat"),
        (dict(footprint=0), "footprint"),
        (dict(object_radius_px=-1), "object_radius_px"),
        (dict(outputs=("rgb", "normals")), "outputs"),
        (dict(backend="cuda"), "backend"),
    ]
    for change, name in cases:
        args = dict(w2cs=np.eye(4), Ks=K, height=H, width=W)
        args.update(change)
        with pytest.raises(ValueError, match=f"^{name}"):
            step_scene.render(**args)
    with pytest.raises(ValueError, match="^w2c"):
        step_scene.add_view(np.zeros((H, W, 3), np.uint8), np.ones((H, W)), K, None)


def test_torch_inputs_and_single_camera(step_scene):
    a = step_scene.render(torch.eye(4), torch.from_numpy(K), H, W)
    b = step_scene.render(np.eye(4)[None], K[None], H, W)
    assert torch.equal(a.rgb, b.rgb) and a.rgb.shape[0] == 1


def test_render_selected_slots_equals_the_full_render_slot():
    rng = np.random.default_rng(7)
    K = np.array([[20.0, 0, 14], [0, 20.0, 10], [0, 0, 1]])
    img = rng.integers(0, 256, (20, 28, 3), dtype=np.uint8)
    depth = rng.uniform(1.0, 5.0, (20, 28)).astype(np.float32)
    scene = Scene.from_rgbd(img, depth, K)
    w2c = np.eye(4)
    w2c[0, 3] = 0.1
    scene.add_view(img[:, ::-1].copy(), depth * 1.2, K, w2c)
    full = scene.render(np.eye(4), K, 20, 28, mode="scene", outputs=("rgb", "depth"))
    for i in (0, 1):
        one = scene.render(np.eye(4), K, 20, 28, mode="scene", outputs=("rgb", "depth"), slots=[i])
        assert one.rgb.shape[1] == 1
        assert torch.equal(one.rgb[:, 0], full.rgb[:, i]) and torch.equal(one.depth[:, 0], full.depth[:, i])
    with pytest.raises(ValueError, match="slots"):
        scene.render(np.eye(4), K, 20, 28, slots=[2])
