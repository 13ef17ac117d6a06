"""The direct LiftResponse encoder gives exactly the bytes protobuf would (reference: protobuf objects)."""

import numpy as np
import pytest

from objvid.depth.encode import build_response, encode_response
from objvid.depth.lift import LiftedView
from objvid.runtime import wire
from objvid.v1 import depth_pb2


def _view(h, w, seed):
    rng = np.random.default_rng(seed)
    depth = (rng.random((h, w)) * 50).astype(np.float32)
    depth.flat[:3] = [1000.0, 1e4, 0.0][: depth.size]
    mask = rng.random((h, w)) > 0.3
    k = np.array([[rng.random() * 900, 0, w / 2], [0, rng.random() * 900, h / 2], [0, 0, 1]])
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    return LiftedView(depth, mask, k, image)


@pytest.mark.parametrize(
    "sizes, model",
    [
        ([(2, 3)], "m"),
        ([(64, 128), (5, 7), (1, 1)], "/models/moge-vitl/model.pt"),
        ([(16, 300)], ""),
        ([], "Ruicheng/moge-vitl"),
        ([(704, 1280)], "Ruicheng/moge-vitl"),
    ],
)
def test_direct_encoding_matches_protobuf(sizes, model):
    views = [_view(h, w, i) for i, (h, w) in enumerate(sizes)]
    direct = encode_response(views, model)
    reference = build_response(views, model)
    assert direct == reference.SerializeToString()
    parsed = depth_pb2.LiftResponse.FromString(direct)
    assert parsed.model == model and len(parsed.views) == len(views)
    for got, want in zip(parsed.views, views, strict=True):
        np.testing.assert_array_equal(wire.decode_tensor(got.depth, dtype=np.float32), want.depth)
        np.testing.assert_array_equal(wire.decode_tensor(got.mask, dtype=np.bool_), want.mask)
        np.testing.assert_array_equal(wire.decode_image(got.image), want.image)
        np.testing.assert_array_equal(np.asarray(got.intrinsics).reshape(3, 3), want.intrinsics)
        assert (got.width, got.height) == (want.width, want.height)


def test_views_of_a_batch_array_encode_like_copies():
    depth = np.arange(2 * 4 * 6, dtype=np.float32).reshape(2, 4, 6)
    mask = depth > 10
    image = np.zeros((2, 4, 6, 3), np.uint8)
    views = [LiftedView(depth[i], mask[i], np.eye(3), image[i]) for i in range(2)]
    copies = [LiftedView(v.depth.copy(), v.mask.copy(), v.intrinsics, v.image.copy()) for v in views]
    assert (
        encode_response(views, "x")
        == encode_response(copies, "x")
        == build_response(copies, "x").SerializeToString()
    )


@pytest.mark.parametrize("sizes", [[(2, 3)], [(64, 128), (1, 1)], []])
def test_omit_image_matches_protobuf_and_drops_only_the_image(sizes):
    views = [_view(h, w, i) for i, (h, w) in enumerate(sizes)]
    direct = encode_response(views, "m", omit_image=True)
    assert direct == build_response(views, "m", omit_image=True).SerializeToString()
    full = build_response(views, "m")
    for view in full.views:
        view.ClearField("image")
    assert direct == full.SerializeToString()
