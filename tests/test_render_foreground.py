"""GEN3C foreground masking (objvid.cache.foreground) against the brute-force ray-cast restatement of
upstream (tests/upstream_gen3c.py: points_to_mesh at H/4 x W/4, Moller-Trumbore per pixel, 0.02 margin)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import upstream_gen3c as up
from test_render_upstream_parity import compare, random_cameras, room_depth

from objvid.cache import Scene


def _setup(seed: int, H: int = 40, W: int = 56):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    depth = room_depth(H, W, rng)
    K = np.array([[50.0, 0, W / 2], [0, 50.0, H / 2], [0, 0, 1]])
    return rng, image, depth, K


def _reference(scene, image, depth, K, w2cs, dtype):
    H, W = depth.shape
    pts, _ = scene.slot_points(-1, valid_only=False)
    valid = torch.from_numpy(scene.slot_valid(-1).reshape(1, H, W))
    clean = torch.nan_to_num(torch.from_numpy(depth), nan=100.0, posinf=100.0).clamp(0, 100)
    boundary = ~up.reliable_mask(clean, 0.05)
    col = torch.from_numpy(image).double()[None] / 127.5 - 1
    Ks = np.repeat(K[None], len(w2cs), 0)
    pts_t = torch.from_numpy(pts.reshape(1, H, W, 3))
    return up.render_cache(pts_t, col, valid, w2cs, Ks, dtype, boundary=boundary[None])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_foreground_masking_matches_upstream(seed):
    _, image, depth, K = _setup(seed)
    H, W = depth.shape
    w2cs = random_cameras(4, np.random.default_rng(seed + 100), shift=0.3)
    scene = Scene.from_rgbd(image, depth, K)
    kw = dict(mode="scene", outputs=("rgb_float", "mask", "depth"), backend="torch")
    out = scene.render(w2cs, K, H, W, foreground_masking=True, **kw)
    plain = scene.render(w2cs, K, H, W, **kw)
    cut = plain.mask & ~out.mask
    assert cut.sum() > 20  # the option does something here (background leaking past silhouettes)
    assert not (out.mask & ~plain.mask).any()  # it only removes pixels
    for dtype in (torch.float32, torch.float64):
        rgb, mask, dep = _reference(scene, image, depth, K, w2cs, dtype)
        dmax, agree = compare(out.rgb_float[:, 0], out.mask[:, 0], rgb[:, 0], mask[:, 0])
        assert dmax <= 1e-3 and agree >= 0.999, (dtype, dmax, agree)
        both = out.mask[:, 0] & mask[:, 0]
        torch.testing.assert_close(
            out.depth[:, 0][both].double(), dep[:, 0][both].double(), rtol=1e-4, atol=1e-4
        )


def test_foreground_masking_keeps_the_source_view_and_flat_scenes():
    """No depth edge -> no mesh -> nothing cut. At the source camera upstream cuts too (the 4x-downsampled
    mesh bridges each edge at intermediate depths): same pixels as the restatement."""
    rng = np.random.default_rng(4)
    H, W = 32, 40
    image = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    K = np.array([[40.0, 0, W / 2], [0, 40.0, H / 2], [0, 0, 1]])
    flat = Scene.from_rgbd(image, np.full((H, W), 2.0, np.float32), K)
    w2cs = random_cameras(3, rng, shift=0.2)
    a = flat.render(w2cs, K, H, W, mode="scene", foreground_masking=True)
    b = flat.render(w2cs, K, H, W, mode="scene")
    assert torch.equal(a.rgb, b.rgb) and torch.equal(a.mask, b.mask)
    _, image, depth, K = _setup(5)
    scene = Scene.from_rgbd(image, depth, K)
    out = scene.render(np.eye(4), K, *depth.shape, mode="scene", foreground_masking=True)
    # upstream's splat is round-off noise at its source camera (objvid reproduces the input there), so the
    # reference cut is taken against the input depth itself
    H, W = depth.shape
    pts, _ = scene.slot_points(-1, valid_only=False)
    clean = torch.nan_to_num(torch.from_numpy(depth), nan=100.0, posinf=100.0).clamp(0, 100).double()
    boundary = ~up.reliable_mask(clean.float(), 0.05)
    cut = up.foreground_occlusion(
        torch.from_numpy(pts.reshape(H, W, 3)).double(), boundary, torch.from_numpy(K), clean
    )
    assert cut.any() and (out.mask[0, 0] == ~cut).double().mean() >= 0.999
    kept = out.mask[0, 0].numpy()
    assert (out.rgb[0, 0].numpy()[kept] == image[kept]).all()


def test_foreground_masking_with_objects_and_two_slots_and_persistence():
    rng, image, depth, K = _setup(6)
    H, W = depth.shape
    scene = Scene.from_rgbd(image, depth, K)
    scene.add_view(image[::-1].copy(), depth[::-1].copy(), K, random_cameras(1, rng)[0])
    scene.add_object(rng.normal(scale=0.2, size=(300, 3)).astype(np.float32) + [0, 0, 1.5],
                     rng.integers(0, 256, (300, 3), dtype=np.uint8))  # fmt: skip
    w2cs = random_cameras(2, rng, shift=0.3)
    out = scene.render(w2cs, K, H, W, mode="fused", foreground_masking=True)
    again = Scene.from_state_dict(scene.state_dict()).render(
        w2cs, K, H, W, mode="fused", foreground_masking=True
    )
    assert torch.equal(out.rgb, again.rgb) and torch.equal(out.mask, again.mask)
    scene_only = scene.render(w2cs, K, H, W, mode="scene", foreground_masking=True)
    objs = out.object_mask >= 0
    assert objs.any()
    # outside the object pixels, fused = the masked scene layer
    assert torch.equal(out.rgb[~objs], scene_only.rgb[~objs])


@pytest.mark.parametrize(
    "kw, msg",
    [
        (dict(splat="zbuffer"), "foreground_masking"),
        (dict(mode="full"), "foreground_masking"),
        (dict(backend="reference"), "foreground_masking"),
    ],
)
def test_foreground_masking_bad_combinations(kw, msg):
    _, image, depth, K = _setup(0, 16, 16)
    scene = Scene.from_rgbd(image, depth, K)
    with pytest.raises(ValueError, match=msg):
        scene.render(np.eye(4), K, 16, 16, foreground_masking=True, **kw)
    pts = Scene.from_points(np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32) + [0, 0, 3],
                            np.zeros((50, 3), np.uint8))  # fmt: skip
    with pytest.raises(ValueError, match="foreground_masking"):
        pts.render(np.eye(4), K, 16, 16, foreground_masking=True)
