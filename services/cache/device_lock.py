"""The cache's FIFO device lock: requests take the device in arrival order and can give up on a deadline."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from objvid.runtime.errors import Cancelled, DeadlineExceeded

#: How often a request waiting for the device re-checks its deadline and its client.
_WAIT_SLICE_S = 0.1


class FairLock:
    """A lock granted in arrival order (``threading.Lock`` makes no fairness promise).

    ``acquire`` waits in short slices so it can give up on a deadline or when ``should_abort()`` turns
    true, keeping its place in the queue meanwhile.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._queue: deque[object] = deque()
        self._held = False

    def acquire(self, deadline: float | None = None, should_abort: Callable[[], bool] | None = None) -> None:
        """Block until granted. Raises DeadlineExceeded (monotonic ``deadline`` passed) or Cancelled."""
        ticket = object()
        with self._cond:
            self._queue.append(ticket)
            try:
                while self._held or self._queue[0] is not ticket:
                    wait = _WAIT_SLICE_S
                    if deadline is not None:
                        wait = min(wait, deadline - time.monotonic())
                        if wait <= 0:
                            raise DeadlineExceeded("deadline exceeded while waiting for the device")
                    if should_abort is not None and should_abort():
                        raise Cancelled("client went away while waiting for the device")
                    self._cond.wait(wait)
            except BaseException:
                self._queue.remove(ticket)
                self._cond.notify_all()
                raise
            self._queue.popleft()
            self._held = True

    def release(self) -> None:
        with self._cond:
            self._held = False
            self._cond.notify_all()

    @property
    def waiting(self) -> int:
        with self._cond:
            return len(self._queue)
