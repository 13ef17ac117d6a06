"""Same-host frame transport over shared memory (the ``Render`` RPC's fast path, docs/cache-service.md).

The client owns a region: a file in ``/dev/shm`` (POSIX shared memory) that starts with a 64-byte header,
``MAGIC`` (8 bytes) then a 16-byte random key. It names the region, its size and the key in
``RenderRequest.shm``; the cache server maps the region, checks the header, writes the serialized
``RenderResponse`` at byte ``HEADER`` and answers with ``shm_bytes`` only, so the 7 MB frame never crosses
the gRPC socket. The client decodes it with ``objvid.runtime.frames.decode_frame_bytes`` (numpy views of
the region: the same bytes, hence the same arrays, as the plain gRPC path).

- :class:`ClientRegion`: creates, owns and unlinks a region (the SDK keeps one per client, used under a lock).
- :class:`RegionWriter`: the server side; regions stay mapped between calls (no page faults per frame)
  and are re-checked (inode, size, key) on every use. Every refusal is ``ValueError("shm.<field>: why")``.

Why a file in /dev/shm and not ``multiprocessing.shared_memory``: Python < 3.13 registers every attached
segment with its resource tracker, which unlinks the client's region when the *server* exits; a plain
``os.open`` + ``mmap`` has no such side effect. Only regions that carry the client's key are written,
so a request cannot make the server overwrite any other file in /dev/shm.
"""

from __future__ import annotations

import mmap
import os
import re
import secrets
import threading
from collections import OrderedDict

import numpy as np

from objvid.runtime import protowire
from objvid.v1 import cache_pb2

MAGIC = b"OBJVIDSM"
KEY_BYTES = 16
#: Frame data starts here (header: magic, key, zero padding).
HEADER = 64
#: Where regions live (Linux POSIX shared memory).
SHM_DIR = "/dev/shm"
_NAME = re.compile(r"[A-Za-z0-9._-]{1,200}")


def region_path(name: str, field: str = "shm.name") -> str:
    """The file of region ``name`` (ValueError naming ``field`` when the name is not a plain shm name)."""
    if not _NAME.fullmatch(name or "") or name in (".", ".."):
        raise ValueError(f"{field}: must be 1-200 characters of [A-Za-z0-9._-], got {name[:40]!r}")
    return os.path.join(SHM_DIR, name)


def copy_chunks(dst: np.ndarray, chunks) -> int:
    """Copy byte chunks (bytes / memoryviews) back to back into the uint8 array ``dst``; returns the bytes
    written. numpy's copy releases the GIL for large chunks."""
    off = 0
    for chunk in chunks:
        src = np.frombuffer(chunk, np.uint8)
        dst[off : off + src.size] = src
        off += src.size
    return off


