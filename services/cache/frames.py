"""Rendered frames on the wire: device -> host transfer and the ``Render`` / ``RenderTrajectory`` responses.

Hot path (per-frame ``Render`` at 704x1280 carries ~7 MB):
- ``outputs_to_host``: every requested output of a batch is packed on the device and copied to the host
  once (into pinned memory from torch's caching host allocator); on the CPU the library's tensors are
  viewed without a copy.
- ``encode_render_response`` / ``encode_trajectory_response`` write the protobuf wire format directly:
  a few header bytes around memoryviews of the host arrays, joined once. The pixels are copied exactly
  once into the response bytes (building ``Tensor`` messages and then serializing copies them twice),
  and that copy runs outside the GIL (``_join``), so concurrent calls' Python work goes on meanwhile.
  ``fill_frame`` builds the same messages with the protobuf API; tests check both give identical bytes.
The servicer returns these ``bytes`` as responses; ``add_cache_service`` registers a serializer that
passes bytes through and serializes messages as usual.

Client side, ``decode_frame_bytes`` reads a serialized ``RenderResponse`` / ``RenderTrajectoryResponse``
(e.g. from a call made with ``response_deserializer=None``) straight into numpy arrays that view the
received bytes: no protobuf objects, no copies of the pixels (the protobuf API copies them on parsing
and again on every ``.data`` access).
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator

import grpc
import numpy as np

from objvid import wire
from objvid.v1 import cache_pb2, types_pb2

_NP_CODES = {
    np.dtype(np.uint8): types_pb2.DTYPE_UINT8,
    np.dtype(np.float32): types_pb2.DTYPE_FLOAT32,
    np.dtype(np.int16): types_pb2.DTYPE_INT16,
}
_TORCH_TO_NP = {"uint8": np.uint8, "bool": np.uint8, "float32": np.float32, "int16": np.int16}


# ---------------------------------------------------------------------------------------------------
# Device -> host


def outputs_to_host(out, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """RenderOutput tensors (T, N, H, W[, 3]) -> host numpy arrays; bool masks become uint8 0/1.

    CUDA: one packed device->host copy for all outputs (pinned staging memory); CPU: zero-copy views.
    The arrays stay valid as long as the returned dict lives.
    """
    tensors = {n: getattr(out, n) for n in names}
    first = next(iter(tensors.values()))
    if first.device.type != "cpu":
        return packed_to_host(tensors, pin=True)
    host = {}
    for n, t in tensors.items():
        a = t.contiguous().numpy()
        host[n] = a.view(np.uint8) if a.dtype == np.bool_ else a
    return host


def packed_to_host(tensors: dict, pin: bool) -> dict[str, np.ndarray]:
    """Pack the tensors' bytes on their device, copy them to the host once, view them per output."""
    import torch

    flats = [t.contiguous().reshape(-1).view(torch.uint8) for t in tensors.values()]
    packed = flats[0] if len(flats) == 1 else torch.cat(flats)
    staging = torch.empty(packed.numel(), dtype=torch.uint8, pin_memory=pin)
    staging.copy_(packed)  # synchronous: the data is on the host when this returns
    flat = staging.numpy()
    host, off = {}, 0
    for n, t in tensors.items():
        dt = np.dtype(_TORCH_TO_NP[str(t.dtype).removeprefix("torch.")])
        nbytes = t.numel() * dt.itemsize
        host[n] = flat[off : off + nbytes].view(dt).reshape(tuple(t.shape))
        off += nbytes
    host["_staging"] = staging  # keeps the (pinned) block alive while the arrays are in use
    return host


# ---------------------------------------------------------------------------------------------------
# Reference encoder (protobuf API)


def _fill_tensor(msg: types_pb2.Tensor, arr: np.ndarray) -> None:
    msg.dtype = _NP_CODES[arr.dtype]
    msg.shape.extend(arr.shape)
    msg.data = arr.tobytes()


def fill_frame(frame: cache_pb2.Frame, host: dict[str, np.ndarray], t: int, index: int, png: bool) -> None:
    """Fill ``frame`` in place with camera ``t``: per-slot rgb / mask images, depth and object_mask tensors."""
    any_arr = next(v for k, v in host.items() if not k.startswith("_"))
    frame.index = index
    frame.num_slots = any_arr.shape[1]
    if "rgb" in host:
        for img in host["rgb"][t]:
            msg = frame.rgb.add()
            if png:
                msg.encoded = wire.encode_png(img)
            else:
                _fill_tensor(msg.pixels, img)
    if "mask" in host:
        for m in host["mask"][t]:
            msg = frame.mask.add()
            if png:
                msg.encoded = wire.encode_png(m * np.uint8(255))
            else:
                _fill_tensor(msg.pixels, m)
    if "depth" in host:
        _fill_tensor(frame.depth, host["depth"][t])
    if "object_mask" in host:
        _fill_tensor(frame.object_mask, host["object_mask"][t])


# ---------------------------------------------------------------------------------------------------
# Direct wire encoder

_VARINT, _LEN = 0, 2


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _key(field: int, wire_type: int) -> bytes:
    return _varint((field << 3) | wire_type)


