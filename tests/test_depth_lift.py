"""GEN3C lifting conventions on crafted arrays: depth cleaning, sizes, intrinsics, the batch core."""

import numpy as np
import pytest
import torch

from objvid.depth import lift


def test_clean_depth_values_as_upstream():
    inf, nan = np.inf, np.nan
    depth = np.array([[5.0, 7.0, nan, inf, -inf, -3.0, 2e4, nan]], dtype=np.float32)
    mask = np.array([[True, False, True, True, True, True, True, False]])
    out = lift.clean_depth(depth, mask)
    assert out.dtype == torch.float32 and out.shape == (1, 8)
    # valid kept, masked -> 1000, NaN -> 1e4, +inf -> 1e4, -inf/negative -> 0, too far -> 1e4, masked NaN -> 1000
    np.testing.assert_array_equal(out.numpy(), [[5.0, 1000.0, 1e4, 1e4, 0.0, 0.0, 1e4, 1000.0]])


def test_clean_depth_batched_and_masked_everywhere():
    depth = torch.full((2, 3, 4), torch.inf)
    mask = torch.zeros((2, 3, 4), dtype=torch.bool)
    out = lift.clean_depth(depth, mask)
    assert out.shape == (2, 3, 4)
    assert torch.all(out == lift.MASKED_DEPTH)


def test_clean_depth_resizes_between_the_steps():
    # Masked -> 1000 happens before the bilinear resize (so it blends), NaN -> 1e4 after it (so it spreads,
    # even into pixels where its bilinear weight is 0, since 0 * NaN = NaN).
    up = lift.clean_depth(np.array([[10.0, 123.0]], np.float32), np.array([[True, False]]), out_hw=(1, 4))
    np.testing.assert_allclose(up.numpy(), [[10.0, 257.5, 752.5, 1000.0]])
    nan = lift.clean_depth(np.array([[10.0, np.nan]], np.float32), np.array([[True, True]]), out_hw=(1, 4))
    np.testing.assert_array_equal(nan.numpy(), [[1e4, 1e4, 1e4, 1e4]])


def test_clean_depth_rejects_mismatched_mask():
    with pytest.raises(ValueError, match="mask"):
        lift.clean_depth(np.zeros((2, 2), np.float32), np.ones((2, 3), bool))


def test_intrinsics_scaled_like_gen3c():
    k_norm = np.array([[0.6, 0.0, 0.5], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]], np.float32)
    k = lift.scale_intrinsics(k_norm, (720, 1280), (704, 1280))
    assert k.dtype == np.float64
    np.testing.assert_allclose(k, [[0.6 * 1280, 0, 640], [0, 704, 352], [0, 0, 1]], rtol=1e-6)
    half = lift.scale_intrinsics(np.stack([k_norm, k_norm]), (720, 1280), (352, 640))
    assert half.shape == (2, 3, 3)
    # fx, cx by the width ratio; fy, cy by the height ratio; cx = W / 2 exactly.
    np.testing.assert_allclose(half[1], [[0.6 * 640, 0, 320], [0, 352, 176], [0, 0, 1]], rtol=1e-6)
    assert half[0, 0, 2] == 320.0 and half[0, 1, 2] == 176.0


@pytest.mark.parametrize(
    "image_hw, width, height, keep, expected",
    [
        ((500, 900), 0, 0, False, (704, 1280)),
        ((500, 900), 640, 352, False, (352, 640)),
        ((480, 640), 1280, 0, True, (960, 1280)),
        ((1000, 1777), 0, 0, True, (720, 1280)),
        ((1920, 1080), 640, 0, True, (1136, 640)),
        ((10, 1000), 128, 0, True, (16, 128)),
    ],
)
def test_working_size(image_hw, width, height, keep, expected):
    assert lift.working_size(image_hw, width, height, keep, lift.GEN3C_WORKING_HW) == expected


@pytest.mark.parametrize(
    "width, height, keep, field",
    [
        (640, 0, False, "width/height"),
        (0, 352, False, "width/height"),
        (640, 480, True, "height"),
        (-1, 5, False, "width"),
    ],
)
def test_working_size_errors_name_the_field(width, height, keep, field):
    with pytest.raises(ValueError, match=field):
        lift.working_size((10, 10), width, height, keep, lift.GEN3C_WORKING_HW)


def test_inference_size():
    assert lift.inference_size((123, 456), False, (720, 1280)) == (720, 1280)
    assert lift.inference_size((900, 1600), True, (720, 1280)) == (720, 1280)
    h, w = lift.inference_size((480, 640), True, (720, 1280))
    assert abs(h / w - 0.75) < 0.01 and abs(h * w - 720 * 1280) < 2000


def test_resize_for_inference_is_cv2_bilinear_and_skips_same_size():
    rgb = np.random.default_rng(0).integers(0, 256, (50, 80, 3), dtype=np.uint8)
    assert lift.resize_for_inference(rgb, (50, 80)) is rgb
    out = lift.resize_for_inference(rgb, (25, 40))
    assert out.shape == (25, 40, 3) and out.dtype == np.uint8


class _SyntheticPredictor:
    """Depth 5 on the left half (valid), masked on the right half; K with fx = 0.6, fy = 0.9."""

    device = torch.device("cpu")

    def __init__(self):
        self.seen = []

    def __call__(self, images):
        self.seen.append(images)
        b, _, h, w = images.shape
        depth = torch.full((b, h, w), 5.0)
        mask = torch.zeros((b, h, w), dtype=torch.bool)
        mask[..., : w // 2] = True
        depth[~mask] = torch.inf
        k = torch.tensor([[0.6, 0.0, 0.5], [0.0, 0.9, 0.5], [0.0, 0.0, 1.0]]).expand(b, 3, 3)
        return lift.Prediction(depth=depth, mask=mask, intrinsics=k)


def test_lift_batch_applies_every_convention():
    rgb = np.empty((36, 64, 3), np.uint8)
    rgb[...] = (200, 100, 50)
    predictor = _SyntheticPredictor()
    views = lift.lift_batch(predictor, [rgb, rgb], (32, 48), "cpu")
    x = predictor.seen[0]
    assert x.shape == (2, 3, 36, 64) and x.dtype == torch.float32
    assert float(x.min()) >= 0 and float(x.max()) <= 1
    assert len(views) == 2
    v = views[0]
    assert (v.height, v.width) == (32, 48)
    assert v.depth.dtype == np.float32 and v.mask.dtype == np.bool_ and v.image.dtype == np.uint8
    assert v.image.shape == (32, 48, 3) and np.all(v.image == (200, 100, 50))
    np.testing.assert_array_equal(v.mask[:, :24], True)
    np.testing.assert_array_equal(v.mask[:, 24:], False)
    np.testing.assert_allclose(v.depth[:, :20], 5.0, rtol=1e-6)
    np.testing.assert_array_equal(v.depth[:, 28:], 1000.0)
    assert np.all((v.depth > 4.999) & (v.depth <= 1000.0))
    np.testing.assert_allclose(v.intrinsics, [[0.6 * 48, 0, 24], [0, 0.9 * 32, 16], [0, 0, 1]], rtol=1e-6)


def test_lift_batch_rejects_mixed_sizes():
    with pytest.raises(ValueError, match="inference size"):
        lift.lift_batch(
            _SyntheticPredictor(),
            [np.zeros((4, 4, 3), np.uint8), np.zeros((4, 5, 3), np.uint8)],
            (4, 4),
            "cpu",
        )
