"""DynamicScene (GEN3C's Cache4D): frame-synchronous rendering against an independent reference,
objects fixed in the moving world, per-frame pose tracks, per-frame occlusion, the memory budget."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from objvid.cache.dynamic import DynamicScene, source_bytes
from objvid.cache.render_reference import RefCloud, gen3c_view
from objvid.runtime import trajectory as traj
from objvid.runtime.errors import ResourceExhausted
from objvid.testing.video import synthetic_rgbd_video


def reference_frame_sync(video: dict, target_w2cs, target_Ks, start: int, H: int, W: int):
    """Upstream's Cache4D rule restated: target camera f sees ONLY source frame start + f, whose points are
    c2w_src @ [z K_src^-1 (u, v, 1), 1] (float64), splatted by the reference forward warp."""
    rgbs, masks = [], []
    for f in range(len(target_w2cs)):
        s = start + f
        z = video["depth"][s].astype(np.float64)
        v, u = np.mgrid[0:H, 0:W].astype(np.float64)
        cam = np.linalg.solve(video["K"][s], np.stack([u.ravel(), v.ravel(), np.ones(H * W)])) * z.ravel()
        c2w = np.linalg.inv(video["w2c"][s])
        world = (c2w[:3, :3] @ cam + c2w[:3, 3:]).T
        cloud = RefCloud(world, video["rgb"][s].reshape(-1, 3), video["mask"][s].ravel(), np.full(H * W, -1))
        rgb, _, mask = gen3c_view(cloud, target_w2cs[f], target_Ks[f], H, W)
        rgbs.append(rgb)
        masks.append(mask)
    return torch.stack(rgbs), torch.stack(masks)


def cube(n: int = 6, half: float = 0.05):
    g = np.linspace(-half, half, n)
    pts = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)
    return pts.astype(np.float32), np.full((len(pts), 3), 255, np.uint8)


def pose(xyz) -> np.ndarray:
    T = np.eye(4)
    T[:3, 3] = xyz
    return T


def project(w2c, K, X) -> np.ndarray:
    c = w2c[:3, :3] @ X + w2c[:3, 3]
    p = K @ c
    return p[:2] / p[2]


@pytest.fixture(scope="module")
def video():
    return synthetic_rgbd_video(frames=9, height=40, width=64)


def make(video, **kw) -> DynamicScene:
    kw.setdefault("depth_dtype", "float32")
    return DynamicScene(video["rgb"], video["depth"], video["K"], video["w2c"], video["mask"], **kw)


@pytest.mark.parametrize("start", [0, 3])
def test_frame_synchronous_matches_reference(video, start):
    H, W = video["rgb"].shape[1:3]
    T = 5
    # GEN3C's trajectory relative to each frame's input camera: L_i @ w2c_i
    w2cs, Ks = traj.generate_camera_trajectory("left", video["w2c"][start : start + T],
                                               video["K"][start : start + T], T, 0.3, "center_facing")  # fmt: skip
    out = make(video).render(w2cs, Ks, start=start, mode="scene", backend="torch", outputs=("rgb", "mask"))
    ref_rgb, ref_mask = reference_frame_sync(video, w2cs, Ks, start, H, W)
    fast_mask = out.mask[:, 0]
    assert out.rgb.shape == (T, 1, H, W, 3)
    assert (fast_mask == ref_mask).float().mean() > 0.995
    both = fast_mask & ref_mask
    err = (out.rgb[:, 0].double() - ref_rgb).abs()[both].mean()
    assert err < 2.0, err
    # the rule matters: rendering source frame f (ignoring start) instead of start + f is far off
    if start:
        wrong_rgb, _ = reference_frame_sync(video, w2cs, Ks, 0, H, W)
        assert (out.rgb[:, 0].double() - wrong_rgb).abs()[both].mean() > 4 * err + 5


def test_float16_depth_is_close_to_float32(video):
    w2cs, Ks = video["w2c"][:4], video["K"][:4]
    a = make(video, depth_dtype="float32").render(w2cs, Ks, mode="scene", backend="torch")
    b = make(video, depth_dtype="float16").render(w2cs, Ks, mode="scene", backend="torch")
    assert (a.mask == b.mask).float().mean() > 0.99
    assert (a.rgb.int() - b.rgb.int()).abs().float().mean() < 2


def test_object_stays_fixed_in_the_world(video):
    scene = make(video)
    pts, col = cube()
    centre = np.array([0.45, 0.2, 2.5])  # in front of the wall, clear of the box
    oid = scene.add_object(pts, col, pose(centre))
    out = scene.render(video["w2c"], video["K"], backend="torch", object_radius_px=1.0)
    for f in range(len(video["w2c"])):
        ys, xs = np.nonzero(out.object_mask[f, 0].numpy() == oid)
        assert len(xs) > 10
        want = project(video["w2c"][f], video["K"][f], centre)
        assert abs(xs.mean() - want[0]) < 1.0 and abs(ys.mean() - want[1]) < 1.0, (
            f,
            xs.mean(),
            ys.mean(),
            want,
        )


def test_object_track_moves_the_object(video):
    scene = make(video)
    pts, col = cube()
    oid = scene.add_object(pts, col, pose([0.45, 0.2, 2.5]))
    F = len(video["w2c"])
    centres = np.array([[0.45 + 0.04 * i, 0.2, 2.5] for i in range(F)])
    track = np.stack([pose(c) for c in centres])
    out = scene.render(
        video["w2c"][2:6], video["K"][2:6], start=2, object_track={oid: track}, backend="torch"
    )
    for f in range(4):
        ys, xs = np.nonzero(out.object_mask[f, 0].numpy() == oid)
        want = project(video["w2c"][2 + f], video["K"][2 + f], centres[2 + f])
        assert abs(xs.mean() - want[0]) < 1.0 and abs(ys.mean() - want[1]) < 1.0
    with pytest.raises(ValueError, match=r"object_track\[0\]: 3 poses for 9 frames"):
        list(scene.render_frames(video["w2c"][:1], video["K"][:1], object_track={oid: track[:3]}))


def test_occlusion_is_per_frame():
    # the red box (z = 2) slides away: it hides the object (z = 3) in frame 0 but not in frame 8
    video = synthetic_rgbd_video(frames=9, height=40, width=64, box_speed=0.1)
    scene = make(video)
    pts, col = cube(n=8, half=0.08)
    oid = scene.add_object(pts, col, pose([-0.2, 0.8, 3.0]))
    fused = scene.render(video["w2c"], video["K"], backend="torch", mode="fused", splat="zbuffer")
    alone = scene.render(video["w2c"], video["K"], backend="torch", mode="objects")
    seen = (fused.object_mask[:, 0] == oid).flatten(1).sum(1)
    drawn = (alone.object_mask[:, 0] == oid).flatten(1).sum(1)
    assert drawn[0] > 10 and seen[0] == 0
    assert seen[-1] == drawn[-1] > 10


def test_bad_inputs(video):
    rgb, d, K, w2c = video["rgb"], video["depth"], video["K"], video["w2c"]
    with pytest.raises(ValueError, match=r"depths: expected shape \(9, 40, 64\)"):
        DynamicScene(rgb, d[:8], K, w2c)
    with pytest.raises(ValueError, match="w2cs: 8 cameras for 9 frames"):
        DynamicScene(rgb, d, K, w2c[:8])
    bad = w2c.copy()
    bad[3, :3, :3] *= 1.5
    with pytest.raises(ValueError, match="w2cs"):
        DynamicScene(rgb, d, K, bad)
    with pytest.raises(ValueError, match="images: expected"):
        DynamicScene(rgb.astype(np.float32), d, K, w2c)
    scene = make(video)
    with pytest.raises(ValueError, match="start_frame: frames 7..9 requested, the video has 9"):
        list(scene.render_frames(w2c[:3], K[:3], start=7))


def test_memory_budget(video):
    H, W = video["rgb"].shape[1:3]
    need = source_bytes(9, H, W, "float16")
    with pytest.raises(ResourceExhausted, match="frames: 9 frames of 64x40 need"):
        make(video, depth_dtype="float16", max_bytes=need)
    scene = make(video, depth_dtype="float16", max_bytes=4 * need)
    assert (
        scene.source_bytes() == need
    )  # colour 3 + depth 2 + validity 1 bytes a pixel, nothing else per frame
