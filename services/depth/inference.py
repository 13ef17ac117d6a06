"""The one thread that makes every model call of a depth server.

Why a dedicated thread rather than a lock around calls from gRPC's worker threads: PyTorch keeps cuDNN's
tuned convolution plans (``cudnn.benchmark``) and the cuBLAS/cuDNN handles per thread, so every new gRPC
thread re-tunes every convolution on its first calls of each batch size, and a warm-up on the main thread
helps none of them. One thread, warmed up at start for each micro-batch size, keeps those caches hot,
orders device work without a lock, and leaves the request threads free to decode, download and encode
while the next model call runs.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

log = logging.getLogger("objvid.depth.inference")


class InferenceThread:
    """Runs submitted callables one at a time, in order, on one thread; ``submit`` returns a Future.

    A job whose Future was cancelled before it started is skipped. Jobs left when ``close`` is called
    still run; jobs submitted after it fail with RuntimeError.
    """

    def __init__(self, name: str = "depth-infer"):
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._closed = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    @property
    def ident(self) -> int | None:
        """The thread's id (tests check that model calls run here)."""
        return self._thread.ident

    def submit(self, fn: Callable[..., Any], *args, **kwargs) -> Future:
        """Queue ``fn(*args, **kwargs)``; its result or exception arrives through the Future."""
        future: Future = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("inference thread: closed")
            self._jobs.put((future, fn, args, kwargs))
        return future

    def call(self, fn: Callable[..., Any], *args, **kwargs) -> Any:
        """``submit`` and wait for the result (re-raises the job's exception)."""
        return self.submit(fn, *args, **kwargs).result()

    def close(self, timeout: float | None = 10.0) -> None:
        """Run what is queued, then stop the thread (waits up to ``timeout`` s for it)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._jobs.put(None)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            item = self._jobs.get()
            if item is None:
                return
            future, fn, args, kwargs = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as exc:  # noqa: B036 - every failure goes to the waiting request
                future.set_exception(exc)
            del item, future, fn, args, kwargs  # drop the job's tensors before waiting for the next
