"""glibc malloc settings for processes that move multi-MB messages (servers and the client alike)."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger("objvid.runtime.malloc")

# mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

#: glibc's upper limit for M_MMAP_THRESHOLD on 64-bit (HEAP_MAX_SIZE / 2), above a 7 MB frame.
MMAP_THRESHOLD = 32 * 1024 * 1024


def tune_malloc(mmap_threshold: int = MMAP_THRESHOLD, trim_threshold: int = 512 * 1024 * 1024) -> bool:
    """Make glibc reuse freed multi-MB buffers instead of unmapping them; process-wide. True when glibc
    accepted both settings (False elsewhere, never raises).

    With glibc's defaults, allocations above a sliding threshold get fresh ``mmap`` pages and freed heap
    tops go back to the kernel, so each request's multi-MB buffers (input frames, ~7 MB responses, their
    protobuf and gRPC copies) are page-faulted and zero-filled again on every call, often while holding the
    GIL. Allocations up to ``mmap_threshold`` bytes stay in the heap, and it is not trimmed below
    ``trim_threshold`` bytes of free space. Costs resident memory up to the peak of the messages in flight.
    """
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c")).mallopt
    except (OSError, AttributeError, TypeError):  # not glibc
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = mallopt(_M_MMAP_THRESHOLD, mmap_threshold) == 1 and mallopt(_M_TRIM_THRESHOLD, trim_threshold) == 1
    log.debug(
        "event=malloc_tuned ok=%s mmap_threshold=%d trim_threshold=%d", ok, mmap_threshold, trim_threshold
    )
    return ok