class _Parts:
    """A list of byte chunks with its total length (a protobuf message under construction)."""

    __slots__ = ("chunks", "size")

    def __init__(self) -> None:
        self.chunks: list = []
        self.size = 0

    def raw(self, b) -> None:
        self.chunks.append(b)
        self.size += len(b) if isinstance(b, bytes) else b.nbytes

    def varint_field(self, field: int, value: int) -> None:
        if value:  # proto3 leaves zero scalars out
            self.raw(_key(field, _VARINT) + _varint(value))

    def message_field(self, field: int, sub: _Parts) -> None:
        self.raw(_key(field, _LEN) + _varint(sub.size))
        self.chunks.extend(sub.chunks)
        self.size += sub.size


def _tensor(arr: np.ndarray) -> _Parts:
    p = _Parts()
    p.varint_field(1, _NP_CODES[arr.dtype])
    dims = b"".join(_varint(int(d)) for d in arr.shape)
    p.raw(_key(2, _LEN) + _varint(len(dims)) + dims)
    data = memoryview(np.ascontiguousarray(arr).reshape(-1).view(np.uint8))
    p.raw(_key(3, _LEN) + _varint(data.nbytes))
    if data.nbytes:
        p.raw(data)
    return p


def _image(arr: np.ndarray, png: bool, mask: bool) -> _Parts:
    p = _Parts()
    if png:
        data = wire.encode_png(arr * np.uint8(255) if mask else arr)
        p.raw(_key(1, _LEN) + _varint(len(data)))
        p.raw(data)
    else:
        p.message_field(2, _tensor(arr))
    return p


def _frame(host: dict[str, np.ndarray], t: int, index: int, png: bool) -> _Parts:
    any_arr = next(v for k, v in host.items() if not k.startswith("_"))
    p = _Parts()
    p.varint_field(1, index)
    p.varint_field(2, any_arr.shape[1])
    if "rgb" in host:
        for img in host["rgb"][t]:
            p.message_field(3, _image(img, png, mask=False))
    if "mask" in host:
        for m in host["mask"][t]:
            p.message_field(4, _image(m, png, mask=True))
    if "depth" in host:
        p.message_field(5, _tensor(host["depth"][t]))
    if "object_mask" in host:
        p.message_field(6, _tensor(host["object_mask"][t]))
    return p


#: Messages from this size on are assembled by ``_join`` outside the GIL.
_GIL_FREE_MIN = 1 << 20
try:  # CPython C API: a new, not yet shared bytes object may be filled in place
    _new_bytes = ctypes.pythonapi.PyBytes_FromStringAndSize
    _new_bytes.restype, _new_bytes.argtypes = ctypes.py_object, (ctypes.c_void_p, ctypes.c_ssize_t)
    _bytes_data = ctypes.pythonapi.PyBytes_AsString
    _bytes_data.restype, _bytes_data.argtypes = ctypes.c_void_p, (ctypes.py_object,)
except AttributeError:  # not CPython
    _new_bytes = None


def _join(msg: _Parts) -> bytes:
    """``b"".join(msg.chunks)``, with the copies done by numpy, which releases the GIL for them.

    ``bytes.join`` holds the GIL for its whole memcpy (~1 ms for a 7 MB frame), stalling every other
    request thread. Here the bytes object is created uninitialized (``PyBytes_FromStringAndSize(NULL, n)``)
    and filled before anyone else sees it, as the C API allows.
    """
    if msg.size < _GIL_FREE_MIN or _new_bytes is None:
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


def encode_render_response(host: dict[str, np.ndarray], t: int = 0, png: bool = False) -> bytes:
    """Serialized ``RenderResponse`` for camera ``t`` of the host outputs (index 0)."""
    msg = _Parts()
    msg.message_field(1, _frame(host, t, 0, png))
    return _join(msg)


def encode_trajectory_response(
    host: dict[str, np.ndarray], t: int, index: int, total: int, png: bool = False
) -> bytes:
    """Serialized ``RenderTrajectoryResponse``: camera ``t`` of this batch, frame ``index`` of ``total``."""
    msg = _Parts()
    msg.message_field(1, _frame(host, t, index, png))
    msg.varint_field(2, total)
    return _join(msg)


# ---------------------------------------------------------------------------------------------------
# Direct wire decoder (clients)


def _read_varint(buf: memoryview, pos: int, name: str) -> tuple[int, int]:
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


