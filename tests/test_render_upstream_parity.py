"""The GEN3C splat against an independent restatement of upstream's ``render_cache`` (tests/upstream_gen3c.py).

References per case (see ``assert_parity``): upstream's arithmetic in float64 on the points objvid stores
(same inputs: round-off only), and upstream's own pipeline from the depth map (lifting included) in float64
and in float32 (what a user of upstream gets). Criteria of issue 11: max |d| <= 0.02 (RGB in [-1,1]) on every
pixel both cover and >= 99.9 % mask agreement, with and without the 0.05 filter. The Triton kernels run the
same comparison under the interpreter (subprocess, TRITON_INTERPRET=1).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import upstream_gen3c as up

from objvid.cache import Scene
from objvid.runtime.trajectory import generate_camera_trajectory

MAX_D = 0.02
MIN_AGREE = 0.999


def room_depth(H: int, W: int, rng) -> np.ndarray:
    """A wavy far wall, 4 near boxes (strong depth edges) and a sky band (inf -> 100)."""
    yy, xx = np.mgrid[0:H, 0:W]
    d = 3.0 + 0.3 * np.sin(xx / 7.0) + 0.2 * yy / H
    for _ in range(4):
        y0, x0 = rng.integers(0, H - 4), rng.integers(0, W - 4)
        h, w = rng.integers(3, max(4, H // 2)), rng.integers(3, max(4, W // 2))
        d[y0 : y0 + h, x0 : x0 + w] = rng.uniform(0.3, 2.0)
    d[: H // 6] = np.inf
    return d.astype(np.float32)


def random_cameras(T: int, rng, shift: float = 0.15) -> np.ndarray:
    out = []
    for _ in range(T):
        a = rng.normal(0, 0.05, 3)
        th = np.linalg.norm(a)
        k = a / th
        kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
        w = np.eye(4)
        w[:3, :3] = np.eye(3) + np.sin(th) * kx + (1 - np.cos(th)) * kx @ kx
        w[:3, 3] = rng.normal(0, shift, 3)
        out.append(w)
    return np.array(out)


def compare(ours_rgb, ours_mask, ref_rgb, ref_mask):
    """(max |d| over pixels both cover, mask agreement fraction); ours_rgb in [0,255], ref in [-1,1]."""
    o = ours_rgb.double() / 127.5 - 1
    both = ours_mask & ref_mask
    d = (o - ref_rgb.double()).abs().amax(-1)[both]
    return (d.max().item() if d.numel() else 0.0), (ours_mask == ref_mask).double().mean().item()


def references(scene: Scene, image, depth, K, w2cs, thr) -> dict:
    """name -> (rgb (T,H,W,3) [-1,1], mask (T,H,W)): the float64 restatement on objvid's points, and
    upstream's pipeline from the depth map (lifting included) in float32 (upstream's default) and float64."""
    H, W = depth.shape
    pts, _ = scene.slot_points(-1, valid_only=False)
    valid = torch.from_numpy(scene.slot_valid(-1).reshape(1, H, W))
    col = torch.from_numpy(image).double()[None] / 127.5 - 1
    Ks = np.repeat(K[None], len(w2cs), 0)
    out = {}
    rgb, mask, _ = up.render_cache(
        torch.from_numpy(pts.reshape(1, H, W, 3)), col, valid, w2cs, Ks, torch.float64
    )
    out["float64 on objvid points"] = (rgb[:, 0], mask[:, 0])
    m_up = None
    if thr is not None:
        clean = torch.nan_to_num(torch.from_numpy(depth), nan=100.0, posinf=100.0).clamp(0, 100)
        m_up = up.reliable_mask(clean, thr)[None]
    for dtype, name in ((torch.float32, "upstream float32"), (torch.float64, "upstream float64")):
        rgb, mask, _ = up.render_cache(up.lift(depth, K, np.eye(4), dtype)[None], col, m_up, w2cs, Ks, dtype)
        out[name] = (rgb[:, 0], mask[:, 0])
    return out


def assert_parity(ours_rgb, ours_mask, refs: dict, frames=slice(None), strict: bool = True) -> None:
    """Issue 11's criteria (max |d| <= 0.02 on pixels both cover, >= 99.9 % mask agreement).

    - the float64 restatement on objvid's own stored points: round-off only (<= 1e-4, identical masks);
    - upstream's pipeline from the depth map in float64 and float32: >= 99.9 % mask agreement, and max |d|
      <= 0.02 (``strict``) or, at full size, within 0.02 of upstream's own float32-vs-float64 spread: a
      1e-5 px change of a point's projection (float32 storage of the points, which upstream does too)
      changes a silhouette pixel when a tiny bilinear weight meets a depth weight of up to e^50."""
    o, om = ours_rgb[frames], ours_mask[frames]
    ref_p = refs["float64 on objvid points"]
    dp, ap = compare(o, om, ref_p[0][frames], ref_p[1][frames])
    assert dp <= 1e-4 and ap == 1.0, ("float64 on objvid points", dp, ap)
    r32, m32 = refs["upstream float32"][0][frames], refs["upstream float32"][1][frames]
    r64, m64 = refs["upstream float64"][0][frames], refs["upstream float64"][1][frames]
    spread, _ = compare((r64.double() + 1) * 127.5, m64, r32, m32)
    bound = MAX_D if strict else spread + MAX_D
    d64, a64 = compare(o, om, r64, m64)
    assert d64 <= bound and a64 >= MIN_AGREE, ("upstream float64", d64, spread, a64)
    d32, a32 = compare(o, om, r32, m32)
    assert d32 <= spread + MAX_D and a32 >= MIN_AGREE, ("upstream float32", d32, spread, a32)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("thr", [None, 0.05])
def test_gen3c_splat_matches_upstream_on_random_scenes(seed, thr):
    rng = np.random.default_rng(seed)
    H, W = 40, 56
    image = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    depth = room_depth(H, W, rng)
    K = np.array(
        [[rng.uniform(40, 70), 0, W / 2 + rng.uniform(-3, 3)], [0, rng.uniform(40, 70), H / 2], [0, 0, 1]]
    )
    w2cs = random_cameras(5, rng)
    scene = Scene.from_rgbd(image, depth, K, filter_points_threshold=thr)
    out = scene.render(w2cs, K, H, W, mode="scene", outputs=("rgb_float", "mask"), backend="torch")
    assert_parity(out.rgb_float[:, 0], out.mask[:, 0], references(scene, image, depth, K, w2cs, thr))


def test_near_colour_wins_a_tiny_bilinear_weight_as_upstream():
    """The silhouette case of issue 11: a near point 0.001 px off a pixel centre gives its neighbour a
    weight of 0.001, which the depth weighting (near vs far) makes win over the far wall's own point.
    The old 1/512-px snap dropped that weight; upstream (and objvid now) keep it."""
    H, W = 8, 8
    K = np.array([[8.0, 0, 4.0], [0, 8.0, 4.0], [0, 0, 1]])
    image = np.zeros((H, W, 3), np.uint8)
    image[:, :, 2] = 255  # blue far wall
    depth = np.full((H, W), 10.0, np.float32)
    depth[4, 3] = 0.5  # one near red point
    image[4, 3] = (255, 0, 0)
    scene = Scene.from_rgbd(image, depth, K)
    w2c = np.eye(4)
    w2c[0, 3] = 0.001 * 0.5 / 8.0 * 1.0  # moves the near point by ~0.001 px, the wall by ~0.00005 px
    w2cs = w2c[None]
    out = scene.render(w2cs, K, H, W, mode="scene", outputs=("rgb_float", "mask"), backend="torch")
    assert_parity(out.rgb_float[:, 0], out.mask[:, 0], references(scene, image, depth, K, w2cs, None))
    assert out.rgb_float[0, 0, 4, 4, 0] > 100  # the right neighbour turned (partly) red, as upstream's


def test_normaliser_spans_upstreams_warp_chunks_of_two_views():
    """Upstream takes max log1p(z) over each forward_warp call of 2 views ((camera, slot) order): with one
    slot, camera 1's weights depend on camera 0's depth range. objvid follows the same grouping."""
    rng = np.random.default_rng(7)
    H, W = 24, 32
    image = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    depth = room_depth(H, W, rng)
    depth[np.isinf(depth)] = 5.0  # no sky: the normaliser varies from view to view
    K = np.array([[40.0, 0, W / 2], [0, 40.0, H / 2], [0, 0, 1]])
    w2cs = random_cameras(3, rng, shift=0.4)
    w2cs[0, 2, 3] = 3.0  # camera 0 far behind: a much larger normaliser shared with camera 1
    scene = Scene.from_rgbd(image, depth, K)
    both = scene.render(w2cs, K, H, W, mode="scene", outputs=("rgb_float", "mask"), backend="torch")
    alone = scene.render(w2cs[1:2], K, H, W, mode="scene", outputs=("rgb_float", "mask"), backend="torch")
    assert_parity(both.rgb_float[:, 0], both.mask[:, 0], references(scene, image, depth, K, w2cs, None))
    assert (both.rgb_float[1] - alone.rgb_float[0]).abs().max() > 0.5  # grouping changed camera 1


def test_two_slots_share_the_normaliser_of_their_camera():
    rng = np.random.default_rng(3)
    H, W = 24, 32
    image = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    depth = room_depth(H, W, rng)
    K = np.array([[40.0, 0, W / 2], [0, 40.0, H / 2], [0, 0, 1]])
    scene = Scene.from_rgbd(image, depth, K)
    w2c_new = random_cameras(1, rng)[0]
    depth2 = depth * 0.7
    scene.add_view(image[::-1].copy(), depth2, K, w2c_new)
    w2cs = random_cameras(3, rng)
    out = scene.render(w2cs, K, H, W, mode="scene", outputs=("rgb_float", "mask"), backend="torch")
    pts = [scene.slot_points(i, valid_only=False)[0].reshape(H, W, 3) for i in range(2)]
    valid = torch.stack([torch.from_numpy(scene.slot_valid(i).reshape(H, W)) for i in range(2)])
    col = torch.stack([torch.from_numpy(image[::-1].copy()), torch.from_numpy(image)]).double() / 127.5 - 1
    rgb, mask, _ = up.render_cache(
        torch.from_numpy(np.stack(pts)), col, valid, w2cs, np.repeat(K[None], 3, 0), torch.float64
    )
    for n in range(2):
        dmax, agree = compare(out.rgb_float[:, n], out.mask[:, n], rgb[:, n], mask[:, n])
        assert dmax <= 1e-4 and agree == 1.0, (n, dmax, agree)
    one = scene.render(w2cs, K, H, W, mode="scene", outputs=("rgb_float", "mask"), backend="torch", slots=[0])
    assert torch.equal(one.rgb_float[:, 0], out.rgb_float[:, 0])  # a subset keeps the full grouping


def test_source_camera_reproduces_the_input_exactly():
    """At a slot's own camera upstream's output is float32 round-off noise; objvid snaps there only."""
    rng = np.random.default_rng(11)
    H, W = 30, 40
    image = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    depth = room_depth(H, W, rng)
    K = np.array([[50.0, 0, 19.7], [0, 50.0, 15.2], [0, 0, 1]])
    w2c = random_cameras(1, rng)[0]
    scene = Scene.from_rgbd(image, depth, K, w2c=w2c)
    for be in ("torch", "reference"):
        out = scene.render(w2c, K, H, W, mode="scene", backend=be)
        assert (out.rgb[0, 0].numpy() == image).all() and out.mask.all(), be


@pytest.mark.slow
def test_gen3c_splat_matches_upstream_at_704x1280():
    """GEN3C's size and trajectory (left / center_facing / 0.3), frames 0, 1, 60 and 120."""
    rng = np.random.default_rng(0)
    H, W = 704, 1280
    image = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    depth = room_depth(H, W, rng)
    K = np.array([[900.0, 0, W / 2], [0, 900.0, H / 2], [0, 0, 1]])
    w2cs, _ = generate_camera_trajectory("left", np.eye(4), K, 121, 0.3, "center_facing")
    w2cs = w2cs[[0, 1, 60, 120]]
    for thr in (None, 0.05):
        scene = Scene.from_rgbd(image, depth, K, filter_points_threshold=thr)
        out = scene.render(w2cs, K, H, W, mode="scene", outputs=("rgb_float", "mask"), backend="torch")
        frame0, cov0 = np.floor(out.rgb_float[0, 0].numpy() + 0.5), out.mask[0, 0].numpy()
        assert (frame0 == image)[cov0].all() and (thr is not None or cov0.all())  # source camera: exact
        refs = references(scene, image, depth, K, w2cs, thr)  # all 4 cameras: the same warp chunks
        assert_parity(out.rgb_float[:, 0], out.mask[:, 0], refs, frames=slice(1, None), strict=False)


