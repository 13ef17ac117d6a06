"""What the scene store is made of: id rules, typed errors, ``SceneEntry`` (one scene's bookkeeping)."""

from __future__ import annotations

import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from objvid.runtime import errors

#: A whole scene id (always ``fullmatch``: ``$`` would accept a trailing newline).
SCENE_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
#: Idempotency keys remembered per scene (oldest forgotten first).
KEYS_PER_SCENE = 256
#: Longest idempotency key accepted.
MAX_KEY_LENGTH = 128
SNAPSHOT_FORMAT = "objvid.cache.snapshot/1"


# ---------------------------------------------------------------------------------------------------
# Errors with their gRPC status


# Typed errors (objvid.runtime.errors); the framework maps each to its status (objvid.serving.status).
ServiceError = errors.ServiceError


class SceneNotFound(errors.NotFound):
    pass


class SceneExists(errors.AlreadyExists):
    pass


class BudgetExceeded(errors.ResourceExhausted):
    pass


class LimitExceeded(errors.ResourceExhausted):
    pass


class Precondition(errors.FailedPrecondition):
    pass


DeadlineExceeded = errors.DeadlineExceeded
Cancelled = errors.Cancelled


def _fsync_dir(path: Path) -> None:
    dir_fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


# ---------------------------------------------------------------------------------------------------
# Entries


@dataclass
class SceneEntry:
    """One scene known to the store. ``scene`` is None while it lives only in its snapshot."""

    scene_id: str
    scene: Any = None
    nbytes: int = 0
    #: object id -> {"name": str, "num_points": int}; the library does not keep names.
    objects: dict[int, dict] = field(default_factory=dict)
    #: JSON-able description (see CacheStore's ``describe``), kept current after every change.
    info: dict = field(default_factory=dict)
    pins: int = 0
    deleted: bool = False
    #: sequence number of the last journaled change; snapshots record the one they contain
    seq: int = 0
    #: sequence number of the snapshot on disk (-1: none yet)
    snapshot_seq: int = -1
    #: idempotency key -> {"fingerprint": str, "result": dict} (answered changes, oldest first)
    keys: OrderedDict = field(default_factory=OrderedDict)
    create_key: str = ""
    create_fingerprint: str = ""
    #: bytes of this scene's snapshot files and journal on disk
    disk_bytes: int = 0
    journal_bytes: int = 0
    lock: threading.RLock = field(default_factory=threading.RLock)
    load_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def resident(self) -> bool:
        return self.scene is not None


def _remaining_deadline(context) -> tuple[float | None, Callable[[], bool] | None]:
    if context is None:
        return None, None
    remaining = context.time_remaining()
    deadline = None if remaining is None else time.monotonic() + remaining
    return deadline, (lambda: not context.is_active())
