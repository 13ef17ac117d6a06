"""Scene store of the cache service: ids, device-memory budget with LRU eviction, snapshots, device queue.

Split in three modules: this one (the table, budget, creation, changes, idempotency), ``snapshots.py``
(the disk side, a mixin of ``SceneStore``) and ``store_entries.py`` (id rules, typed errors, entries).

- **Ids**: caller-chosen (the whole id must match ``[A-Za-z0-9_-]{1,64}``: no trailing newline, no path
  characters) or generated (``s-`` + 16 hex digits).
- **Idempotency**: ``create(idempotency_key=...)`` and ``recall`` / ``changed(op={"key": ...})`` remember
  the keys a scene's creation and changes answered (with a fingerprint of the request), so a retried
  request gets the first answer instead of doing the work twice; a key reused for a different request is
  INVALID_ARGUMENT. Keys live with the scene (snapshot and journal), at most ``KEYS_PER_SCENE`` per scene.
- **Budget**: the scenes resident on the device hold at most ``budget_bytes`` (``Scene.device_bytes()``).
  Making room evicts the least recently used scenes that no request is using at that moment. A scene
  larger than the whole budget is refused (``BudgetExceeded``).
- **Eviction**: without a snapshot directory an evicted scene is gone (``SceneNotFound`` tells the caller to
  create it again). With one, eviction only drops device residency: the next request loads the snapshot
  back (making room in turn).
- **Durability** (with a snapshot directory): a new scene's snapshot is on disk before ``create``
  returns; every later change is appended to the scene's journal (``journal.py``, fsynced) before
  ``changed`` returns, so an acknowledged change survives kill -9. Snapshots (``<dir>/<id>.pt`` + its
  description ``<dir>/<id>.json``, written atomically: temporaries, fsync, ``os.replace``, directory fsync)
  are taken in the background once a scene's journal passes ``snapshot_every_bytes``; the journal then
  drops the records the snapshot holds. A change without a journal record (``op=None``) waits for its
  snapshot instead. ``flush()`` / ``close()`` wait for the queue (the server calls it on stop). A new
  store on the same directory lists those scenes at once and loads each on first use (snapshot + journal).
- **Corrupt snapshots**: a snapshot or journal that cannot be loaded is moved to ``<dir>/quarantine/``,
  the scene is forgotten and every request for it gets NOT_FOUND naming the reason (it can be created
  again under the same id).
- **Disk budget** (``disk_budget`` bytes, 0 = none): when the snapshot files pass it, the least recently
  used scenes not in use are deleted (files and scene; NOT_FOUND says why).
- **Device queue**: all library calls run under one FIFO lock (``device()``), so concurrent requests are
  served in arrival order, long trajectories yield the device between batches, and a waiting request
  gives up when its deadline passes or its client goes away.
- **Thread safety**: ``_lock`` guards the table and byte accounting (never held while waiting on the
  device); ``entry.lock`` serializes changes to one scene and their snapshot writes; ``entry.load_lock``
  makes one thread load a snapshot.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .device_lock import _WAIT_SLICE_S, FairLock
from .snapshots import SnapshotStore
from .store_entries import (  # noqa: F401 - re-exported: the service and tests import them from here
    KEYS_PER_SCENE,
    MAX_KEY_LENGTH,
    SCENE_ID_RE,
    SNAPSHOT_FORMAT,
    BudgetExceeded,
    Cancelled,
    DeadlineExceeded,
    LimitExceeded,
    Precondition,
    SceneEntry,
    SceneExists,
    SceneNotFound,
    ServiceError,
    _fsync_dir,
    _remaining_deadline,
)

log = logging.getLogger("objvid.cache.store")


class SceneStore(SnapshotStore):
    """Scenes by id within a device-memory budget (see module docstring).

    device: torch device string for new and restored scenes. budget_bytes: device bytes all resident
    scenes may hold. snapshot_dir: optional directory for snapshots. describe: ``(scene, entry) -> dict``,
    the JSON-able description stored with each snapshot. scene_factory: ``(state, device) -> Scene``
    (``Scene.from_state_dict``). metrics: optional CacheMetrics. replay: ``(scene, op) -> None`` applying a
    journal record (``journal.apply``). disk_budget: bytes the snapshot directory may hold (0 = no limit).
    snapshot_every_bytes: journal size after which a scene's snapshot is rewritten.
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
        replay: Callable[[Any, dict], None] | None = None,
        disk_budget: int = 0,
        snapshot_every_bytes: int = 8 << 20,
    ) -> None:
        from . import journal

        if budget_bytes <= 0:
            raise ValueError(f"memory_budget: must be > 0 bytes, got {budget_bytes}")
        self.device_name = device
        self.budget = int(budget_bytes)
        self.snapshot_dir = Path(snapshot_dir) if snapshot_dir else None
        self._describe = describe or (lambda scene, entry: {})
        self._factory = scene_factory
        self.metrics = metrics
        self._replay = replay or journal.apply
        self.disk_budget = max(0, int(disk_budget))
        self.snapshot_every_bytes = max(1, int(snapshot_every_bytes))
        #: scene id -> why it is gone (quarantined snapshot, disk budget): NOT_FOUND names the reason
        self._gone: OrderedDict[str, str] = OrderedDict()
        #: creation idempotency key -> scene id (and keys being created right now -> their event)
        self._create_keys: dict[str, str] = {}
        self._creating_keys: dict[str, threading.Event] = {}
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
            if entry.create_key and self._create_keys.get(entry.create_key) == entry.scene_id:
                del self._create_keys[entry.create_key]
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

    def _forget(self, scene_id: str, reason: str) -> None:
        """Remember why a scene is gone (bounded). Caller holds _lock."""
        self._gone[scene_id] = reason
        self._gone.move_to_end(scene_id)
        while len(self._gone) > 100_000:
            self._gone.popitem(last=False)

    def _not_found(self, scene_id: str) -> SceneNotFound:
        if scene_id in self._gone:
            why = self._gone[scene_id]
        elif scene_id in self._evicted:
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

    @staticmethod
    def check_id(scene_id: str) -> None:
        """ValueError naming ``scene_id`` unless the whole string is a valid id."""
        if not SCENE_ID_RE.fullmatch(scene_id):
            raise ValueError(
                f"scene_id: {scene_id[:80]!r} is not valid (letters, digits, '-' and '_', 1 to 64 characters)"
            )

    @staticmethod
    def check_key(key: str, name: str = "idempotency_key") -> None:
        if len(key) > MAX_KEY_LENGTH or not key.isprintable():
            raise ValueError(f"{name}: at most {MAX_KEY_LENGTH} printable characters, got {key[:40]!r}")

    def _await_create_key(self, key: str, fingerprint: str, context) -> SceneEntry | None:
        """The scene a creation key already made (waiting for one in progress), or None. Claims the key
        for the caller when it is new (caller must release it with ``_release_create_key``)."""
        deadline, abort = _remaining_deadline(context)
        while True:
            with self._lock:
                sid = self._create_keys.get(key)
                e = None if sid is None else self._entries.get(sid)
                if sid is not None and e is None:  # that scene is gone (evicted, deleted): create it anew
                    del self._create_keys[key]
                if e is not None:
                    if e.create_fingerprint and fingerprint and e.create_fingerprint != fingerprint:
                        raise ValueError("idempotency_key: already used for a different CreateScene request")
                    return e
                event = self._creating_keys.get(key)
                if event is None:
                    self._creating_keys[key] = threading.Event()
                    return None
            wait = _WAIT_SLICE_S
            if deadline is not None:
                wait = min(wait, deadline - time.monotonic())
                if wait <= 0:
                    raise DeadlineExceeded("deadline exceeded while the same request was being handled")
            if abort is not None and abort():
                raise Cancelled("client went away")
            event.wait(wait)

    def _release_create_key(self, key: str) -> None:
        with self._lock:
            event = self._creating_keys.pop(key, None)
        if event is not None:
            event.set()

    def create(
        self,
        build: Callable[[], Any],
        *,
        estimate_bytes: int,
        scene_id: str | None = None,
        context=None,
        idempotency_key: str = "",
        fingerprint: str = "",
    ) -> SceneEntry:
        """Build a scene with ``build()`` (run on the device queue) and register it under a new id.

        Room for ``estimate_bytes`` is made before building; the measured size is checked afterwards. With
        ``idempotency_key``, a second call with the same key returns the first call's scene. With a snapshot
        directory the scene's snapshot is on disk when this returns.
        """
        if scene_id:
            self.check_id(scene_id)
        if idempotency_key:
            self.check_key(idempotency_key)
            done = self._await_create_key(idempotency_key, fingerprint, context)
            if done is not None:
                return done
        try:
            return self._create(build, estimate_bytes, scene_id, context, idempotency_key, fingerprint)
        finally:
            if idempotency_key:
                self._release_create_key(idempotency_key)

    def _create(self, build, estimate_bytes, scene_id, context, key, fingerprint) -> SceneEntry:
        scene_id = scene_id or self.new_id()
        with self._lock:
            if scene_id in self._entries or scene_id in self._creating:
                raise SceneExists(f"scene_id: scene {scene_id!r} already exists (DeleteScene it first)")
            self._make_room(estimate_bytes, None, "scene")
            self._creating.add(scene_id)
            self._reserved += estimate_bytes
        entry = SceneEntry(scene_id, create_key=key, create_fingerprint=fingerprint)
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
                self._gone.pop(scene_id, None)
                if key:
                    self._create_keys[key] = scene_id
        finally:
            with self._lock:
                self._reserved -= estimate_bytes
                self._creating.discard(scene_id)
        try:
            with entry.lock:
                self._refresh(entry, capture=False)
                if self.snapshot_dir is not None:
                    self._snapshot_now(entry)  # durable before it is acknowledged
        finally:
            with self._lock:
                entry.pins -= 1
        log.info("event=scene_created scene=%s bytes=%d", scene_id, entry.nbytes)
        return entry

    def recall(self, entry: SceneEntry, key: str, fingerprint: str = "") -> dict | None:
        """The result a change with idempotency ``key`` already returned on this scene, or None (caller
        holds ``entry.lock``). ValueError when the key answered a different request."""
        if not key:
            return None
        self.check_key(key)
        done = entry.keys.get(key)
        if done is None:
            return None
        if done.get("fingerprint") and fingerprint and done["fingerprint"] != fingerprint:
            raise ValueError("idempotency_key: already used for a different request on this scene")
        return dict(done.get("result") or {})

    def changed(self, entry: SceneEntry, op: dict | None = None) -> None:
        """After a change to ``entry.scene`` (caller holds ``entry.lock`` and a pin): re-measure, keep the
        budget (evicting other scenes; a scene that outgrew the whole budget stays but is logged), remember
        the op's idempotency key and make the change durable: the journal record ``op`` (see journal.py)
        is fsynced before this returns; without ``op`` the scene's snapshot is written and waited for.
        The change is already made, so this bookkeeping never gives up on the caller's deadline."""
        from . import journal

        nbytes = int(entry.scene.device_bytes())  # tensor sizes only: no device work
        with self._lock:
            grew = nbytes - entry.nbytes
            entry.nbytes = nbytes
            if grew > 0:
                try:
                    self._make_room(0, entry, "scene")
                except BudgetExceeded as exc:
                    log.warning("event=over_budget scene=%s detail=%s", entry.scene_id, exc)
        if op is not None and op.get("key"):
            entry.keys[op["key"]] = {
                "fingerprint": op.get("fingerprint", ""),
                "result": op.get("result") or {},
            }
            while len(entry.keys) > KEYS_PER_SCENE:
                entry.keys.popitem(last=False)
        if self.snapshot_dir is None or entry.deleted:
            self._refresh(entry, capture=False)
            return
        entry.seq += 1
        if op is None:
            self._refresh(entry, capture=False)
            self._snapshot_now(entry)
            return
        written = journal.append(self._path(entry.scene_id, ".wal"), entry.seq, op)
        entry.journal_bytes += written
        entry.disk_bytes += written
        self._refresh(entry, capture=entry.journal_bytes >= self.snapshot_every_bytes)
        self._enforce_disk_budget(keep=entry)

    def _refresh(self, entry: SceneEntry, capture: bool = True) -> None:
        """Recompute the description; with ``capture`` and snapshots, capture the state and queue its
        write (caller holds entry.lock). The capture is synchronous (a copy to host memory), the file
        write is not."""
        with self.device():
            entry.info = self._describe(entry.scene, entry)
            state = self._state(entry) if capture and self.snapshot_dir is not None else None
        if state is not None and not entry.deleted:
            meta = self._snapshot_meta(entry)
            with self._wcond:
                self._pending[entry.scene_id] = (entry, state, meta)  # a newer state replaces a queued one
                self._wcond.notify_all()
        self._update_gauges()

    def delete(self, scene_id: str, reason: str | None = None) -> None:
        """Delete a scene and its files. ``reason``: remembered for later NOT_FOUND answers."""
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
                for suffix in (".pt", ".json", ".wal"):
                    self._path(scene_id, suffix).unlink(missing_ok=True)
            with self._lock:
                self._entries.pop(scene_id, None)  # requests in flight keep their reference until done
                if e.create_key and self._create_keys.get(e.create_key) == scene_id:
                    del self._create_keys[e.create_key]
                if reason:
                    self._forget(scene_id, reason)
        self._update_gauges()
        log.info("event=scene_deleted scene=%s reason=%s", scene_id, reason or "request")
