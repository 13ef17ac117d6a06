"""The direct wire encoder of rendered frames (objvid.cache.frames) produces exactly the bytes of the protobuf
API (the plain reference), for every output combination, encoding, slot count and index."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from objvid.cache.frames import (
    encode_render_response,
    encode_trajectory_response,
    fill_frame,
    outputs_to_host,
    packed_to_host,
)
from objvid.cache.render_common import RenderOutput
from objvid.v1 import cache_pb2

OUTPUTS = ("rgb", "mask", "depth", "object_mask")


def _output(T=3, N=2, H=5, W=7, seed=0) -> RenderOutput:
    import torch

    g = torch.Generator().manual_seed(seed)
    return RenderOutput(
        rgb=torch.randint(0, 256, (T, N, H, W, 3), generator=g, dtype=torch.uint8),
        mask=torch.rand((T, N, H, W), generator=g) > 0.5,
        depth=torch.rand((T, N, H, W), generator=g) * 10,
        object_mask=torch.randint(-1, 300, (T, N, H, W), generator=g, dtype=torch.int16),
    )


@pytest.mark.parametrize("png", [False, True], ids=["raw", "png"])
@pytest.mark.parametrize("n_slots", [1, 2])
def test_direct_encoding_equals_protobuf_serialization(png, n_slots):
    out = _output(N=n_slots)
    for r in range(1, 5):
        for names in itertools.combinations(OUTPUTS, r):
            host = outputs_to_host(out, names)
            for t, index, total in [(0, 0, 3), (2, 130, 300), (1, 1 << 20, 1 << 21)]:
                ref = cache_pb2.RenderTrajectoryResponse(total_frames=total)
                fill_frame(ref.frame, host, t, index, png)
                assert encode_trajectory_response(host, t, index, total, png) == ref.SerializeToString()
            ref = cache_pb2.RenderResponse()
            fill_frame(ref.frame, host, 1, 0, png)
            assert encode_render_response(host, 1, png) == ref.SerializeToString()


def test_host_views_have_the_wire_dtypes():
    out = _output()
    host = outputs_to_host(out, OUTPUTS)
    assert host["mask"].dtype == np.uint8 and set(np.unique(host["mask"])) <= {0, 1}
    np.testing.assert_array_equal(host["mask"].astype(bool), out.mask.numpy())
    assert host["depth"].dtype == np.float32 and host["object_mask"].dtype == np.int16
    assert np.shares_memory(host["rgb"], out.rgb.numpy())  # zero-copy on the CPU
    parsed = cache_pb2.RenderResponse.FromString(encode_render_response(host, 2))
    assert parsed.frame.num_slots == 2 and len(parsed.frame.rgb) == 2


def test_packed_transfer_equals_the_views():
    """The CUDA path's packing (one copy for all outputs), run on CPU tensors without pinning."""
    out = _output(T=2, N=2)
    for names in [("rgb",), ("depth", "mask"), OUTPUTS]:
        views = outputs_to_host(out, names)
        packed = packed_to_host({n: getattr(out, n) for n in names}, pin=False)
        assert not np.shares_memory(packed[names[0]], getattr(out, names[0]).numpy())
        for n in names:
            assert packed[n].dtype == views[n].dtype
            np.testing.assert_array_equal(packed[n], views[n])
        assert encode_render_response(packed, 1) == encode_render_response(views, 1)
