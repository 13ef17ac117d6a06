"""Protobuf wire format written and read directly, for responses that carry multi-MB arrays.

Building ``Tensor`` messages copies every array once (``tobytes``) and ``SerializeToString`` copies it
again; parsing copies it once more and the upb backend copies ``.data`` on every access. The services
instead assemble their large responses from a few header bytes around memoryviews of the arrays
(``Parts``) and join them once (``join``: the copy runs outside the GIL for large messages); clients
can read them back as numpy views of the received bytes (``fields``, ``decode_tensor``).

The bytes are exactly those of ``SerializeToString`` for the same message (proto3: zero scalars and
empty bytes / packed fields are left out, set sub-messages and oneof members are written, fields in
number order when the caller adds them in that order). Each service keeps its message-specific
assembly (``objvid.depth.encode``, ``objvid.cache.frames``) and its reference builder on the protobuf
API beside it; tests compare the two.

Arrays are written as ``objvid.v1.Tensor``: little-endian C-ordered bytes with the dtype codes of
``objvid.runtime.wire``.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator
from functools import lru_cache

import numpy as np

from objvid.runtime import wire

#: Wire types (the low 3 bits of a field key).
VARINT, I64, LEN, I32 = 0, 1, 2, 5

# ---------------------------------------------------------------------------------------------------
# Writing


def varint(value: int) -> bytes:
    """Non-negative int -> base-128 varint bytes (7 bits a byte, least significant group first)."""
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def tag(field: int, wire_type: int) -> bytes:
    """The key that starts field ``field`` of wire type ``wire_type``."""
    return varint((field << 3) | wire_type)


class Parts:
    """A message under construction: byte chunks (``bytes`` or memoryviews, not copied) and their size.

    Add fields in field-number order to get protobuf's own byte order.
    """

    __slots__ = ("chunks", "size")

    def __init__(self) -> None:
        self.chunks: list = []
        self.size = 0

    def raw(self, chunk) -> None:
        """Append ``chunk`` (bytes-like) as it is."""
        self.chunks.append(chunk)
        self.size += len(chunk) if isinstance(chunk, bytes) else memoryview(chunk).nbytes

    def varint_field(self, field: int, value: int) -> None:
        """A varint scalar (uint32/int64/bool/enum >= 0); zero is left out, as proto3 does."""
        if value:
            self.raw(tag(field, VARINT) + varint(value))

    def bytes_field(self, field: int, data, always: bool = False) -> None:
        """A length-delimited ``bytes`` / ``string`` / packed field; empty is left out unless ``always``
        (oneof members, which protobuf writes even when empty)."""
        n = memoryview(data).nbytes
        if n or always:
            self.raw(tag(field, LEN) + varint(n))
            if n:
                self.raw(data)

    def message_field(self, field: int, sub: Parts) -> None:
        """A set sub-message (written even when empty); ``sub``'s chunks are shared, not copied."""
        self.raw(tag(field, LEN) + varint(sub.size))
        self.chunks.extend(sub.chunks)
        self.size += sub.size


@lru_cache(maxsize=32)
def dtype_code(dtype: np.dtype) -> int:
    """numpy dtype -> ``objvid.v1.Dtype`` code (ValueError naming the dtype when unsupported)."""
    return wire.encode_tensor(np.empty((0,), dtype)).dtype


def tensor(array: np.ndarray) -> Parts:
    """``objvid.v1.Tensor`` fields of ``array`` (any wire dtype, any shape): headers + a view of its bytes.

    No copy when ``array`` is C-contiguous and little-endian (otherwise one, as ``wire.encode_tensor``).
    The returned parts view ``array``: keep it unchanged until the message is joined.
    """
    code = dtype_code(array.dtype)
    array = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
    p = Parts()
    p.varint_field(1, code)
    if array.ndim:  # packed repeated int64
        p.bytes_field(2, b"".join(varint(int(d)) for d in array.shape))
    p.bytes_field(3, memoryview(array.reshape(-1).view(np.uint8)))
    return p


def image_pixels(array: np.ndarray) -> Parts:
    """``objvid.v1.Image`` with raw ``pixels`` (uint8 (H, W, 3) or (H, W)); views ``array``."""
    p = Parts()
    p.message_field(2, tensor(array))
    return p


def image_encoded(data: bytes) -> Parts:
    """``objvid.v1.Image`` with ``encoded`` PNG/JPEG bytes."""
    p = Parts()
    p.bytes_field(1, data, always=True)
    return p


