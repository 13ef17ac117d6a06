"""Triton kernels (objvid.cache.kernels) in interpreter mode on the CPU vs the torch and reference paths.

The interpreter needs TRITON_INTERPRET=1 before triton is imported, so the check runs in a subprocess.
Skipped when the triton package is not installed (it is not a dependency of the CPU install).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from test_render_reference import INTERPRETER_ZBUF_BLOCK

pytest.importorskip("triton", reason="triton not installed (pip install triton to test the kernels here)")

SCRIPT = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    import numpy as np, torch
    from test_render_reference import ALL, H, W, assert_zbuffer_equal, random_setup
    from objvid.cache import Scene, kernels
    kernels.ZBUF_POINT_BLOCK = {block}  # launch shape only (INTERPRETER_ZBUF_BLOCK)

    cases = [("scene", "gen3c", 2, 1.2), ("fused", "gen3c", 2, 1.2), ("fused", "zbuffer", 1, 0.0),
             ("full", "zbuffer", 3, 2.0), ("objects", "zbuffer", 4, 0.7)]
    for seed, two_slots in [(0, False), (1, True)]:
        scene, cams, K = random_setup(seed, two_slots)
        for mode, splat, fp, rad in cases:
            kw = dict(mode=mode, splat=splat, outputs=ALL, footprint=fp, object_radius_px=rad)
            tri = scene.render(cams, K, H, W, backend="triton", **kw)
            ref = scene.render(cams, K, H, W, backend="reference", **kw)
            if splat == "gen3c":
                assert torch.equal(tri.mask, ref.mask), mode
                err = (tri.rgb_float - ref.rgb_float).abs().max().item() / 127.5
                assert err <= 1e-4, (mode, err)
                torch.testing.assert_close(tri.depth, ref.depth, rtol=1e-5, atol=1e-6)
                assert torch.equal(tri.object_mask, ref.object_mask)
            else:
                assert_zbuffer_equal(tri, ref)
    # identity camera is exact through the kernels too
    rng = np.random.default_rng(5)
    img = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    depth = rng.uniform(1, 5, (H, W)).astype(np.float32)
    K = np.array([[25.0, 0, W / 2], [0, 25.0, H / 2], [0, 0, 1]])
    scene = Scene.from_rgbd(img, depth, K)
    for splat in ("gen3c", "zbuffer"):
        out = scene.render(np.eye(4), K, H, W, mode="scene", splat=splat, backend="triton")
        assert (out.rgb[0, 0].numpy() == img).all() and out.mask.all(), splat
    print("KERNELS_OK")
    """
)


def test_triton_kernels_interpreter_match_reference():
    tests = str(Path(__file__).parent)
    env = dict(os.environ, TRITON_INTERPRET="1")
    res = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(tests=tests, block=INTERPRETER_ZBUF_BLOCK)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0 and "KERNELS_OK" in res.stdout, res.stdout[-3000:] + res.stderr[-3000:]
