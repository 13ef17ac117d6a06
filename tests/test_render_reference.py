"""Fast renderers (vectorised PyTorch, the CPU path) vs the float64 reference on random scenes/cameras."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from objvid.cache import Scene

H, W = 20, 28
ALL = ("rgb", "rgb_float", "mask", "depth", "object_mask")
#: ``kernels.ZBUF_POINT_BLOCK`` in the interpreter tests (test_render_kernels, test_render_culling). The
#: z-buffer kernel's launch shape is tuned for GPUs (64 points per program); its integer atomic-min result
#: does not depend on it (kernels.py), while the interpreter's cost grows with the number of programs
#: (~0.1 s each on a CPU core): 256 is 3-4x faster. Their inputs still span several blocks and end in a
#: partial one (the masked tail and ``index_base`` stay covered).
INTERPRETER_ZBUF_BLOCK = 256


def random_rotation(rng, max_angle):
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    a = rng.uniform(-max_angle, max_angle)
    Kx = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(a) * Kx + (1 - np.cos(a)) * Kx @ Kx


def random_setup(seed: int, two_slots: bool):
    rng = np.random.default_rng(seed)
    K = np.array(
        [[rng.uniform(18, 30), 0, W / 2 + rng.uniform(-2, 2)], [0, rng.uniform(18, 30), H / 2], [0, 0, 1]]
    )
    img = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    depth = rng.uniform(1.0, 8.0, (H, W)).astype(np.float32)
    depth[rng.integers(0, H, 30), rng.integers(0, W, 30)] = np.inf  # sky pixels -> z = 100
    scene = Scene.from_rgbd(img, depth, K)
    if two_slots:
        w2c = np.eye(4)
        w2c[:3, :3], w2c[:3, 3] = random_rotation(rng, 0.1), rng.normal(scale=0.2, size=3)
        scene.add_view(img[:, ::-1].copy(), depth * 1.1, K, w2c)
    for _ in range(2):
        n = int(rng.integers(50, 400))
        pts = rng.normal(scale=0.4, size=(n, 3)).astype(np.float32)
        T = np.eye(4)
        T[:3, :3] = random_rotation(rng, 3.0) * rng.uniform(0.5, 2.0)
        T[:3, 3] = [rng.uniform(-0.5, 0.5), rng.uniform(-0.5, 0.5), rng.uniform(2.0, 5.0)]
        scene.add_object(pts, rng.integers(0, 256, (n, 3), dtype=np.uint8), T)
    cams = []
    for _ in range(3):
        w2c = np.eye(4)
        w2c[:3, :3], w2c[:3, 3] = random_rotation(rng, 0.15), rng.normal(scale=0.3, size=3)
        cams.append(w2c)
    return scene, np.stack(cams), K


def assert_zbuffer_equal(fast, ref):
    """Identical winners; a difference is only allowed at an exact float32 depth tie (documented)."""
    diff = (fast.object_mask != ref.object_mask) | (fast.rgb != ref.rgb).any(-1) | (fast.mask != ref.mask)
    if diff.any():
        tie = torch.isclose(fast.depth, ref.depth, rtol=1e-7, atol=0)
        assert tie[diff].all(), f"{int(diff.sum())} z-buffer winners differ without a depth tie"
    torch.testing.assert_close(fast.depth, ref.depth, rtol=1e-6, atol=0)


def assert_matches_reference(fast, ref, mode: str, splat: str) -> None:
    """GEN3C splat: max error <= 1e-4 in [-1, 1] units, same coverage; z-buffers: identical winners."""
    assert fast.rgb.shape == ref.rgb.shape
    if splat == "gen3c" and mode in ("scene", "fused"):
        gen3c = ref.object_mask < 0
        assert torch.equal(fast.mask, ref.mask)
        err = (fast.rgb_float - ref.rgb_float).abs().amax(-1)[gen3c].max() / 127.5  # in [-1, 1] units
        assert err <= 1e-4
        torch.testing.assert_close(fast.depth, ref.depth, rtol=1e-5, atol=1e-6)
        assert torch.equal(fast.object_mask, ref.object_mask)
        assert (fast.rgb.int() - ref.rgb.int()).abs().max() <= 1
    else:
        assert_zbuffer_equal(fast, ref)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize(
    "mode,splat",
    [
        ("scene", "gen3c"),
        ("fused", "gen3c"),
        ("scene", "zbuffer"),
        ("fused", "zbuffer"),
        ("full", "zbuffer"),
        ("objects", "zbuffer"),
    ],
)
def test_fast_matches_reference(seed, mode, splat):
    scene, cams, K = random_setup(seed, two_slots=seed == 1)
    kw = dict(mode=mode, splat=splat, outputs=ALL, footprint=2, object_radius_px=1.2)
    fast = scene.render(cams, K, H, W, backend="torch", **kw)
    ref = scene.render(cams, K, H, W, backend="reference", **kw)
    assert_matches_reference(fast, ref, mode, splat)


@pytest.mark.parametrize("footprint,radius", [(1, 0.5), (3, 1.0), (4, 2.0), (2, 0.0), (2, 0.75)])
def test_footprints_match_reference(footprint, radius):
    scene, cams, K = random_setup(3, two_slots=False)
    kw = dict(mode="full", outputs=ALL, footprint=footprint, object_radius_px=radius)
    assert_zbuffer_equal(
        scene.render(cams, K, H, W, backend="torch", **kw),
        scene.render(cams, K, H, W, backend="reference", **kw),
    )


def test_larger_footprint_covers_more():
    scene, cams, K = random_setup(4, two_slots=False)
    cover = [
        scene.render(cams, K, H, W, mode="scene", splat="zbuffer", footprint=k).mask.float().mean()
        for k in (1, 2, 3)
    ]
    assert cover[0] < cover[1] <= cover[2]
