"""Object files parsed in worker processes: bounded in time and memory, cancellable, off the request threads.

``load_object`` holds the GIL in parser loops a thread cannot interrupt, so the service hands each file to
a worker process and waits on a pipe (the request thread releases the GIL while it waits; health and other
RPCs stay responsive). A wait ends, and the worker is killed and replaced, when:

- the RPC's deadline passes (``ParseDeadlineExceeded``, gRPC DEADLINE_EXCEEDED),
- the client goes away (``ParseCancelled``, CANCELLED),
- the parse runs longer than ``timeout_s`` (``--parse-timeout``; ``ParseLimitExceeded``, RESOURCE_EXHAUSTED),
- the pool is closed (server drain: ``close()`` kills the workers at once, so a stop never waits on a
  parse; ``ParserStopping``, UNAVAILABLE).

Each worker caps its own address space at its size after start-up plus ``memory_bytes``
(``--parse-memory``, ``RLIMIT_AS``): an allocation above it fails with MemoryError inside the worker
(reported as RESOURCE_EXHAUSTED) instead of growing the node. Workers run at a lower CPU priority (nice 5)
and are plain ``python -m objvid.cache.parse_pool`` processes talking over two pipes (not
``multiprocessing`` start methods: those re-run the server's main module in the child); a replacement
starts in about a second (imports). At most ``workers`` files are parsed at once; further requests wait their turn (deadline and
cancellation honoured). ``workers=0`` parses in the calling thread (library use; no time bound).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection

import numpy as np

from objvid.runtime.errors import Cancelled, DeadlineExceeded, Unavailable

from .io_limits import LoadLimitExceeded, LoadLimits

log = logging.getLogger("objvid.cache.parse_pool")

_SLICE_S = 0.05
#: How long a new worker may take to import the parsers before its first job.
STARTUP_TIMEOUT_S = 120.0


class ParseLimitExceeded(LoadLimitExceeded):
    """The parse ran over --parse-timeout or --parse-memory (RESOURCE_EXHAUSTED)."""


class ParseDeadlineExceeded(DeadlineExceeded):
    pass


class ParseCancelled(Cancelled):
    pass


class ParserStopping(Unavailable):
    """The server is stopping: the parse was abandoned (UNAVAILABLE: retry against another replica)."""


def _exit_with_parent(period_s: float = 1.0) -> None:
    """End this worker when the server that started it is gone (even mid-parse, e.g. after kill -9)."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(period_s)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _cap_address_space(memory_bytes: int) -> None:
    """RLIMIT_AS = this process's size now + ``memory_bytes`` (0 = no cap)."""
    import resource

    if memory_bytes > 0:
        with open("/proc/self/statm", "rb") as f:
            vsize = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        resource.setrlimit(resource.RLIMIT_AS, (vsize + memory_bytes, vsize + memory_bytes))


def _parse_job(load_object, data: bytes, filename: str, sample_points: int, seed: int, limits) -> tuple:
    """One job -> ("ok", (points, colors, normals | None), None) | ("limit", message, None) |
    ("value", message, None)."""
    try:
        pts, col, nrm = load_object(
            data, filename=filename, sample_points=sample_points, seed=seed, limits=limits, with_normals=True
        )
        return ("ok", (pts, col, nrm), None)
    except LoadLimitExceeded as exc:
        return ("limit", str(exc), None)
    except ValueError as exc:
        return ("value", str(exc), None)
    except MemoryError:
        return ("limit", f"{filename}: ran out of the parser's memory limit (--parse-memory)", None)
    except BaseException as exc:  # noqa: BLE001 - report, the worker stays usable
        return ("value", f"{filename}: unreadable ({type(exc).__name__})", None)


def _worker_main(conn, out, memory_bytes: int) -> None:
    """Worker loop: receive (data, filename, sample_points, seed, limits), send back the result or error."""
    import PIL.Image  # noqa: F401 - every parser module is imported before the memory cap and "ready"
    import trimesh  # noqa: F401

    from . import io_gltf, io_ply  # noqa: F401
    from .io import load_object

    try:
        os.nice(5)
    except OSError:
        pass
    _exit_with_parent()
    _cap_address_space(memory_bytes)
    out.send(("ready", None, None))
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        reply = _parse_job(load_object, *job)
        filename = job[1]
        del job
        try:
            out.send(reply)
        except MemoryError:
            out.send(
                ("limit", f"{filename}: the result is over the parser's memory limit (--parse-memory)", None)
            )


