"""The disk side of ``SceneStore`` (a mixin): snapshots, the journal's compaction, quarantine of unreadable
snapshots, the disk budget, loading a scene back (snapshot + journal replay). See store.py's docstring
for the rules; this module only holds the methods that touch the snapshot directory.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .store_entries import (
    SCENE_ID_RE,
    SNAPSHOT_FORMAT,
    BudgetExceeded,
    SceneEntry,
    SceneNotFound,
    ServiceError,
    _fsync_dir,
)

log = logging.getLogger("objvid.cache.store")


class SnapshotStore:
    """Methods of ``SceneStore`` that keep scenes on disk (``snapshot_dir``)."""

    def _snapshot_meta(self, entry: SceneEntry) -> dict:
        return {
            "format": SNAPSHOT_FORMAT,
            "scene_id": entry.scene_id,
            "nbytes": entry.nbytes,
            "seq": entry.seq,
            "create_key": entry.create_key,
            "create_fingerprint": entry.create_fingerprint,
            "objects": {str(k): dict(v) for k, v in entry.objects.items()},
            "info": entry.info,
        }

    def _snapshot_now(self, entry: SceneEntry) -> None:
        """Capture and write the scene's snapshot in this thread (caller holds entry.lock); a queued older
        state of the scene is dropped."""
        with self.device():
            state = self._state(entry)
        with self._wcond:
            self._pending.pop(entry.scene_id, None)
        self._write_snapshot(entry, state, self._snapshot_meta(entry))

    def _enforce_disk_budget(self, keep: SceneEntry | None = None) -> None:
        """Delete least recently used scenes (not in use, not ``keep``) while the snapshot files are over
        the disk budget."""
        if not self.disk_budget or self.snapshot_dir is None:
            return
        while True:
            with self._lock:
                total = sum(e.disk_bytes for e in self._entries.values())
                if total <= self.disk_budget:
                    return
                victim = next(
                    (e for e in self._entries.values() if e.pins == 0 and e is not keep and e.disk_bytes),
                    None,
                )
            if victim is None:
                log.warning("event=over_disk_budget bytes=%d budget=%d", total, self.disk_budget)
                return
            self.delete(
                victim.scene_id,
                reason=(
                    "was removed (least recently used) to keep snapshots within the disk budget of "
                    f"{self.disk_budget} bytes (--snapshot-disk-budget)"
                ),
            )

    # -- snapshots ------------------------------------------------------------------------------------

    def _path(self, scene_id: str, suffix: str) -> Path:
        assert self.snapshot_dir is not None
        return self.snapshot_dir / f"{scene_id}{suffix}"

    def _state(self, entry: SceneEntry) -> dict:
        return {
            "format": SNAPSHOT_FORMAT,
            "scene_id": entry.scene_id,
            "objects": {int(k): dict(v) for k, v in entry.objects.items()},
            "seq": entry.seq,
            "keys": [
                [k, v.get("fingerprint", ""), dict(v.get("result") or {})] for k, v in entry.keys.items()
            ],
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

        from . import journal

        t0 = time.perf_counter()
        tmps = {}
        try:
            tmps[".pt"] = self._write_tmp(self._path(entry.scene_id, ".pt"), lambda f: torch.save(state, f))
            tmps[".json"] = self._write_tmp(
                self._path(entry.scene_id, ".json"), lambda f: f.write(json.dumps(meta).encode())
            )
            with entry.lock:
                # An older state (a queued write overtaken by a synchronous one) never replaces a newer one.
                if not entry.deleted and int(meta["seq"]) > entry.snapshot_seq:
                    entry.snapshot_seq = int(meta["seq"])
                    size = sum(tmp.stat().st_size for tmp in tmps.values())
                    for suffix, tmp in tmps.items():
                        os.replace(tmp, self._path(entry.scene_id, suffix))
                    _fsync_dir(self.snapshot_dir)
                    # The journal keeps only what the snapshot does not hold.
                    entry.journal_bytes = journal.compact(
                        self._path(entry.scene_id, ".wal"), int(meta["seq"])
                    )
                    entry.disk_bytes = size + entry.journal_bytes
        finally:
            for tmp in tmps.values():
                tmp.unlink(missing_ok=True)
        self._enforce_disk_budget()
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
        """Snapshot every resident scene with journal records (a clean restart then reads no journal),
        flush, and stop the writer thread (the store keeps serving from memory)."""
        if self._writer is None:
            return
        for entry in self.entries():
            if entry.resident and entry.journal_bytes and not entry.deleted:
                try:
                    with entry.lock:
                        self._refresh(entry, capture=True)
                except Exception:  # noqa: BLE001 - the journal still holds the changes
                    log.exception("event=snapshot_on_close_failed scene=%s", entry.scene_id)
        with self._wcond:
            self._closing = True
            self._wcond.notify_all()
        self._writer.join()
        self._writer = None

    def _scan_snapshots(self) -> None:
        """List the scenes of the snapshot directory (loaded on first use); scenes with journal records
        are loaded now, so their descriptions include those changes."""
        assert self.snapshot_dir is not None
        for stale in self.snapshot_dir.glob(".*.tmp"):
            stale.unlink(missing_ok=True)
        for wal in self.snapshot_dir.glob("*.wal"):  # a journal without a snapshot: its create never returned
            if not wal.with_suffix(".pt").exists():
                wal.unlink(missing_ok=True)
        for path in sorted(self.snapshot_dir.glob("*.pt"), key=lambda p: p.stat().st_mtime):
            if SCENE_ID_RE.fullmatch(path.stem):
                entry = self._scanned_entry(path.stem)
                self._entries[entry.scene_id] = entry
                if entry.create_key:
                    self._create_keys[entry.create_key] = entry.scene_id
        if self._entries:
            log.info("event=snapshots_found count=%d dir=%s", len(self._entries), self.snapshot_dir)
        for entry in [e for e in self._entries.values() if e.journal_bytes]:
            try:
                self._load(entry, None)
            except ServiceError as exc:
                log.warning("event=journal_replay_deferred scene=%s detail=%s", entry.scene_id, exc)

    def _scanned_entry(self, sid: str) -> SceneEntry:
        """A snapshot-only entry: sizes of its files, its description from the ``.json`` when readable."""
        entry = SceneEntry(sid)
        for suffix in (".pt", ".json", ".wal"):
            try:
                size = self._path(sid, suffix).stat().st_size
            except OSError:
                continue
            entry.disk_bytes += size
            if suffix == ".wal":
                entry.journal_bytes = size
        try:
            meta = json.loads(self._path(sid, ".json").read_text())
            entry.nbytes = int(meta.get("nbytes", 0))
            entry.objects = {int(k): v for k, v in meta.get("objects", {}).items()}
            entry.info = meta.get("info", {})
            entry.create_key = str(meta.get("create_key", ""))
            entry.create_fingerprint = str(meta.get("create_fingerprint", ""))
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            log.warning("event=snapshot_meta_unreadable scene=%s error=%s", sid, exc)
        return entry

    def _quarantine(self, entry: SceneEntry, reason: str) -> SceneNotFound:
        """Move a scene's unreadable files to ``<dir>/quarantine/``, forget the scene, and return the
        NOT_FOUND error every later request for it gets."""
        assert self.snapshot_dir is not None
        qdir = self.snapshot_dir / "quarantine"
        qdir.mkdir(exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        with entry.lock:
            entry.deleted = True
            for suffix in (".pt", ".json", ".wal"):
                src = self._path(entry.scene_id, suffix)
                if src.exists():
                    os.replace(src, qdir / f"{entry.scene_id}.{stamp}{suffix}")
            why = (
                f"had an unreadable snapshot ({reason}); its files were moved to "
                f"{qdir.name}/ in the snapshot directory"
            )
            with self._lock:
                if self._entries.get(entry.scene_id) is entry:
                    del self._entries[entry.scene_id]
                if entry.create_key and self._create_keys.get(entry.create_key) == entry.scene_id:
                    del self._create_keys[entry.create_key]
                self._forget(entry.scene_id, why)
        log.warning("event=snapshot_quarantined scene=%s reason=%s", entry.scene_id, reason)
        self._update_gauges()
        return self._not_found(entry.scene_id)

    def _read_snapshot(self, entry: SceneEntry) -> tuple[dict, list]:
        """(snapshot payload, journal records after it); SceneNotFound (quarantined) when unreadable."""
        import torch

        from . import journal

        path = self._path(entry.scene_id, ".pt")
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise self._not_found(entry.scene_id) from None
        except Exception as exc:  # noqa: BLE001 - truncated, corrupt, not a torch file: quarantined
            raise self._quarantine(entry, f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}") from None
        if (
            not isinstance(payload, dict)
            or payload.get("format") != SNAPSHOT_FORMAT
            or "state" not in payload
        ):
            raise self._quarantine(entry, "unknown snapshot format")
        records, _ = journal.read(self._path(entry.scene_id, ".wal"))
        seq = int(payload.get("seq", 0))
        return payload, [(s, op) for s, op in records if s > seq]

    def _rebuild(self, payload: dict, records: list):
        """(scene, objects, keys, seq) from a snapshot payload and the journal records after it."""
        scene = self._factory(payload["state"], self.device_name)
        objects = {int(k): dict(v) for k, v in payload.get("objects", {}).items()}
        keys = OrderedDict((str(k), {"fingerprint": f, "result": r}) for k, f, r in payload.get("keys", []))
        seq = int(payload.get("seq", 0))
        for rec_seq, op in records:
            self._replay(scene, op)
            if op["kind"] == "add_object":
                objects[int(op["oid"])] = dict(op.get("meta") or {})
            elif op["kind"] == "remove_object":
                objects.pop(int(op["oid"]), None)
            if op.get("key"):
                keys[op["key"]] = {"fingerprint": op.get("fingerprint", ""), "result": op.get("result") or {}}
            seq = rec_seq
        return scene, objects, keys, seq

    def _load(self, entry: SceneEntry, context) -> None:
        """Bring a snapshot-only scene back onto the device: its snapshot, then its journal (caller holds a
        pin). An unreadable snapshot or journal is quarantined (SceneNotFound with the reason)."""
        with entry.load_lock:
            if entry.resident:
                return
            if self._factory is None or self.snapshot_dir is None:
                raise self._not_found(entry.scene_id)
            self._wait_written(entry.scene_id)  # its newest state may still be on its way to disk
            payload, records = self._read_snapshot(entry)
            estimate = max(entry.nbytes, 0)
            with self._lock:
                self._make_room(estimate, entry, "scene")
                self._reserved += estimate
            bad = None
            try:
                with self.device(context):
                    try:
                        scene, objects, keys, seq = self._rebuild(payload, records)
                        nbytes = int(scene.device_bytes())
                    except (ServiceError, MemoryError):
                        raise
                    except Exception as exc:  # noqa: BLE001 - a state that does not rebuild: quarantined
                        if type(exc).__name__ == "OutOfMemoryError":
                            raise
                        bad = f"{type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''}"
            finally:
                with self._lock:
                    self._reserved -= estimate
            if bad is not None:
                raise self._quarantine(entry, bad)
            entry.objects = objects
            entry.keys = keys
            entry.seq = seq
            entry.snapshot_seq = int(payload.get("seq", 0))
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
            log.info(
                "event=snapshot_loaded scene=%s bytes=%d replayed=%d", entry.scene_id, nbytes, len(records)
            )
        self._update_gauges()