class ClientRegion:
    """A shared-memory region this process owns: ``/dev/shm/<name>`` of ``size`` bytes with the header.

    ``view(n)`` is a read-only memoryview of the ``n`` frame bytes the server wrote. Close (or use as a
    context manager) to unmap and unlink it.
    """

    def __init__(self, size: int, prefix: str = "objvid-"):
        self.name = f"{prefix}{os.getpid()}-{secrets.token_hex(8)}"
        self.key = secrets.token_bytes(KEY_BYTES)
        self.size = HEADER + int(size)
        self.path = region_path(self.name)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.ftruncate(fd, self.size)
            self._mm = mmap.mmap(fd, self.size)
        except BaseException:
            os.close(fd)
            os.unlink(self.path)
            raise
        os.close(fd)
        self._mm[: len(MAGIC) + KEY_BYTES] = MAGIC + self.key

    @property
    def capacity(self) -> int:
        """Bytes available to a frame."""
        return self.size - HEADER

    def view(self, nbytes: int) -> memoryview:
        """The ``nbytes`` frame bytes written by the server (a view: valid until the next call writes)."""
        if not 0 < nbytes <= self.capacity:
            raise ValueError(f"shm_bytes: {nbytes} outside the region's 1..{self.capacity} bytes")
        return memoryview(self._mm)[HEADER : HEADER + nbytes].toreadonly()

    def close(self) -> None:
        if self._mm is None:
            return
        try:
            self._mm.close()
        except BufferError:  # views still exported: the mapping goes when they do
            pass
        self._mm = None
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def __enter__(self) -> ClientRegion:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class RegionWriter:
    """Server side: writes frames into clients' regions, keeping up to ``max_open`` regions mapped."""

    def __init__(self, max_open: int = 64):
        self.max_open = max_open
        self._open: OrderedDict[str, tuple[mmap.mmap, int, bytes]] = OrderedDict()  # name -> (mm, inode, key)
        self._lock = threading.Lock()

    def _mapping(self, name: str, size: int, key: bytes) -> mmap.mmap:
        path = region_path(name)
        if len(key) != KEY_BYTES:
            raise ValueError(f"shm.key: must be {KEY_BYTES} bytes, got {len(key)}")
        try:
            st = os.stat(path)
        except OSError:
            raise ValueError(
                f"shm.name: no shared-memory region {name!r} on the cache server's host"
            ) from None
        if st.st_size != size:
            raise ValueError(f"shm.size: the region is {st.st_size} bytes, the request says {size}")
        with self._lock:
            hit = self._open.get(name)
            if hit is not None and hit[1] == st.st_ino and len(hit[0]) == size and hit[2] == key:
                self._open.move_to_end(name)
                return hit[0]
        if size < HEADER:
            raise ValueError(f"shm.size: {size} bytes is smaller than the {HEADER}-byte header")
        try:
            fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW)
        except OSError as exc:
            raise ValueError(f"shm.name: cannot open region {name!r} ({exc.strerror})") from None
        try:
            if os.fstat(fd).st_ino != st.st_ino:
                raise ValueError(f"shm.name: region {name!r} changed while opening it")
            mm = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        if mm[: len(MAGIC)] != MAGIC or mm[len(MAGIC) : len(MAGIC) + KEY_BYTES] != key:
            mm.close()
            raise ValueError(f"shm.key: region {name!r} does not carry this key (header mismatch)")
        with self._lock:
            old = self._open.pop(name, None)
            self._open[name] = (mm, st.st_ino, key)
            while len(self._open) > self.max_open:
                _close(self._open.popitem(last=False)[1][0])
        if old is not None:
            _close(old[0])
        return mm

    def write(self, name: str, size: int, key: bytes, chunks, nbytes: int) -> int:
        """Write ``nbytes`` of ``chunks`` at byte HEADER of region ``name``; returns ``nbytes``.

        ValueError naming ``shm.name`` / ``shm.size`` / ``shm.key`` when the region is missing, of another
        size than the request says, too small for the frame, or not the client's (key).
        """
        mm = self._mapping(name, size, key)
        if HEADER + nbytes > size:
            raise ValueError(
                f"shm.size: the frame needs {HEADER + nbytes} bytes (header included), the region holds {size}"
            )
        if os.stat(region_path(name)).st_size < HEADER + nbytes:  # truncated since: writing would SIGBUS
            raise ValueError(f"shm.size: region {name!r} shrank below the frame's size")
        dst = np.frombuffer(mm, np.uint8, count=nbytes, offset=HEADER)
        written = copy_chunks(dst, chunks)
        del dst
        if written != nbytes:
            raise RuntimeError(f"shm write: wrote {written} of {nbytes} bytes")
        return nbytes

    def close(self) -> None:
        with self._lock:
            while self._open:
                _close(self._open.popitem()[1][0])


def _close(mm: mmap.mmap) -> None:
    try:
        mm.close()
    except BufferError:  # a write in flight still views it; the mapping goes with that view
        pass


def frame_bytes_estimate(width: int, height: int, slots: int, options: cache_pb2.RenderOptions) -> int:
    """Upper bound of a serialized ``RenderResponse`` (the region's first size)."""
    outs = set(options.outputs) or {cache_pb2.RENDER_OUTPUT_RGB, cache_pb2.RENDER_OUTPUT_MASK}
    per_px = 3 * (cache_pb2.RENDER_OUTPUT_RGB in outs)
    per_px += (0.125 if options.pack_masks else 1) * (cache_pb2.RENDER_OUTPUT_MASK in outs)
    per_px += (2 if options.depth_fp16 else 4) * (cache_pb2.RENDER_OUTPUT_DEPTH in outs)
    per_px += 2 * (cache_pb2.RENDER_OUTPUT_OBJECT_MASK in outs)
    return int(per_px * width * height * slots) + 4096 * slots + 4096


def response_shm_bytes(data: bytes) -> int:
    """``RenderResponse.shm_bytes`` of a serialized answer (0 when absent)."""
    for field, wire_type, value in protowire.fields(memoryview(data), "Render"):
        if field == 21 and wire_type == protowire.VARINT:
            return value
    return 0
