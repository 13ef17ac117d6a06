"""Rendered frames on the wire: device -> host transfer and the ``Render`` / ``RenderTrajectory`` responses.

Hot path (per-frame ``Render`` at 704x1280 carries ~7 MB):
- ``outputs_to_host``: every requested output of a batch is packed on the device and copied to the host
  once (into pinned memory from torch's caching host allocator); on the CPU the library's tensors are
  viewed without a copy.
- ``encode_render_response`` / ``encode_trajectory_response`` write the protobuf wire format directly:
  a few header bytes around memoryviews of the host arrays, joined once. The pixels are copied exactly
  once into the response bytes (building ``Tensor`` messages and then serializing copies them twice),
  and that copy runs outside the GIL (``protowire.join``), so concurrent calls' Python work goes on
  meanwhile.
  ``fill_frame`` builds the same messages with the protobuf API; tests check both give identical bytes.
The servicer returns these ``bytes`` as responses; ``add_cache_service`` registers a serializer that
passes bytes through and serializes messages as usual.

Client side, ``decode_frame_bytes`` reads a serialized ``RenderResponse`` / ``RenderTrajectoryResponse``
(e.g. from a call made with ``response_deserializer=None``) straight into numpy arrays that view the
received bytes: no protobuf objects, no copies of the pixels (the protobuf API copies them on parsing
and again on every ``.data`` access).
"""

from __future__ import annotations

import grpc
import numpy as np

from objvid.runtime import protowire, wire
from objvid.v1 import cache_pb2, types_pb2

_TORCH_TO_NP = {
    "uint8": np.uint8,
    "bool": np.uint8,
    "float32": np.float32,
    "int16": np.int16,
    "float16": np.float16,
}
_BIT_WEIGHTS = (1, 2, 4, 8, 16, 32, 64, 128)


# ---------------------------------------------------------------------------------------------------
# Device -> host


def pack_mask_bits(mask):
    """(..., W) bool / 0-1 tensor -> (..., ceil(W / 8)) uint8 on its device; bit j (least significant
    first) of byte i is pixel 8 * i + j (``np.packbits(..., bitorder="little")``)."""
    import torch

    x = mask.to(torch.uint8)
    pad = (-x.shape[-1]) % 8
    if pad:
        x = torch.nn.functional.pad(x, (0, pad))
    x = x.reshape(*x.shape[:-1], -1, 8)
    weights = torch.tensor(_BIT_WEIGHTS, dtype=torch.uint8, device=x.device)
    return (x * weights).sum(-1, dtype=torch.uint8)


def outputs_to_host(out, names: tuple[str, ...], pack_masks: bool = False, depth_fp16: bool = False,
                    object_mask_slots: int = 0) -> dict:  # fmt: skip
    """RenderOutput tensors (T, N, H, W[, 3]) -> host numpy arrays; bool masks become uint8 0/1.

    pack_masks: ``mask`` becomes ``mask_bits`` (T, N, H, ceil(W / 8)) uint8 (and ``_mask_width`` = W),
    packed on the device so 8x fewer bytes cross to the host; depth_fp16: ``depth`` as float16;
    object_mask_slots k > 0: ``object_mask`` of the newest k slots only (T, k, H, W).
    CUDA: one packed device->host copy for all outputs (pinned staging memory); CPU: zero-copy views.
    The arrays stay valid as long as the returned dict lives.
    """
    tensors = {n: getattr(out, n) for n in names}
    width = None
    if pack_masks and "mask" in tensors:
        width = tensors["mask"].shape[-1]
        tensors = {("mask_bits" if n == "mask" else n): (pack_mask_bits(t) if n == "mask" else t)
                   for n, t in tensors.items()}  # fmt: skip
    if object_mask_slots and "object_mask" in tensors:
        tensors["object_mask"] = tensors["object_mask"][:, :object_mask_slots]
    if depth_fp16 and "depth" in tensors:
        tensors["depth"] = tensors["depth"].half()
    host = _to_host(tensors)
    if width is not None:
        host["_mask_width"] = width
    return host


def _to_host(tensors: dict) -> dict:
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
    msg.CopyFrom(wire.encode_tensor(arr))


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
    if "mask_bits" in host:
        _fill_tensor(frame.mask_bits, host["mask_bits"][t])
        frame.mask_width = host["_mask_width"]
    if "_slot_sources" in host:
        frame.slot_sources.extend(int(v) for v in host["_slot_sources"][t])


