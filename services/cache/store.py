"""Scene store of the cache service: ids, device-memory budget with LRU eviction, snapshots, device queue.

- **Ids**: caller-chosen (``[A-Za-z0-9_-]{1,64}``) or generated (``s-`` + 16 hex digits).
- **Budget**: the scenes resident on the device hold at most ``budget_bytes`` (``Scene.device_bytes()``).
  Making room evicts the least recently used scenes that no request is using at that moment. A scene
  larger than the whole budget is refused (``BudgetExceeded``).
- **Eviction**: without a snapshot directory an evicted scene is gone (``SceneNotFound`` tells the caller to
  create it again). With one, eviction only drops device residency: the next request loads the snapshot
  back (making room in turn).
- **Snapshots**: after every change the scene's ``state_dict()`` is captured (host copy) and a background
  writer puts it in ``<dir>/<id>.pt`` with its description in ``<dir>/<id>.json``, atomically (temporary
  files, fsync, ``os.replace``, directory fsync). Bursts of changes coalesce: only the newest state of a
  scene waits in the queue. ``flush()`` / ``close()`` wait for the queue (the server calls it on stop). A
  new store on the same directory lists those scenes at once and loads each on first use.
- **Device queue**: all library calls run under one FIFO lock (``device()``), so concurrent requests are
  served in arrival order, long trajectories yield the device between batches, and a waiting request
  gives up when its deadline passes or its client goes away.
- **Thread safety**: ``_lock`` guards the table and byte accounting (never held while waiting on the
  device); ``entry.lock`` serializes changes to one scene and their snapshot writes; ``entry.load_lock``
  makes one thread load a snapshot.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from objvid.runtime import errors

from .device_lock import FairLock

log = logging.getLogger("objvid.cache.store")

SCENE_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
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


class SceneStore:
    """Scenes by id within a device-memory budget (see module docstring).

    device: torch device string for new and restored scenes. budget_bytes: device bytes all resident
    scenes may hold. snapshot_dir: optional directory for snapshots. describe: ``(scene, entry) -> dict``,
    the JSON-able description stored with each snapshot. scene_factory: ``(state, device) -> Scene``
    (``Scene.from_state_dict``). metrics: optional CacheMetrics.
    """

    def __init__(
        self,
        device: str,
        budget_bytes: int,
        *,
        snapshot_dir: str | os.PathLike | None = None,
        describe: Callable[[Any, SceneEntry], dict] | None = None,
        scene_factory: Callable[[dict, str], Any] | None = None,
        metrics=None,
    ) -> None:
        if budget_bytes <= 0:
            raise ValueError(f"memory_budget: must be > 0 bytes, got {budget_bytes}")
        self.device_name = device
        self.budget = int(budget_bytes)
        self.snapshot_dir = Path(snapshot_dir) if snapshot_dir else None
        self._describe = describe or (lambda scene, entry: {})
        self._factory = scene_factory
        self.metrics = metrics
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, SceneEntry] = OrderedDict()  # LRU order: oldest first
        self._evicted: OrderedDict[str, None] = OrderedDict()  # ids evicted without a snapshot
        self._creating: set[str] = set()
        self._reserved = 0
        self.evictions = 0
        self._device_lock = FairLock()
        # Snapshot writer: scene id -> (entry, state, meta) waiting to be written (newest only).
        self._wcond = threading.Condition()
        self._pending: dict[str, tuple[SceneEntry, dict, dict]] = {}
        self._writing: str | None = None
        self._closing = False
        self._writer: threading.Thread | None = None
        if self.snapshot_dir is not None:
            self.snapshot_dir.mkdir(parents=True, exist_ok=True)
            self._scan_snapshots()
            self._writer = threading.Thread(target=self._writer_loop, name="snapshot-writer", daemon=True)
            self._writer.start()
        if metrics is not None:
            metrics.budget_bytes.set(self.budget)
        self._update_gauges()

    # -- device queue ---------------------------------------------------------------------------------

    @contextmanager
    def device(self, context=None) -> Iterator[None]:
        """Hold the device (FIFO) for library calls; honours the RPC's deadline and cancellation."""
        deadline, abort = _remaining_deadline(context)
        t0 = time.monotonic()
        self._device_lock.acquire(deadline, abort)
        if self.metrics is not None:
            self.metrics.queue_wait.observe(time.monotonic() - t0)
        try:
            yield
        finally:
            self._device_lock.release()

    # -- accounting -----------------------------------------------------------------------------------

    def _resident_bytes(self) -> int:
        return sum(e.nbytes for e in self._entries.values() if e.resident)

    @property
    def bytes_in_use(self) -> int:
        with self._lock:
            return self._resident_bytes()

    def _update_gauges(self) -> None:
        if self.metrics is None:
            return
        with self._lock:
            resident = [e for e in self._entries.values() if e.resident]
            self.metrics.scenes_resident.set(len(resident))
            self.metrics.scenes_known.set(len(self._entries))
            self.metrics.device_bytes.set(sum(e.nbytes for e in resident))

    def _make_room(self, need: int, keep: SceneEntry | None, what: str) -> None:
        """Evict LRU unpinned scenes (not ``keep``) until ``need`` more bytes fit. Caller holds _lock."""
        own = keep.nbytes if keep is not None and keep.resident else 0
        if own + need > self.budget:
            raise BudgetExceeded(
                f"{what}: needs {own + need} bytes of device memory, more than the whole budget of "
                f"{self.budget} bytes (--memory-budget)"
            )
        while self._resident_bytes() + self._reserved + need > self.budget:
            victim = next(
                (e for e in self._entries.values() if e.resident and e.pins == 0 and e is not keep), None
            )
            if victim is None:
                raise BudgetExceeded(
                    f"{what}: needs {need} bytes but the device memory budget ({self.budget} bytes) is held by "
                    "scenes in use right now; retry later"
                )
            self._evict(victim)

    def _evict(self, entry: SceneEntry) -> None:
        """Drop an entry's device residency. Caller holds _lock."""
        freed = entry.nbytes
        entry.scene = None
        self.evictions += 1
        if self.metrics is not None:
            self.metrics.evictions.inc()
        if self.snapshot_dir is None:
            del self._entries[entry.scene_id]
            self._evicted[entry.scene_id] = None
            while len(self._evicted) > 100_000:
                self._evicted.popitem(last=False)
        log.info(
            "event=scene_evicted scene=%s bytes=%d snapshot=%s",
            entry.scene_id,
            freed,
            self.snapshot_dir is not None,
        )

    def make_room(self, need: int, keep: SceneEntry | None = None, what: str = "scene") -> None:
        """Public form of _make_room (for growth of an existing scene, e.g. a new buffer slot)."""
        with self._lock:
            self._make_room(need, keep, what)
        self._update_gauges()

    # -- lookup ---------------------------------------------------------------------------------------

    def _not_found(self, scene_id: str) -> SceneNotFound:
        if scene_id in self._evicted:
            why = "was evicted from device memory to make room for other scenes"
        else:
            why = "is unknown or was deleted (or the server restarted without --snapshot-dir)"
        return SceneNotFound(f"scene_id: scene {scene_id!r} {why}; create it again with CreateScene")

    def entry(self, scene_id: str) -> SceneEntry:
        """The entry without loading or pinning it. Raises SceneNotFound."""
        with self._lock:
            e = self._entries.get(scene_id)
            if e is None:
                raise self._not_found(scene_id)
            return e

    def entries(self) -> list[SceneEntry]:
        with self._lock:
            return list(self._entries.values())

    @contextmanager
    def use(self, scene_id: str, context=None) -> Iterator[SceneEntry]:
        """Pin a scene (no eviction while pinned), load its snapshot if needed, mark it recently used."""
        with self._lock:
            e = self._entries.get(scene_id)
            if e is None:
                raise self._not_found(scene_id)
            e.pins += 1
            self._entries.move_to_end(scene_id)
        try:
            if not e.resident:
                self._load(e, context)
            yield e
        finally:
            with self._lock:
                e.pins -= 1

    # -- create / change / delete ---------------------------------------------------------------------

    def new_id(self) -> str:
        while True:
            sid = "s-" + secrets.token_hex(8)
            with self._lock:
                if sid not in self._entries and sid not in self._creating:
                    return sid

    def create(
        self,
        build: Callable[[], Any],
        *,
        estimate_bytes: int,
        scene_id: str | None = None,
        context=None,
    ) -> SceneEntry:
        """Build a scene with ``build()`` (run on the device queue) and register it under a new id.

        Room for ``estimate_bytes`` is made before building; the measured size is checked afterwards.
        """
        if scene_id:
            if not SCENE_ID_RE.match(scene_id):
                raise ValueError(
                    f"scene_id: {scene_id[:80]!r} is not valid (letters, digits, '-' and '_', 1 to 64 characters)"
                )
        else:
            scene_id = self.new_id()
        with self._lock:
            if scene_id in self._entries or scene_id in self._creating:
                raise SceneExists(f"scene_id: scene {scene_id!r} already exists (DeleteScene it first)")
            self._make_room(estimate_bytes, None, "scene")
            self._creating.add(scene_id)
            self._reserved += estimate_bytes
        entry = SceneEntry(scene_id)
        try:
            with self.device(context):
                scene = build()
                nbytes = int(scene.device_bytes())
            with self._lock:
                self._reserved -= estimate_bytes
                estimate_bytes = 0
                entry.nbytes = nbytes
                self._make_room(nbytes, None, "scene")
                entry.scene = scene
                entry.pins = 1
                self._entries[scene_id] = entry
                self._evicted.pop(scene_id, None)
        finally:
            with self._lock:
                self._reserved -= estimate_bytes
                self._creating.discard(scene_id)
        try:
            with entry.lock:
                self._refresh(entry)
        finally:
            with self._lock:
                entry.pins -= 1
        log.info("event=scene_created scene=%s bytes=%d", scene_id, entry.nbytes)
        return entry

    def changed(self, entry: SceneEntry) -> None:
        """After a change to ``entry.scene`` (caller holds ``entry.lock`` and a pin): re-measure, keep the
        budget (evicting other scenes; a scene that outgrew the whole budget stays but is logged) and
        write the snapshot. The change is already made, so this bookkeeping never gives up on the
        caller's deadline (it would leave the byte count, description and snapshot stale)."""
        nbytes = int(entry.scene.device_bytes())  # tensor sizes only: no device work
        with self._lock:
            grew = nbytes - entry.nbytes
            entry.nbytes = nbytes
            if grew > 0:
                try:
                    self._make_room(0, entry, "scene")
                except BudgetExceeded as exc:
                    log.warning("event=over_budget scene=%s detail=%s", entry.scene_id, exc)
        self._refresh(entry)

    def _refresh(self, entry: SceneEntry) -> None:
        """Recompute the description; with snapshots, capture the state and queue its write (caller holds
        entry.lock). The capture is synchronous (a copy to host memory), the file write is not."""
        with self.device():
            entry.info = self._describe(entry.scene, entry)
            state = self._state(entry) if self.snapshot_dir is not None else None
        if state is not None and not entry.deleted:
            meta = {
                "format": SNAPSHOT_FORMAT,
                "scene_id": entry.scene_id,
                "nbytes": entry.nbytes,
                "objects": {str(k): dict(v) for k, v in entry.objects.items()},
                "info": entry.info,
            }
            with self._wcond:
                self._pending[entry.scene_id] = (entry, state, meta)  # a newer state replaces a queued one
                self._wcond.notify_all()
        self._update_gauges()

    def delete(self, scene_id: str) -> None:
        with self._lock:
            e = self._entries.get(scene_id)
            if e is None:
                raise self._not_found(scene_id)
        with e.lock:
            e.deleted = True
            # Files first, the id last: a new scene under the same id can only be created (and queue
            # its own snapshot) once this one's queued state and files are gone.
            if self.snapshot_dir is not None:
                with self._wcond:
                    self._pending.pop(scene_id, None)
                for path in (self._path(scene_id, ".pt"), self._path(scene_id, ".json")):
                    path.unlink(missing_ok=True)
            with self._lock:
                self._entries.pop(scene_id, None)  # requests in flight keep their reference until done
        self._update_gauges()
        log.info("event=scene_deleted scene=%s", scene_id)

    # -- snapshots ------------------------------------------------------------------------------------

    def _path(self, scene_id: str, suffix: str) -> Path:
        assert self.snapshot_dir is not None
        return self.snapshot_dir / f"{scene_id}{suffix}"

    def _state(self, entry: SceneEntry) -> dict:
        return {
            "format": SNAPSHOT_FORMAT,
            "scene_id": entry.scene_id,
            "objects": {int(k): dict(v) for k, v in entry.objects.items()},
            "state": entry.scene.state_dict(),
        }

    @staticmethod
    def _write_tmp(path: Path, write: Callable[[Any], None]) -> Path:
        """Write through ``write(file)`` into a temporary file beside ``path``, fsynced; returns its path."""
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return Path(tmp)

    def _write_snapshot(self, entry: SceneEntry, state: dict, meta: dict) -> None:
        """Atomic: both files are written and fsynced as temporaries, then renamed under entry.lock (a
        deleted scene's temporaries are dropped instead), then the directory is fsynced."""
        import torch

        t0 = time.perf_counter()
        tmps = {}
        try:
            tmps[".pt"] = self._write_tmp(self._path(entry.scene_id, ".pt"), lambda f: torch.save(state, f))
            tmps[".json"] = self._write_tmp(
                self._path(entry.scene_id, ".json"), lambda f: f.write(json.dumps(meta).encode())
            )
            with entry.lock:
                if not entry.deleted:
                    for suffix, tmp in tmps.items():
                        os.replace(tmp, self._path(entry.scene_id, suffix))
        finally:
            for tmp in tmps.values():
                tmp.unlink(missing_ok=True)
        dir_fd = os.open(self.snapshot_dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        log.debug("event=snapshot_written scene=%s seconds=%.3f", entry.scene_id, time.perf_counter() - t0)

    def _writer_loop(self) -> None:
        """Background snapshot writer: one write at a time, the newest state of each scene, in queue order."""
        while True:
            with self._wcond:
                while not self._pending and not self._closing:
                    self._wcond.wait()
                if not self._pending:
                    return
                sid = next(iter(self._pending))
                entry, state, meta = self._pending.pop(sid)
                self._writing = sid
            try:
                self._write_snapshot(entry, state, meta)
            except Exception:  # noqa: BLE001 - the scene stays served from memory
                log.exception("event=snapshot_failed scene=%s", sid)
            finally:
                with self._wcond:
                    self._writing = None
                    self._wcond.notify_all()

    def _wait_written(self, scene_id: str) -> None:
        with self._wcond:
            while scene_id in self._pending or self._writing == scene_id:
                self._wcond.wait()

    def flush(self) -> None:
        """Block until every queued snapshot is on disk."""
        with self._wcond:
            while self._pending or self._writing is not None:
                self._wcond.wait()

    def close(self) -> None:
        """Flush snapshots and stop the writer thread (the store keeps serving from memory)."""
        if self._writer is None:
            return
        with self._wcond:
            self._closing = True
            self._wcond.notify_all()
        self._writer.join()
        self._writer = None

    def _scan_snapshots(self) -> None:
        assert self.snapshot_dir is not None
        for stale in self.snapshot_dir.glob(".*.tmp"):
            stale.unlink(missing_ok=True)
        for path in sorted(self.snapshot_dir.glob("*.pt"), key=lambda p: p.stat().st_mtime):
            sid = path.stem
            if not SCENE_ID_RE.match(sid):
                continue
            entry = SceneEntry(sid)
            try:
                meta = json.loads(self._path(sid, ".json").read_text())
                entry.nbytes = int(meta.get("nbytes", 0))
                entry.objects = {int(k): v for k, v in meta.get("objects", {}).items()}
                entry.info = meta.get("info", {})
            except (OSError, ValueError) as exc:
                log.warning("event=snapshot_meta_unreadable scene=%s error=%s", sid, exc)
            self._entries[sid] = entry
        if self._entries:
            log.info("event=snapshots_found count=%d dir=%s", len(self._entries), self.snapshot_dir)

    def _load(self, entry: SceneEntry, context) -> None:
        """Bring a snapshot-only scene back onto the device (caller holds a pin)."""
        import torch

        with entry.load_lock:
            if entry.resident:
                return
            if self._factory is None or self.snapshot_dir is None:
                raise self._not_found(entry.scene_id)
            self._wait_written(entry.scene_id)  # its newest state may still be on its way to disk
            path = self._path(entry.scene_id, ".pt")
            try:
                payload = torch.load(path, map_location="cpu", weights_only=True)
            except FileNotFoundError:
                raise self._not_found(entry.scene_id) from None
            if not isinstance(payload, dict) or payload.get("format") != SNAPSHOT_FORMAT:
                raise Precondition(f"scene_id: snapshot of {entry.scene_id!r} has an unknown format")
            estimate = max(entry.nbytes, 0)
            with self._lock:
                self._make_room(estimate, entry, "scene")
                self._reserved += estimate
            try:
                with self.device(context):
                    scene = self._factory(payload["state"], self.device_name)
                    nbytes = int(scene.device_bytes())
            finally:
                with self._lock:
                    self._reserved -= estimate
            objects = {int(k): dict(v) for k, v in payload.get("objects", {}).items()}
            entry.objects = objects
            # From the loaded state, not the .json beside it (missing or older after a crash between
            # the two renames of a snapshot write).
            info = self._describe(scene, entry)
            with self._lock:
                entry.info = info
                entry.nbytes = nbytes
                entry.scene = scene
                try:
                    self._make_room(0, entry, "scene")
                except BudgetExceeded as exc:
                    log.warning("event=over_budget scene=%s detail=%s", entry.scene_id, exc)
            log.info("event=snapshot_loaded scene=%s bytes=%d", entry.scene_id, nbytes)
        self._update_gauges()
