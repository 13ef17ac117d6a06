"""``AddObject`` helpers of the cache service: an ``ObjectFile`` message parsed in a parser worker.

The file is parsed by ``parse_pool`` (a separate process: bounded in time and memory, cancellable) inside a
host-memory reservation sized by ``io.estimate_load_bytes``; meshes are sampled to points with the face
normals (used for back-face culling), PLY clouds keep their nx/ny/nz when present.
"""

from __future__ import annotations

import time

import numpy as np

from objvid.runtime.memguard import HostMemoryGuard
from objvid.v1 import cache_pb2

from .io import DEFAULT_SAMPLE_POINTS, estimate_load_bytes
from .io_limits import LoadLimits
from .parse_pool import ParsePool
from .store import LimitExceeded


def load_file(
    f: cache_pb2.ObjectFile,
    parse_pool: ParsePool,
    load_limits: LoadLimits,
    host_guard: HostMemoryGuard,
    context=None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """-> (points (M, 3) float32, colours (M, 3) uint8, normals (M, 3) float32 or None). ValueError naming
    ``file.*``; LimitExceeded over ``--max-sample-points``; the gRPC ``context`` gives the deadline and
    cancellation (None: neither)."""
    if not f.filename:
        raise ValueError("file.filename: missing (its extension picks the format: .ply .obj .glb .gltf .stl)")
    data = f.data  # read once: every access copies with the upb backend
    if not data:
        raise ValueError(f"file.data: empty (file {f.filename[:120]!r} has no bytes)")
    limit = load_limits.max_sample_points
    samples = f.sample_points or min(DEFAULT_SAMPLE_POINTS, limit)
    if samples > limit:
        raise LimitExceeded(
            f"file.sample_points: {samples} is over the limit of {limit} (--max-sample-points)"
        )
    remaining = None if context is None else context.time_remaining()
    deadline = None if remaining is None else time.monotonic() + remaining
    abort = None if context is None else (lambda: not context.is_active())
    with host_guard.reserve(estimate_load_bytes(len(data), samples), f"file {f.filename[:120]!r}"):
        return parse_pool.load(data, f.filename, samples, deadline=deadline, should_abort=abort)