# ---------------------------------------------------------------------------------------------------
# Direct wire encoder (message layout of cache.proto; the wire primitives are objvid.runtime.protowire)

#: Messages from this size on are assembled outside the GIL (``protowire.join``).
_GIL_FREE_MIN = protowire.GIL_FREE_MIN


def _image(arr: np.ndarray, png: bool, mask: bool) -> protowire.Parts:
    if png:
        return protowire.image_encoded(wire.encode_png(arr * np.uint8(255) if mask else arr))
    return protowire.image_pixels(arr)


def _frame(host: dict[str, np.ndarray], t: int, index: int, png: bool) -> protowire.Parts:
    any_arr = next(v for k, v in host.items() if not k.startswith("_"))
    p = protowire.Parts()
    p.varint_field(1, index)
    p.varint_field(2, any_arr.shape[1])
    if "rgb" in host:
        for img in host["rgb"][t]:
            p.message_field(3, _image(img, png, mask=False))
    if "mask" in host:
        for m in host["mask"][t]:
            p.message_field(4, _image(m, png, mask=True))
    if "depth" in host:
        p.message_field(5, protowire.tensor(host["depth"][t]))
    if "object_mask" in host:
        p.message_field(6, protowire.tensor(host["object_mask"][t]))
    if "mask_bits" in host:
        p.message_field(21, protowire.tensor(host["mask_bits"][t]))
        p.varint_field(22, host["_mask_width"])
    if "_slot_sources" in host:  # packed repeated int32 (negative values as 64-bit two's complement)
        p.bytes_field(7, b"".join(protowire.varint(int(v) % (1 << 64)) for v in host["_slot_sources"][t]))
    return p


def encode_render_response(host: dict[str, np.ndarray], t: int = 0, png: bool = False) -> bytes:
    """Serialized ``RenderResponse`` for camera ``t`` of the host outputs (index 0)."""
    msg = protowire.Parts()
    msg.message_field(1, _frame(host, t, 0, png))
    return protowire.join(msg, _GIL_FREE_MIN)


def write_render_response_shm(writer, region, host: dict[str, np.ndarray], t: int = 0) -> bytes:
    """Write the serialized ``RenderResponse`` of camera ``t`` into the client's shared-memory ``region``
    (``RenderRequest.shm``, via ``objvid.runtime.shm.RegionWriter``); returns the small serialized
    ``RenderResponse`` that answers the call (``shm_bytes`` only). Raw encoding only (no PNG)."""
    msg = protowire.Parts()
    msg.message_field(1, _frame(host, t, 0, False))
    n = writer.write(region.name, region.size, region.key, msg.chunks, msg.size)
    answer = protowire.Parts()
    answer.varint_field(21, n)  # RenderResponse.shm_bytes
    return b"".join(answer.chunks)


def encode_trajectory_response(
    host: dict[str, np.ndarray], t: int, index: int, total: int, png: bool = False
) -> bytes:
    """Serialized ``RenderTrajectoryResponse``: camera ``t`` of this batch, frame ``index`` of ``total``."""
    msg = protowire.Parts()
    msg.message_field(1, _frame(host, t, index, png))
    msg.varint_field(2, total)
    return protowire.join(msg, _GIL_FREE_MIN)


# ---------------------------------------------------------------------------------------------------
# Registration


def add_cache_service(servicer, server: grpc.Server) -> None:
    """Like the generated ``add_CacheServiceServicer_to_server``, but responses may be pre-encoded bytes and
    requests that do not parse reach the handler as ``BadRequest`` (INVALID_ARGUMENT)."""
    from objvid.runtime.requests import lenient

    service = cache_pb2.DESCRIPTOR.services_by_name["CacheService"]
    handlers = {}
    for method in service.methods:
        request_cls = getattr(cache_pb2, method.input_type.name)
        make = {
            (False, False): grpc.unary_unary_rpc_method_handler,
            (False, True): grpc.unary_stream_rpc_method_handler,
            (True, False): grpc.stream_unary_rpc_method_handler,  # CreateVideoScene
            (True, True): grpc.stream_stream_rpc_method_handler,
        }[(method.client_streaming, method.server_streaming)]
        handlers[method.name] = make(
            getattr(servicer, method.name),
            request_deserializer=lenient(request_cls),
            response_serializer=protowire.passthrough,
        )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service.full_name, handlers),))