KERNEL_SCRIPT = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    import numpy as np, torch
    from objvid.cache import Scene
    from test_render_upstream_parity import assert_parity, random_cameras, references, room_depth
    for seed, thr in [(0, None), (1, 0.05)]:
        rng = np.random.default_rng(seed)
        H, W = 24, 40
        image = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
        depth = room_depth(H, W, rng)
        K = np.array([[45.0, 0, W / 2], [0, 45.0, H / 2], [0, 0, 1]])
        w2cs = random_cameras(3, rng)
        scene = Scene.from_rgbd(image, depth, K, filter_points_threshold=thr)
        out = scene.render(w2cs, K, H, W, mode="scene", outputs=("rgb_float", "mask"), backend="triton")
        assert_parity(out.rgb_float[:, 0], out.mask[:, 0], references(scene, image, depth, K, w2cs, thr))
    print("PARITY_OK")
    """
)


def test_triton_kernel_matches_upstream_under_the_interpreter():
    pytest.importorskip("triton", reason="triton not installed (pip install triton to test the kernels here)")
    tests = str(Path(__file__).parent)
    env = dict(os.environ, TRITON_INTERPRET="1")
    res = subprocess.run(
        [sys.executable, "-c", KERNEL_SCRIPT.format(tests=tests)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0 and "PARITY_OK" in res.stdout, res.stdout[-2000:] + res.stderr[-4000:]
