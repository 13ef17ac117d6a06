"""LiftResponse serialisation: a direct encoder (fast path) and the protobuf-object builder (reference).

A 704x1280 view carries ~7 MB (depth float32 3.6 MB, mask bool 0.9 MB, image uint8 2.7 MB). Building
protobuf objects costs one copy of every array (``tobytes``) and a second one in ``SerializeToString``;
``encode_response`` writes the same wire bytes with a single ``b"".join`` over the arrays' buffers.
``tests/test_depth_encode.py`` checks that both give identical bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from objvid import wire
from objvid.depth.lift import LiftedView
from objvid.v1 import depth_pb2

# protobuf wire types
_VARINT, _LEN = 0, 2


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _tag(field: int, wire_type: int) -> bytes:
    return _varint((field << 3) | wire_type)


def _len_field(field: int, parts: list, size: int) -> tuple[list, int]:
    """Prefix ``parts`` (``size`` bytes) with a length-delimited field header."""
    head = _tag(field, _LEN) + _varint(size)
    return [head, *parts], len(head) + size


@lru_cache(maxsize=32)
def _dtype_code(dtype: np.dtype) -> int:
    return wire.encode_tensor(np.empty((0,), dtype)).dtype


def _tensor(array: np.ndarray) -> tuple[list, int]:
    """``objvid.v1.Tensor`` fields for a C-contiguous native-endian array: header bytes + the array buffer."""
    code = _dtype_code(array.dtype)
    parts: list = []
    size = 0
    if code:
        head = _tag(1, _VARINT) + _varint(code)
        parts.append(head)
        size += len(head)
    if array.shape:
        dims = b"".join(_varint(int(d)) for d in array.shape)
        head = _tag(2, _LEN) + _varint(len(dims)) + dims
        parts.append(head)
        size += len(head)
    if array.nbytes:
        head = _tag(3, _LEN) + _varint(array.nbytes)
        parts += [head, memoryview(array).cast("B")]
        size += len(head) + array.nbytes
    return parts, size


def _view(view: LiftedView) -> tuple[list, int]:
    parts: list = []
    size = 0
    for field, array in ((1, view.depth), (2, view.mask)):
        p, n = _len_field(field, *_tensor(np.ascontiguousarray(array)))
        parts += p
        size += n
    k = np.asarray(view.intrinsics, dtype="<f8").ravel()
    p, n = _len_field(3, [k.tobytes()], k.nbytes)
    parts += p
    size += n
    for field, value in ((4, view.width), (5, view.height)):
        if value:
            head = _tag(field, _VARINT) + _varint(value)
            parts.append(head)
            size += len(head)
    pixels, pixels_size = _len_field(2, *_tensor(np.ascontiguousarray(view.image)))  # Image.pixels
    p, n = _len_field(6, pixels, pixels_size)
    return parts + p, size + n


def encode_response(views: Sequence[LiftedView], model: str) -> bytes:
    """Serialised ``LiftResponse`` (fast path): one copy of each array."""
    parts: list = []
    for view in views:
        p, n = _len_field(1, *_view(view))
        parts += p
    if model:
        name = model.encode()
        parts += [_tag(2, _LEN), _varint(len(name)), name]
    return b"".join(parts)


def build_response(views: Sequence[LiftedView], model: str) -> depth_pb2.LiftResponse:
    """The same response as protobuf objects (reference; also what in-process callers get)."""
    response = depth_pb2.LiftResponse(model=model)
    for view in views:
        out = response.views.add()
        # CopyFrom shares the fresh message's bytes; constructor keywords would deep-copy them (slow).
        out.depth.CopyFrom(wire.encode_tensor(view.depth, "depth"))
        out.mask.CopyFrom(wire.encode_tensor(view.mask, "mask"))
        out.image.pixels.CopyFrom(wire.encode_tensor(view.image, "image"))
        out.intrinsics.extend(np.asarray(view.intrinsics, dtype=np.float64).ravel().tolist())
        out.width = view.width
        out.height = view.height
    return response
