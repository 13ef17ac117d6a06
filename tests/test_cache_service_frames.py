"""The direct wire encoder of rendered frames (objvid.cache.frames) produces exactly the bytes of the protobuf
API (the plain reference), for every output combination, encoding, slot count and index; the direct wire
decoder reads them back into the same arrays as the protobuf API + objvid.runtime.wire, without copying raw pixels."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from objvid.cache import frames
from objvid.cache.frames import (
    encode_render_response,
    encode_trajectory_response,
    fill_frame,
    outputs_to_host,
    packed_to_host,
)
from objvid.cache.render_common import RenderOutput
from objvid.runtime import wire
from objvid.runtime.frames import decode_frame_bytes
from objvid.v1 import cache_pb2, types_pb2

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


@pytest.fixture(params=["join", "gil-free"])
def join_path(request, monkeypatch):
    """Both ways of assembling the response bytes: ``bytes.join`` (small messages) and the numpy copy
    outside the GIL (messages from 1 MiB; here forced for every size)."""
    if request.param == "gil-free":
        monkeypatch.setattr(frames, "_GIL_FREE_MIN", 0)
    return request.param


@pytest.mark.parametrize("png", [False, True], ids=["raw", "png"])
@pytest.mark.parametrize("n_slots", [1, 2])
def test_direct_encoding_equals_protobuf_serialization(png, n_slots, join_path):
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


def test_large_frame_is_assembled_outside_the_gil_and_equals_protobuf():
    out = _output(T=1, N=1, H=360, W=480, seed=4)  # ~1.4 MB: the numpy path by default
    host = outputs_to_host(out, ("rgb", "mask", "depth"))
    data = encode_render_response(host, 0)
    assert len(data) > frames._GIL_FREE_MIN and isinstance(data, bytes)
    ref = cache_pb2.RenderResponse()
    fill_frame(ref.frame, host, 0, 0, False)
    assert data == ref.SerializeToString()
    assert hash(data) == hash(ref.SerializeToString())  # an ordinary, immutable bytes object


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


def _protobuf_decode(frame: cache_pb2.Frame) -> dict:
    """The plain reference: protobuf objects + objvid.runtime.wire (as client/sdk.py decodes frames)."""
    out = {"index": frame.index, "num_slots": frame.num_slots}
    if len(frame.rgb):
        out["rgb"] = np.stack([wire.decode_image(m) for m in frame.rgb])
    if len(frame.mask):
        masks = np.stack([wire.decode_image(m, grayscale=True) for m in frame.mask])
        encoded = frame.mask[0].WhichOneof("content") == "encoded"
        out["mask"] = (masks > 127).astype(np.uint8) if encoded else masks
    if frame.HasField("depth"):
        out["depth"] = wire.decode_tensor(frame.depth)
    if frame.HasField("object_mask"):
        out["object_mask"] = wire.decode_tensor(frame.object_mask)
    return out


@pytest.mark.parametrize("png", [False, True], ids=["raw", "png"])
@pytest.mark.parametrize("n_slots", [1, 2])
def test_direct_decoding_equals_protobuf_decoding(png, n_slots):
    out = _output(N=n_slots, seed=n_slots)
    for r in range(1, 5):
        for names in itertools.combinations(OUTPUTS, r):
            host = outputs_to_host(out, names)
            data = encode_trajectory_response(host, 2, 77, 300, png)
            got = decode_frame_bytes(data)
            ref = _protobuf_decode(cache_pb2.RenderTrajectoryResponse.FromString(data).frame)
            assert (got.pop("index"), got.pop("num_slots"), got.pop("total_frames")) == (77, n_slots, 300)
            assert sorted(got) == sorted(names) == sorted(k for k in ref if k in OUTPUTS)
            for n in names:
                assert got[n].dtype == ref[n].dtype and got[n].shape == ref[n].shape, n
                np.testing.assert_array_equal(got[n], ref[n], err_msg=n)
                np.testing.assert_array_equal(got[n], host[n][2], err_msg=n)
            got = decode_frame_bytes(encode_render_response(host, 1, png))
            assert got["index"] == 0 and got["total_frames"] == 0
            for n in names:
                np.testing.assert_array_equal(got[n], host[n][1], err_msg=n)


def test_direct_decoding_views_the_bytes_and_reads_unpacked_shapes():
    host = outputs_to_host(_output(N=1), OUTPUTS)
    data = encode_render_response(host, 0)
    got = decode_frame_bytes(data)
    whole = np.frombuffer(data, np.uint8)
    for n in OUTPUTS:
        assert np.shares_memory(got[n], whole), n  # no copy of the pixels
        assert not got[n].flags.writeable
    # A writer that sends the shape unpacked (repeated varint fields) is read the same way.
    t = types_pb2.Tensor(dtype=types_pb2.DTYPE_FLOAT32, data=np.arange(6, dtype=np.float32).tobytes())
    unpacked = b"\x08" + bytes([t.dtype]) + b"\x10\x02\x10\x03" + b"\x1a\x18" + t.data
    frame = b"\x10\x01" + b"\x2a" + bytes([len(unpacked)]) + unpacked
    got = decode_frame_bytes(b"\x0a" + bytes([len(frame)]) + frame)
    np.testing.assert_array_equal(got["depth"], np.arange(6, dtype=np.float32).reshape(2, 3))


@pytest.mark.parametrize(
    "mutate, text",
    [
        (lambda b: b[:-5], "runs past the end"),
        (lambda b: b[:3], "runs past the end"),
        (lambda b: b"\x0a\xff", "truncated or malformed varint"),
        (lambda b: b"\x0f", "unsupported wire type"),
    ],
    ids=["cut-pixels", "cut-header", "bad-varint", "bad-wire-type"],
)
def test_direct_decoding_rejects_malformed_bytes(mutate, text):
    data = encode_render_response(outputs_to_host(_output(N=1), ("rgb", "depth")), 0)
    with pytest.raises(ValueError, match=text):
        decode_frame_bytes(mutate(data))


def test_direct_decoding_checks_tensor_byte_counts():
    frame = cache_pb2.RenderResponse()
    frame.frame.num_slots = 1
    frame.frame.depth.CopyFrom(
        types_pb2.Tensor(dtype=types_pb2.DTYPE_FLOAT32, shape=[1, 2, 2], data=b"\0" * 12)
    )
    with pytest.raises(ValueError, match=r"response.frame.depth: byte count 12 does not match"):
        decode_frame_bytes(frame.SerializeToString())
    frame.frame.depth.dtype = 99
    with pytest.raises(ValueError, match="unknown dtype code 99"):
        decode_frame_bytes(frame.SerializeToString())