def _fields(buf: memoryview, name: str) -> Iterator[tuple[int, int, int | memoryview]]:
    """(field number, wire type, value) of a serialized message; LEN values are memoryview slices."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _read_varint(buf, pos, name)
        field, wire_type = key >> 3, key & 7
        if wire_type == _VARINT:
            value, pos = _read_varint(buf, pos, name)
        elif wire_type == _LEN:
            size, pos = _read_varint(buf, pos, name)
            if pos + size > end:
                raise ValueError(f"{name}: field {field} runs past the end of the message")
            value, pos = buf[pos : pos + size], pos + size
        elif wire_type in (1, 5):  # fixed64 / fixed32: no such fields here, skipped
            pos += 8 if wire_type == 1 else 4
            value = 0
        else:
            raise ValueError(f"{name}: unsupported wire type {wire_type} (field {field})")
        if pos > end:
            raise ValueError(f"{name}: field {field} runs past the end of the message")
        yield field, wire_type, value


def _decode_tensor_bytes(buf: memoryview, name: str) -> np.ndarray:
    """Serialized ``Tensor`` -> read-only array viewing ``buf``, checked like ``wire.decode_tensor``."""
    code, dims, data = 0, [], memoryview(b"")
    for field, wire_type, value in _fields(buf, name):
        if field == 1 and wire_type == _VARINT:
            code = value
        elif field == 2 and wire_type == _LEN:  # packed shape
            pos = 0
            while pos < len(value):
                d, pos = _read_varint(value, pos, f"{name}.shape")
                dims.append(d)
        elif field == 2 and wire_type == _VARINT:  # unpacked shape
            dims.append(value)
        elif field == 3 and wire_type == _LEN:
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


def _decode_image_bytes(buf: memoryview, name: str, mask: bool) -> np.ndarray:
    """Serialized ``Image`` -> (H, W, 3) uint8 (rgb) or (H, W) uint8 0/1 (mask); raw pixels are views."""
    for field, wire_type, value in _fields(buf, name):
        if field == 1 and wire_type == _LEN:
            arr = wire.decode_image_bytes(bytes(value), name, grayscale=mask)
            return (arr > 127).astype(np.uint8) if mask else arr  # PNG masks are 255 / 0
        if field == 2 and wire_type == _LEN:
            arr = _decode_tensor_bytes(value, f"{name}.pixels")
            if arr.dtype not in (np.uint8, np.bool_) or arr.ndim != (2 if mask else 3):
                raise ValueError(f"{name}.pixels: unexpected {arr.dtype} shape {list(arr.shape)}")
            return arr.view(np.uint8)
    raise ValueError(f"{name}: missing (set `encoded` or `pixels`)")


def _stack(arrs: list[np.ndarray]) -> np.ndarray:
    return arrs[0][None] if len(arrs) == 1 else np.stack(arrs)  # one slot: a view, no copy


def decode_frame_bytes(data: bytes | memoryview, name: str = "response") -> dict:
    """Serialized ``RenderResponse`` or ``RenderTrajectoryResponse`` -> dict of the frame.

    Keys: ``index``, ``num_slots``, ``total_frames`` (0 for ``Render``), and per requested output
    ``rgb`` (N, H, W, 3) uint8, ``mask`` (N, H, W) uint8 0/1, ``depth`` (N, H, W) float32,
    ``object_mask`` (N, H, W) int16 (absent outputs are missing). Raw arrays are read-only views of
    ``data`` (keep it alive; one buffer slot: no copy at all); PNG images are decoded. Equal to parsing
    with the protobuf API and ``wire.decode_image`` / ``wire.decode_tensor``. Raises ValueError naming the
    field on malformed input.
    """
    out: dict = {"index": 0, "num_slots": 0, "total_frames": 0}
    rgb: list[np.ndarray] = []
    masks: list[np.ndarray] = []
    for field, wire_type, value in _fields(memoryview(data).cast("B"), name):
        if field == 2 and wire_type == _VARINT:
            out["total_frames"] = value
        if field != 1 or wire_type != _LEN:
            continue
        for f, wt, v in _fields(value, f"{name}.frame"):
            if f == 1 and wt == _VARINT:
                out["index"] = v
            elif f == 2 and wt == _VARINT:
                out["num_slots"] = v
            elif f == 3 and wt == _LEN:
                rgb.append(_decode_image_bytes(v, f"{name}.frame.rgb[{len(rgb)}]", mask=False))
            elif f == 4 and wt == _LEN:
                masks.append(_decode_image_bytes(v, f"{name}.frame.mask[{len(masks)}]", mask=True))
            elif f == 5 and wt == _LEN:
                out["depth"] = _decode_tensor_bytes(v, f"{name}.frame.depth")
            elif f == 6 and wt == _LEN:
                out["object_mask"] = _decode_tensor_bytes(v, f"{name}.frame.object_mask")
    if rgb:
        out["rgb"] = _stack(rgb)
    if masks:
        out["mask"] = _stack(masks)
    return out


# ---------------------------------------------------------------------------------------------------
# Registration


def _serialize(message) -> bytes:
    return message if isinstance(message, bytes) else message.SerializeToString()


def add_cache_service(servicer, server: grpc.Server) -> None:
    """Like the generated ``add_CacheServiceServicer_to_server``, but responses may be pre-encoded bytes."""
    service = cache_pb2.DESCRIPTOR.services_by_name["CacheService"]
    handlers = {}
    for method in service.methods:
        request_cls = getattr(cache_pb2, method.input_type.name)
        make = (
            grpc.unary_stream_rpc_method_handler
            if method.server_streaming
            else grpc.unary_unary_rpc_method_handler
        )
        handlers[method.name] = make(
            getattr(servicer, method.name),
            request_deserializer=request_cls.FromString,
            response_serializer=_serialize,
        )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service.full_name, handlers),))
