"""glibc malloc settings for a process that moves multi-megabyte messages (Linux/glibc; elsewhere a no-op).

With glibc's defaults, allocations above a sliding threshold get fresh ``mmap`` pages and freed heap tops
go back to the kernel, so each request's buffers (the ~2.7 MB input frame, the ~7 MB response per view,
their protobuf and gRPC copies) are page-faulted in again on every request, often while holding the GIL.
``tune_malloc`` keeps allocations up to ``mmap_threshold`` in the heap and stops trimming it below
``trim_threshold`` of free space, so those pages are reused.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger("objvid.depth.memory")

# mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

#: glibc's upper limit for M_MMAP_THRESHOLD on 64-bit (HEAP_MAX_SIZE / 2).
MMAP_THRESHOLD = 32 * 1024 * 1024
#: Free heap kept before glibc returns memory to the kernel.
TRIM_THRESHOLD = 512 * 1024 * 1024


def tune_malloc(mmap_threshold: int = MMAP_THRESHOLD, trim_threshold: int = TRIM_THRESHOLD) -> bool:
    """Apply both settings to this process; True when glibc accepted them."""
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = mallopt(_M_MMAP_THRESHOLD, mmap_threshold) == 1 and mallopt(_M_TRIM_THRESHOLD, trim_threshold) == 1
    log.debug(
        "event=malloc_tuned ok=%s mmap_threshold=%d trim_threshold=%d", ok, mmap_threshold, trim_threshold
    )
    return ok