def _wait_slice(deadline: float | None, should_abort: Callable[[], bool] | None, what: str) -> float:
    """Seconds to wait before checking again; raises when the deadline passed or the client went away."""
    wait = _SLICE_S
    if deadline is not None:
        wait = min(wait, deadline - time.monotonic())
        if wait <= 0:
            raise ParseDeadlineExceeded(f"deadline exceeded while {what}")
    if should_abort is not None and should_abort():
        raise ParseCancelled(f"client went away while {what}")
    return wait


@dataclass
class _Worker:
    process: subprocess.Popen
    send: Connection
    recv: Connection
    ready: bool = False

    def kill(self) -> None:
        try:
            self.process.kill()
        except OSError:
            pass
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            pass
        for c in (self.send, self.recv):
            try:
                c.close()
            except OSError:
                pass


class ParsePool:
    """Worker processes for ``load_object`` (see module docstring)."""

    def __init__(
        self,
        workers: int = 2,
        *,
        timeout_s: float = 60.0,
        memory_bytes: int = 4 << 30,
        limits: LoadLimits | None = None,
    ) -> None:
        self.workers = max(0, int(workers))
        self.timeout_s = float(timeout_s)
        self.memory_bytes = int(memory_bytes)
        self.limits = limits or LoadLimits()
        self._cond = threading.Condition()
        self._idle: list[_Worker] = []
        self._busy: set[int] = set()
        self._running: dict[int, _Worker] = {}
        self._started = 0
        self._queue: list[object] = []
        self._closed = False
        self.killed = 0  # workers killed (timeouts, deadlines, cancellations): read by tests and metrics

    # -- workers ----------------------------------------------------------------------------------------

    def _spawn(self) -> _Worker:
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
        cmd = [
            sys.executable,
            "-m",
            "objvid.cache.parse_pool",
            str(to_child_r),
            str(from_child_w),
            str(self.memory_bytes),
        ]
        try:
            proc = subprocess.Popen(
                cmd, pass_fds=(to_child_r, from_child_w), env=env, stdin=subprocess.DEVNULL
            )
        finally:
            os.close(to_child_r)
            os.close(from_child_w)
        log.debug("event=parse_worker_started pid=%s", proc.pid)
        return _Worker(proc, Connection(to_child_w, readable=False), Connection(from_child_r, writable=False))

    def _acquire(self, deadline: float | None, should_abort: Callable[[], bool] | None) -> _Worker:
        """An idle worker, or a fresh one when fewer than ``workers`` run; waits its turn (FIFO)."""
        ticket = object()
        with self._cond:
            self._queue.append(ticket)
            try:
                while True:
                    if self._closed:
                        raise ParserStopping("the server is stopping")
                    if self._queue[0] is ticket and (self._idle or self._started < self.workers):
                        worker = self._idle.pop() if self._idle else None
                        if worker is None:  # a new worker is started outside the lock
                            self._started += 1
                        break
                    self._cond.wait(_wait_slice(deadline, should_abort, "waiting for a parser"))
            finally:
                self._queue.remove(ticket)
                self._cond.notify_all()
        if worker is None:
            try:
                worker = self._spawn()
            except BaseException:
                with self._cond:
                    self._started -= 1
                    self._cond.notify_all()
                raise
        with self._cond:
            self._running[id(worker)] = worker
        return worker

    def _release(self, worker: _Worker, healthy: bool) -> None:
        with self._cond:
            self._running.pop(id(worker), None)
            if healthy and not self._closed:
                self._idle.append(worker)
            else:
                self._started -= 1
            self._cond.notify_all()
        if not healthy or self._closed:
            worker.kill()

    # -- API --------------------------------------------------------------------------------------------

    def load(
        self,
        data: bytes,
        filename: str,
        sample_points: int,
        *,
        seed: int = 0,
        deadline: float | None = None,
        should_abort: Callable[[], bool] | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """``load_object(data, filename, sample_points, seed, limits, with_normals=True)`` in a worker ->
        (points, colors, normals or None); ``deadline`` is a ``time.monotonic()`` value. Raises what
        load_object raises, or the pool's own errors."""
        if self.workers == 0:
            from .io import load_object

            return load_object(
                data,
                filename=filename,
                sample_points=sample_points,
                seed=seed,
                limits=self.limits,
                with_normals=True,
            )
        if deadline is not None and time.monotonic() >= deadline:
            raise ParseDeadlineExceeded(f"{filename}: deadline exceeded before parsing")
        worker = self._acquire(deadline, should_abort)
        healthy = False
        try:
            if not worker.ready:  # a fresh worker: its imports do not count against --parse-timeout
                self._wait(worker, filename, deadline, should_abort, STARTUP_TIMEOUT_S, "starting the parser")
                worker.ready = True
            try:
                worker.send.send((data, filename, sample_points, seed, self.limits))
            except (OSError, ValueError):
                raise self._died(worker, filename) from None
            kind, a, b = self._wait(worker, filename, deadline, should_abort, self.timeout_s, "parsing")
            healthy = True
        finally:
            if not healthy:
                self.killed += 1
            self._release(worker, healthy)
        if kind == "ok":
            return a
        if kind == "limit":
            raise LoadLimitExceeded(a)
        raise ValueError(a)

    def _wait(self, worker: _Worker, filename: str, deadline, should_abort, limit_s: float, what: str):
        """The worker's next message; raises on close, deadline, cancellation, ``limit_s`` or its death."""
        give_up = time.monotonic() + limit_s
        while not worker.recv.poll(_SLICE_S):
            now = time.monotonic()
            if self._closed:
                raise ParserStopping(f"{filename}: the server is stopping")
            if deadline is not None and now >= deadline:
                raise ParseDeadlineExceeded(f"{filename}: deadline exceeded while {what}")
            if should_abort is not None and should_abort():
                raise ParseCancelled(f"{filename}: client went away while {what}")
            if now >= give_up:
                flag = "--parse-timeout" if what == "parsing" else "parser start-up"
                raise ParseLimitExceeded(f"{filename}: {what} took longer than {limit_s:g} s ({flag})")
        try:
            return worker.recv.recv()
        except (EOFError, OSError):
            raise self._died(worker, filename) from None

    def warm(self) -> None:
        """Start every worker now, in the background (the server calls it at start-up, so the first file
        does not wait for a worker's imports); lazily started workers are the default otherwise."""

        def start() -> None:
            while True:
                with self._cond:
                    if self._closed or self._started >= self.workers:
                        return
                    self._started += 1
                try:
                    worker = self._spawn()
                    self._wait(worker, "warm-up", None, None, STARTUP_TIMEOUT_S, "starting the parser")
                    worker.ready = True
                except Exception:  # noqa: BLE001 - a failed warm-up leaves the slot to lazy start
                    log.warning("event=parse_worker_warmup_failed", exc_info=True)
                    with self._cond:
                        self._started -= 1
                    return
                with self._cond:
                    if self._closed:
                        worker.kill()
                        return
                    self._idle.append(worker)
                    self._cond.notify_all()

        if self.workers:
            threading.Thread(target=start, name="parse-pool-warmup", daemon=True).start()

    def _died(self, worker: _Worker, filename: str) -> Exception:
        if self._closed:
            return ParserStopping(f"{filename}: the server is stopping")
        try:
            code = worker.process.wait(1)
        except subprocess.TimeoutExpired:
            code = None
        return ParseLimitExceeded(
            f"{filename}: the parser process died (exit code {code}; likely over its "
            "memory limit, --parse-memory)"
        )

    def close(self) -> None:
        """Kill every worker now (parses in flight end with ParserStopping)."""
        with self._cond:
            self._closed = True
            workers = list(self._idle) + list(self._running.values())
            self._idle.clear()
            self._cond.notify_all()
        for w in workers:
            w.kill()


if __name__ == "__main__":  # a worker: python -m objvid.cache.parse_pool READ_FD WRITE_FD MEMORY_BYTES
    _read, _write, _memory = (int(a) for a in sys.argv[1:4])
    _worker_main(Connection(_read, writable=False), Connection(_write, readable=False), _memory)
