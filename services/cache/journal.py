"""Write-ahead journal of scene changes (``<snapshot-dir>/<scene>.wal``): acknowledged changes survive kill -9.

With ``--snapshot-dir``, every change to a scene is appended here and fsynced *before* the RPC answers; a
snapshot (``<scene>.pt``) records the sequence number of the last change it contains. Loading a scene is
its snapshot plus the journal records after that number, applied in order (``apply``). After a snapshot
is written, records it already contains are dropped (``compact``).

Record: ``b"OVJ1"``, payload length (uint64 LE), CRC-32 of the payload (uint32 LE), payload = ``torch.save``
of ``{"seq": int, "op": dict}`` (tensors, numbers, strings; read back with ``weights_only=True``). A torn
or corrupt record ends the journal there: it was never acknowledged (the fsync comes first), so the
records before it are the acknowledged history.

Operations (``op["kind"]``), each replayed exactly as the service applied it:
``add_object`` (points (N, 3) float32, colors (N, 3) uint8, transform (4, 4) | None, normals (N, 3) | None,
oid, meta),
``set_transform`` (oid, transform (4, 4)), ``remove_object`` (oid),
``add_view`` (image (H, W, 3) uint8, depth (H, W) float32 already aligned, K (3, 3), w2c (4, 4), mask | None).
Each may carry ``key`` / ``fingerprint`` / ``result``: the idempotency key it answered.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np

MAGIC = b"OVJ1"
_HEAD = struct.Struct("<4sQI")


def _tensors(value: Any) -> Any:
    """numpy arrays -> torch tensors (what ``weights_only`` loading accepts), recursively."""
    import torch

    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.array(value, order="C"))  # a copy: the array may be read-only
    if isinstance(value, dict):
        return {k: _tensors(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_tensors(v) for v in value]
    return value


def encode(seq: int, op: dict) -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save({"seq": int(seq), "op": _tensors(op)}, buf)
    payload = buf.getvalue()
    return _HEAD.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload


def append(path: Path, seq: int, op: dict) -> int:
    """Append one record and fsync it (and, for a new file, its directory). Returns the bytes written."""
    record = encode(seq, op)
    new = not path.exists()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, record)
        os.fsync(fd)
    finally:
        os.close(fd)
    if new:
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return len(record)


def read(path: Path) -> tuple[list[tuple[int, dict]], int]:
    """(records [(seq, op)], bytes of valid records); stops at the first torn or corrupt record."""
    import torch

    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return [], 0
    out, pos = [], 0
    while pos + _HEAD.size <= len(data):
        magic, length, crc = _HEAD.unpack_from(data, pos)
        start, end = pos + _HEAD.size, pos + _HEAD.size + length
        if magic != MAGIC or end > len(data) or zlib.crc32(data[start:end]) != crc:
            break
        try:
            rec = torch.load(io.BytesIO(data[start:end]), map_location="cpu", weights_only=True)
            out.append((int(rec["seq"]), rec["op"]))
        except Exception:  # noqa: BLE001 - a record that does not decode ends the journal like a torn one
            break
        pos = end
    return out, pos


def compact(path: Path, after_seq: int) -> int:
    """Keep only records with seq > ``after_seq`` (atomic rewrite; the file goes when none is left).
    Returns the journal's new size in bytes."""
    records, valid = read(path)
    keep = [(s, op) for s, op in records if s > after_seq]
    if not keep:
        path.unlink(missing_ok=True)
        return 0
    if len(keep) == len(records):
        return valid
    blob = b"".join(encode(s, op) for s, op in keep)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(blob)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return len(blob)


def _np(value: Any) -> Any:
    return value.numpy() if hasattr(value, "numpy") else value


def add_object_op(
    points, colors, transform, normals, oid: int, meta: dict, key: str, fingerprint: str
) -> dict:
    """The ``add_object`` operation (points (N, 3) float32, colours (N, 3) uint8, transform (4, 4) or None,
    normals (N, 3) float32 or None) with its idempotency key and result ``{"oid": oid}``."""
    op = {
        "kind": "add_object",
        "points": np.asarray(points, np.float32),
        "colors": np.asarray(colors, np.uint8),
    }
    op.update(transform=transform, oid=oid, meta=meta, key=key, fingerprint=fingerprint, result={"oid": oid})
    op["normals"] = None if normals is None else np.asarray(normals, np.float32)
    return op


def add_view_op(image, depth, K, w2c, mask, key: str, fingerprint: str, result: dict) -> dict:
    """The ``add_view`` operation (image (H, W, 3) uint8, depth (H, W) float32 already aligned, K (3, 3),
    w2c (4, 4), mask (H, W) bool or None) with its idempotency key and result."""
    op = {"kind": "add_view", "image": np.asarray(image), "depth": np.asarray(depth, np.float32)}
    op.update(K=K, w2c=w2c, mask=None if mask is None else np.asarray(mask, bool))
    op.update(key=key, fingerprint=fingerprint, result=result)
    return op


def apply(scene: Any, op: dict) -> None:
    """Replay one operation on a ``Scene`` (the inverse of what the service journaled)."""
    kind = op["kind"]
    if kind == "add_object":
        t, n = op.get("transform"), op.get("normals")
        oid = scene.add_object(
            _np(op["points"]),
            _np(op["colors"]),
            None if t is None else _np(t),
            normals=None if n is None else _np(n),
        )
        if oid != int(op["oid"]):
            raise ValueError(f"journal replay: object id {oid} differs from the journaled {int(op['oid'])}")
    elif kind == "set_transform":
        scene.set_transform(int(op["oid"]), _np(op["transform"]))
    elif kind == "remove_object":
        scene.remove_object(int(op["oid"]))
    elif kind == "add_view":
        mask = op.get("mask")
        scene.add_view(
            _np(op["image"]),
            _np(op["depth"]),
            _np(op["K"]),
            _np(op["w2c"]),
            mask=None if mask is None else _np(mask),
        )
    else:
        raise ValueError(f"journal replay: unknown operation {kind!r}")
