"""objvid.runtime.protowire: the direct protobuf writer gives exactly protobuf's SerializeToString bytes (tensors of
every wire dtype and many shapes, images, nested and empty messages, both join paths), and the reader gets
the same values back as views of the bytes."""

from __future__ import annotations

import numpy as np
import pytest

from objvid.runtime import protowire, wire
from objvid.v1 import cache_pb2, types_pb2

SHAPES = [(), (1,), (5,), (2, 3), (0,), (3, 0, 2), (4, 1, 3), (130, 2)]


def _array(dtype, shape, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (
        (rng.random(shape) * 200 - 50).astype(dtype)
        if np.dtype(dtype).kind != "b"
        else rng.random(shape) > 0.5
    )


def _bytes(parts: protowire.Parts) -> bytes:
    data = protowire.join(parts)
    assert len(data) == parts.size
    return data


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 16383, 16384, 1 << 32, (1 << 63) - 1, (1 << 64) - 1])
def test_varint_round_trip_and_matches_protobuf(value):
    data = protowire.varint(value)
    assert protowire.read_varint(memoryview(data), 0, "v") == (value, len(data))
    if value < 1 << 63:  # as an int64 shape entry (packed): the same bytes as protobuf's
        p = protowire.Parts()
        p.bytes_field(2, data)
        assert _bytes(p) == types_pb2.Tensor(shape=[value]).SerializeToString()
    if value < 1 << 32:  # as a uint32 scalar; zero is left out
        p = protowire.Parts()
        p.varint_field(1, value)
        assert _bytes(p) == cache_pb2.Frame(index=value).SerializeToString()


