"""Latest-wins work: one worker thread runs only the newest submitted job.

The preview asks for a render on every slider tick or gizmo drag; the cache answers in ~100 ms. Queuing
every request would make the preview lag further behind the hand the longer it moves. Here a new job
replaces the one waiting (never the one running), so at most one render runs and one waits, and the
picture shown is always of the most recent state.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("objvid.client.studio")


class LatestWins:
    """``submit(job)``; a worker calls ``run(job)`` for the newest job only, then ``done(job, result)``
    (or ``failed(job, exc)``). Counters: ``submitted``, ``ran``, ``dropped`` (replaced while waiting)."""

    def __init__(self, run: Callable[[Any], Any], done: Callable[[Any, Any], None],
                 failed: Callable[[Any, BaseException], None] | None = None, name: str = "latest-wins"):  # fmt: skip
        self._run, self._done = run, done
        self._failed = failed or (lambda job, exc: log.warning("event=job_failed reason=%r", str(exc)))
        self._cond = threading.Condition()
        self._pending: Any = None
        self._has_pending = False
        self._busy = False
        self._closed = False
        self.submitted = self.ran = self.dropped = 0
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, job: Any) -> None:
        with self._cond:
            if self._has_pending:
                self.dropped += 1
            self._pending, self._has_pending = job, True
            self.submitted += 1
            self._cond.notify_all()

    def idle(self, timeout: float | None = None) -> bool:
        """Wait until nothing runs or waits; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._has_pending and not self._busy, timeout)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._has_pending or self._closed)
                if self._closed:
                    return
                job, self._pending, self._has_pending = self._pending, None, False
                self._busy = True
            try:
                result = self._run(job)
            except Exception as exc:  # noqa: BLE001 - reported, the worker keeps serving
                self._failed(job, exc)
            else:
                self._done(job, result)
            finally:
                with self._cond:
                    self.ran += 1
                    self._busy = False
                    self._cond.notify_all()