#: Messages from this size on are assembled by ``join`` outside the GIL.
GIL_FREE_MIN = 1 << 20
try:  # CPython C API: a new, not yet shared bytes object may be filled in place
    _new_bytes = ctypes.pythonapi.PyBytes_FromStringAndSize
    _new_bytes.restype, _new_bytes.argtypes = ctypes.py_object, (ctypes.c_void_p, ctypes.c_ssize_t)
    _bytes_data = ctypes.pythonapi.PyBytes_AsString
    _bytes_data.restype, _bytes_data.argtypes = ctypes.c_void_p, (ctypes.py_object,)
except AttributeError:  # not CPython
    _new_bytes = None


def join(msg: Parts, gil_free_min: int = GIL_FREE_MIN) -> bytes:
    """The serialized message: ``b"".join(msg.chunks)``, copied by numpy (GIL released) from
    ``gil_free_min`` bytes on.

    ``bytes.join`` holds the GIL for its whole memcpy (~1 ms for a 7 MB frame), stalling every other
    request thread. Here the bytes object is created uninitialized (``PyBytes_FromStringAndSize(NULL, n)``)
    and filled before anyone else sees it, as the C API allows.
    """
    if msg.size < gil_free_min or _new_bytes is None:
        return b"".join(msg.chunks)
    out = _new_bytes(None, msg.size)
    dst = np.frombuffer((ctypes.c_char * msg.size).from_address(_bytes_data(out)), np.uint8)
    off = 0
    for chunk in msg.chunks:
        src = np.frombuffer(chunk, np.uint8)
        dst[off : off + src.size] = src
        off += src.size
    if off != msg.size:
        raise RuntimeError(f"response encoding: wrote {off} of {msg.size} bytes")
    return out


def passthrough(message) -> bytes:
    """gRPC response serializer: pre-encoded ``bytes`` as they are, protobuf messages serialized."""
    return message if isinstance(message, bytes) else message.SerializeToString()


# ---------------------------------------------------------------------------------------------------
# Reading


def read_varint(buf: memoryview, pos: int, name: str) -> tuple[int, int]:
    """(value, next position) of the varint at ``pos``; ValueError naming ``name`` when malformed."""
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError(f"{name}: truncated or malformed varint")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7


def fields(buf: memoryview, name: str) -> Iterator[tuple[int, int, int | memoryview]]:
    """(field number, wire type, value) of a serialized message; LEN values are memoryview slices of
    ``buf`` (no copy), fixed32/fixed64 values are skipped (reported as 0)."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = read_varint(buf, pos, name)
        field, wire_type = key >> 3, key & 7
        if wire_type == VARINT:
            value, pos = read_varint(buf, pos, name)
        elif wire_type == LEN:
            size, pos = read_varint(buf, pos, name)
            if pos + size > end:
                raise ValueError(f"{name}: field {field} runs past the end of the message")
            value, pos = buf[pos : pos + size], pos + size
        elif wire_type in (I64, I32):
            pos += 8 if wire_type == I64 else 4
            value = 0
        else:
            raise ValueError(f"{name}: unsupported wire type {wire_type} (field {field})")
        if pos > end:
            raise ValueError(f"{name}: field {field} runs past the end of the message")
        yield field, wire_type, value


def decode_tensor(buf: memoryview, name: str) -> np.ndarray:
    """Serialized ``Tensor`` -> read-only array viewing ``buf`` (packed or unpacked shape), checked like
    ``wire.decode_tensor`` (known dtype, non-empty shape, byte count)."""
    code, dims, data = 0, [], memoryview(b"")
    for field, wire_type, value in fields(buf, name):
        if field == 1 and wire_type == VARINT:
            code = value
        elif field == 2 and wire_type == LEN:  # packed shape
            pos = 0
            while pos < len(value):
                d, pos = read_varint(value, pos, f"{name}.shape")
                dims.append(d)
        elif field == 2 and wire_type == VARINT:  # unpacked shape
            dims.append(value)
        elif field == 3 and wire_type == LEN:
            data = value
    dt = wire._DTYPES.get(code)
    if dt is None:
        raise ValueError(f"{name}: unknown dtype code {code}")
    if not dims:
        raise ValueError(f"{name}: empty shape")
    count = 1
    for d in dims:
        count *= d
    if count > wire.MAX_ELEMENTS or count * dt.itemsize != data.nbytes:
        raise ValueError(f"{name}: byte count {data.nbytes} does not match shape {dims} x {dt.name}")
    return np.frombuffer(data, dtype=dt).reshape(dims)
