"""Zero-copy decoder of the cache's frame responses (the client's fast path; 0.1 ms per 704x1280 frame).

``decode_frame_bytes`` reads a serialized ``RenderResponse`` / ``RenderTrajectoryResponse`` as numpy views
of the received bytes, without building protobuf objects (the protobuf API takes ~11 ms a frame:
docs/performance.md). The server-side writer is ``objvid.cache.frames``; tests compare both to protobuf.
"""

from __future__ import annotations

import numpy as np

from objvid.runtime import protowire, wire


def _decode_image_bytes(buf: memoryview, name: str, mask: bool) -> np.ndarray:
    """Serialized ``Image`` -> (H, W, 3) uint8 (rgb) or (H, W) uint8 0/1 (mask); raw pixels are views."""
    for field, wire_type, value in protowire.fields(buf, name):
        if field == 1 and wire_type == protowire.LEN:
            arr = wire.decode_image_bytes(bytes(value), name, grayscale=mask)
            return (arr > 127).astype(np.uint8) if mask else arr  # PNG masks are 255 / 0
        if field == 2 and wire_type == protowire.LEN:
            arr = protowire.decode_tensor(value, f"{name}.pixels")
            if arr.dtype not in (np.uint8, np.bool_) or arr.ndim != (2 if mask else 3):
                raise ValueError(f"{name}.pixels: unexpected {arr.dtype} shape {list(arr.shape)}")
            return arr.view(np.uint8)
    raise ValueError(f"{name}: missing (set `encoded` or `pixels`)")


def _int32s(value, wire_type: int, name: str) -> list[int]:
    """A packed (LEN) or single (VARINT) repeated int32 field -> its values."""
    if wire_type == protowire.VARINT:
        raw = [value]
    elif wire_type == protowire.LEN:
        raw, pos, buf = [], 0, value
        while pos < len(buf):
            v, pos = protowire.read_varint(buf, pos, name)
            raw.append(v)
    else:
        raise ValueError(f"{name}: unexpected wire type {wire_type}")
    return [v - (1 << 64) if v >= 1 << 63 else v for v in raw]


def _stack(arrs: list[np.ndarray]) -> np.ndarray:
    return arrs[0][None] if len(arrs) == 1 else np.stack(arrs)  # one slot: a view, no copy


def decode_frame_bytes(data: bytes | memoryview, name: str = "response") -> dict:
    """Serialized ``RenderResponse`` or ``RenderTrajectoryResponse`` -> dict of the frame.

    Keys: ``index``, ``num_slots``, ``total_frames`` (0 for ``Render``), and per requested output
    ``rgb`` (N, H, W, 3) uint8, ``mask`` (N, H, W) uint8 0/1, ``depth`` (N, H, W) float32,
    ``object_mask`` (N, H, W) int16 (absent outputs are missing), ``slot_sources`` (list of N ints,
    multi-view scenes only). Raw arrays are read-only views of
    ``data`` (keep it alive; one buffer slot: no copy at all); PNG images are decoded. Equal to parsing
    with the protobuf API and ``wire.decode_image`` / ``wire.decode_tensor``. Raises ValueError naming the
    field on malformed input.
    """
    out: dict = {"index": 0, "num_slots": 0, "total_frames": 0}
    rgb: list[np.ndarray] = []
    masks: list[np.ndarray] = []
    bits, width = None, 0
    for field, wire_type, value in protowire.fields(memoryview(data).cast("B"), name):
        if field == 2 and wire_type == protowire.VARINT:
            out["total_frames"] = value
        if field != 1 or wire_type != protowire.LEN:
            continue
        for f, wt, v in protowire.fields(value, f"{name}.frame"):
            if f == 1 and wt == protowire.VARINT:
                out["index"] = v
            elif f == 2 and wt == protowire.VARINT:
                out["num_slots"] = v
            elif f == 3 and wt == protowire.LEN:
                rgb.append(_decode_image_bytes(v, f"{name}.frame.rgb[{len(rgb)}]", mask=False))
            elif f == 4 and wt == protowire.LEN:
                masks.append(_decode_image_bytes(v, f"{name}.frame.mask[{len(masks)}]", mask=True))
            elif f == 5 and wt == protowire.LEN:
                out["depth"] = protowire.decode_tensor(v, f"{name}.frame.depth")
            elif f == 6 and wt == protowire.LEN:
                out["object_mask"] = protowire.decode_tensor(v, f"{name}.frame.object_mask")
            elif f == 21 and wt == protowire.LEN:
                bits = protowire.decode_tensor(v, f"{name}.frame.mask_bits")
            elif f == 22 and wt == protowire.VARINT:
                width = v
            elif f == 7:  # multi-view scenes: the source view of each slot (-1 = empty)
                out.setdefault("slot_sources", []).extend(_int32s(v, wt, f"{name}.frame.slot_sources"))
    if bits is not None:
        masks = [unpack_mask_bits(bits, width, f"{name}.frame.mask_bits")]
    if rgb:
        out["rgb"] = _stack(rgb)
    if len(masks) == 1 and bits is not None:
        out["mask"] = masks[0]
    elif masks:
        out["mask"] = _stack(masks)
    return out


def unpack_mask_bits(bits: np.ndarray, width: int, name: str = "mask_bits") -> np.ndarray:
    """(N, H, ceil(W / 8)) uint8 bit-packed masks (least significant bit first) -> (N, H, W) uint8 0/1."""
    if bits.dtype != np.uint8 or bits.ndim != 3 or width <= 0 or (width + 7) // 8 != bits.shape[-1]:
        raise ValueError(
            f"{name}: expected uint8 (N, H, ceil({width} / 8)), got {bits.dtype} {list(bits.shape)}"
        )
    return np.unpackbits(bits, axis=-1, count=width, bitorder="little")