@pytest.mark.parametrize("dtype", wire.supported_dtypes(), ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_tensor_bytes_equal_protobuf(dtype, shape):
    arr = _array(dtype, shape)
    assert _bytes(protowire.tensor(arr)) == wire.encode_tensor(arr).SerializeToString()


@pytest.mark.parametrize("make", ["transposed", "big-endian", "strided"])
def test_tensor_of_non_contiguous_or_big_endian_arrays(make):
    base = np.arange(24, dtype=np.float32).reshape(4, 6)
    arr = {"transposed": base.T, "big-endian": base.astype(">f4"), "strided": base[:, ::2]}[make]
    assert _bytes(protowire.tensor(arr)) == wire.encode_tensor(arr).SerializeToString()
    back = protowire.decode_tensor(memoryview(_bytes(protowire.tensor(arr))), "t")
    np.testing.assert_array_equal(back, arr)


def test_tensor_rejects_unsupported_dtypes():
    with pytest.raises(ValueError, match="unsupported dtype complex64"):
        protowire.tensor(np.zeros(3, np.complex64))


def test_images_raw_and_encoded_equal_protobuf():
    rgb = _array(np.uint8, (5, 7, 3))
    gray = _array(np.uint8, (4, 6), seed=1)
    for arr in (rgb, gray):
        assert _bytes(protowire.image_pixels(arr)) == wire.encode_image(arr).SerializeToString()
    png = wire.encode_png(rgb)
    assert _bytes(protowire.image_encoded(png)) == types_pb2.Image(encoded=png).SerializeToString()
    assert _bytes(protowire.image_encoded(b"")) == types_pb2.Image(encoded=b"").SerializeToString() != b""


@pytest.mark.parametrize("gil_free_min", [protowire.GIL_FREE_MIN, 0], ids=["bytes-join", "gil-free"])
def test_nested_messages_equal_protobuf(gil_free_min):
    rgb = [_array(np.uint8, (6, 8, 3), seed=s) for s in range(2)]
    depth = _array(np.float32, (2, 6, 8))
    ref = cache_pb2.RenderTrajectoryResponse(total_frames=300)
    ref.frame.index, ref.frame.num_slots = 7, 2
    for img in rgb:
        ref.frame.rgb.append(wire.encode_image(img))
    ref.frame.mask.add(encoded=b"png?")
    ref.frame.depth.CopyFrom(wire.encode_tensor(depth))
    ref.frame.object_mask.SetInParent()  # a set, empty sub-message is still written

    frame = protowire.Parts()
    frame.varint_field(1, 7)
    frame.varint_field(2, 2)
    for img in rgb:
        frame.message_field(3, protowire.image_pixels(img))
    frame.message_field(4, protowire.image_encoded(b"png?"))
    frame.message_field(5, protowire.tensor(depth))
    frame.message_field(6, protowire.Parts())
    msg = protowire.Parts()
    msg.message_field(1, frame)
    msg.varint_field(2, 300)
    msg.bytes_field(3, b"")  # empty bytes / strings are left out, as proto3 does
    data = protowire.join(msg, gil_free_min)
    assert type(data) is bytes and data == ref.SerializeToString()


def test_large_message_is_joined_outside_the_gil_into_ordinary_bytes():
    arr = _array(np.float32, (600, 600))  # 1.4 MB: over GIL_FREE_MIN
    parts = protowire.tensor(arr)
    assert parts.size > protowire.GIL_FREE_MIN
    data = protowire.join(parts)
    assert data == wire.encode_tensor(arr).SerializeToString()
    assert hash(data) == hash(bytes(data))


def test_parts_views_arrays_without_copying():
    arr = np.zeros((4, 4), np.float32)
    parts = protowire.tensor(arr)
    arr[0, 0] = 3.0  # the parts see the change until they are joined
    back = protowire.decode_tensor(memoryview(_bytes(parts)), "t")
    assert back[0, 0] == 3.0


# ---------------------------------------------------------------------------------------------------
# Reading


@pytest.mark.parametrize("dtype", wire.supported_dtypes(), ids=str)
def test_decode_tensor_round_trip_is_a_read_only_view(dtype):
    arr = _array(dtype, (3, 4, 2), seed=2)
    data = _bytes(protowire.tensor(arr))
    back = protowire.decode_tensor(memoryview(data), "t")
    assert back.dtype == wire.decode_tensor(types_pb2.Tensor.FromString(data)).dtype
    np.testing.assert_array_equal(back, arr)
    assert np.shares_memory(back, np.frombuffer(data, np.uint8)) and not back.flags.writeable


def test_fields_of_a_message():
    ref = types_pb2.Camera(intrinsics=[1.0, 2.0], width=640, height=480)
    got = list(protowire.fields(memoryview(ref.SerializeToString()), "camera"))
    assert [(f, wt) for f, wt, _ in got] == [(1, protowire.LEN), (3, protowire.VARINT), (4, protowire.VARINT)]
    assert np.frombuffer(got[0][2], "<f8").tolist() == [1.0, 2.0]
    assert (got[1][2], got[2][2]) == (640, 480)


@pytest.mark.parametrize(
    "data, text",
    [
        (b"\x08\x08\x12\x01\x02\x1a\x07" + b"\0" * 7, "byte count 7 does not match shape \\[2\\] x float32"),
        (b"\x08\x63\x12\x01\x01\x1a\x01\0", "unknown dtype code 99"),
        (b"\x08\x01\x1a\x01\0", "empty shape"),
        (b"\x08\x01\x12\x05\x01", "runs past the end"),
        (b"\x08\xff", "truncated or malformed varint"),
        (b"\x0f", "unsupported wire type 7"),
    ],
    ids=["byte-count", "dtype", "no-shape", "cut", "varint", "wire-type"],
)
def test_decode_tensor_errors_name_the_field(data, text):
    with pytest.raises(ValueError, match=f"^t: .*{text}"):
        protowire.decode_tensor(memoryview(data), "t")


def test_passthrough_serializer():
    msg = types_pb2.Camera(width=3)
    assert protowire.passthrough(b"abc") == b"abc"
    assert protowire.passthrough(msg) == msg.SerializeToString()
