"""Plain-video depth: per-frame monocular scales made consistent, measured on a synthetic video with
known geometry (a moving box covers part of every frame)."""

from __future__ import annotations

import numpy as np
import pytest

from objvid.client.video_depth import consistent_scales
from objvid.testing.video import synthetic_rgbd_video


def monocular(video: dict, seed: int, noise: float = 0.02):
    """What a per-frame depth model gives: the true depth times an unknown per-frame scale, with noise."""
    rng = np.random.default_rng(seed)
    unknown = rng.uniform(0.5, 2.0, len(video["depth"]))
    d = video["depth"] * unknown[:, None, None] * (1 + noise * rng.standard_normal(video["depth"].shape))
    return d.astype(np.float32), unknown


def relative_scale_error(depths, scales, truth) -> float:
    """max over frames of |median(s_i d_i / true_i) / median(s_0 d_0 / true_0) - 1|."""
    ratios = np.array([np.median(s * d / t) for s, d, t in zip(scales, depths, truth, strict=True)])
    return float(np.abs(ratios / ratios[0] - 1).max())


@pytest.mark.parametrize("seed", [0, 1])
def test_static_camera_scales_consistent(seed):
    video = synthetic_rgbd_video(frames=12, height=36, width=64, static_camera=True, box_speed=0.05)
    depths, unknown = monocular(video, seed)
    assert relative_scale_error(depths, np.ones(12), video["depth"]) > 0.2  # before: frames disagree
    scales = consistent_scales(depths, video["mask"])
    assert relative_scale_error(depths, scales, video["depth"]) < 0.01


def test_geometry_model_reference_scales_consistent():
    video = synthetic_rgbd_video(frames=12, height=36, width=64)  # moving camera
    depths, _ = monocular(video, 3)
    reference = video["depth"] * 0.37  # a geometry model's depth: one (unknown) scale for the clip
    scales = consistent_scales(depths, video["mask"], reference)
    assert relative_scale_error(depths, scales, video["depth"]) < 0.01


def test_bad_inputs():
    d = np.ones((2, 8, 8), np.float32)
    with pytest.raises(ValueError, match="frame 1: under 16 pixels"):
        consistent_scales(d, np.stack([np.ones((8, 8), bool), np.zeros((8, 8), bool)]))
    with pytest.raises(ValueError, match="references: expected"):
        consistent_scales(d, d > 0, d[:1])
