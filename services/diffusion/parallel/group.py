"""A GEN3C worker group (one process per GPU) behind the :class:`VideoModel` contract.

:class:`WorkerGroupModel` is what Triton (``gen3c`` with ``world_size`` > 1) and ``objvid-diffusion serve
--gpus N`` host. It starts N worker processes with ``torch.multiprocessing``'s ``spawn`` method (a fresh
interpreter each: nothing is forked beside Triton's or gRPC's threads), one per device, that live as long as
the model. Each request is sent to every rank (the image tensors go through shared memory once); rank 0
streams progress and returns the video.

- Cancellation: when the caller's progress callback raises (the client went away), a shared event is set;
  rank 0 sees it at the next progress point and all ranks stop at that step. The group stays loaded.
- A failed worker (an exception on any rank, or a process that died: killed, out of host memory, NCCL
  abort): the request fails with :class:`WorkerGroupError` naming the rank, its device and the reason; the
  whole group is stopped and reloaded in the background; the next request waits for the reload.
- ``close()`` stops the workers (``None`` in each inbox, then terminate / kill after a grace period).
"""

from __future__ import annotations

import atexit
import dataclasses
import itertools
import logging
import os
import queue
import shutil
import sys
import sysconfig
import tempfile
import threading
import time
import weakref

import numpy as np

from objvid.diffusion.base import ChunkInputs, GenerateOptions, ProgressFn, VideoModel
from objvid.diffusion.parallel.worker import WorkerSpec, worker_main

log = logging.getLogger("objvid.diffusion.parallel")

POLL_S = 0.5
STOP_GRACE_S = 10.0
RESTARTING = "; the worker group is restarting (the model reloads)"


class WorkerGroupError(RuntimeError):
    """A worker failed or died; ``str()`` names the rank, device and reason."""


class WorkerCancelled(Exception):
    """The group stopped a request because it was cancelled (when the progress callback raised nothing)."""


def python_executable() -> str:
    """The Python interpreter for spawned workers.

    Inside Triton's Python backend ``sys.executable`` is the backend stub, not a Python; fall back to the
    ``python3.X`` of this interpreter's prefix, then to the one on ``PATH``.
    """
    exe = sys.executable or ""
    if os.path.basename(exe).startswith("python") and os.access(exe, os.X_OK):
        return exe
    name = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for folder in (sysconfig.get_path("scripts"), os.path.join(sys.exec_prefix, "bin")):
        candidate = os.path.join(folder, name)
        if os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which(name) or shutil.which("python3")
    if not found:
        raise RuntimeError(f"no Python interpreter ({name}) found to start the GEN3C workers")
    return found


class WorkerGroup:
    """N worker processes of one GEN3C model; :meth:`run` serves one request at a time."""

    def __init__(self, spec_template: WorkerSpec, start_timeout_s: float = 3600.0):
        self.template = spec_template
        self.start_timeout_s = start_timeout_s
        self.info: dict | None = None
        #: the final latent (1, 16, T', h, w) float32 of the last finished request (checks, benchmarks)
        self.last_latent = None
        self._lock = threading.Lock()
        self._jobs = itertools.count(1)
        self._procs: list = []
        self._inboxes: list = []
        self._store_dir: str | None = None
        self._restart: threading.Thread | None = None
        self._restart_error: BaseException | None = None
        self._closed = False
        # multiprocessing joins non-daemon children at exit: stop ours first (atexit runs handlers LIFO)
        ref = weakref.ref(self)
        atexit.register(lambda: (group := ref()) is not None and group.close(wait_s=5.0))
        self._start()

    @property
    def world_size(self) -> int:
        return self.template.world_size

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._procs]

    # -- life cycle ---------------------------------------------------------------------------------------------

    def _start(self) -> None:
        import torch.multiprocessing as mp

        ctx = mp.get_context("spawn")
        ctx.set_executable(python_executable())
        self.info = None
        self._store_dir = tempfile.mkdtemp(prefix="objvid-gen3c-group-")
        spec = WorkerSpec(**{**self.template.__dict__, "store_dir": self._store_dir})
        self._outbox = ctx.Queue()
        self._inboxes = [ctx.Queue() for _ in spec.devices]
        self._cancel = ctx.Event()
        self._procs = [
            ctx.Process(
                target=worker_main,
                args=(rank, spec, self._inboxes[rank], self._outbox, self._cancel),
                name=f"objvid-gen3c-rank{rank}",
                daemon=False,  # torch.compile may start its own worker processes
            )
            for rank in range(spec.world_size)
        ]
        t0 = time.perf_counter()
        for proc in self._procs:
            proc.start()
        ready: dict[int, dict] = {}
        try:
            while len(ready) < spec.world_size:
                if time.perf_counter() - t0 > self.start_timeout_s:
                    raise WorkerGroupError(f"GEN3C workers not ready after {self.start_timeout_s:.0f} s")
                msg = self._get(POLL_S)
                if msg is None:
                    continue
                if msg[0] == "ready":
                    ready[msg[1]] = msg[2]
                elif msg[0] == "failed":
                    _, rank, kind, text = msg
                    raise WorkerGroupError(
                        f"GEN3C worker rank {rank} ({spec.devices[rank]}) failed to load: {kind}: {text}"
                    )
        except BaseException:
            self._stop_processes()
            raise
        self.info = ready[0]
        log.info(
            "event=gen3c_group_ready %s devices=%s seconds=%.1f",
            self.info["layout"].describe(), ",".join(spec.devices), time.perf_counter() - t0,
        )  # fmt: skip

    def _get(self, timeout: float):
        """Next outbox message, or None after ``timeout``; raises WorkerGroupError when a worker died."""
        try:
            return self._outbox.get(timeout=timeout)
        except queue.Empty:
            pass
        dead = self._dead_worker()
        if dead is not None:
            raise dead
        return None

    def _dead_worker(self, wait_s: float = 0.0) -> WorkerGroupError | None:
        """The error naming a worker process that has exited, waiting up to ``wait_s`` for one (when a rank
        dies, its peers fail in the next collective: report the root cause, not theirs)."""
        deadline = time.monotonic() + wait_s
        while True:
            for rank, proc in enumerate(self._procs):
                if not proc.is_alive():
                    return WorkerGroupError(
                        f"GEN3C worker rank {rank} ({self.template.devices[rank]}, pid {proc.pid}) exited with "
                        f"code {proc.exitcode}{RESTARTING if self.info is not None else ''}"
                    )
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.1)

    def _stop_processes(self) -> None:
        """Ask every worker to exit, then terminate / kill what is left (idempotent)."""
        procs, self._procs = self._procs, []
        inboxes, self._inboxes = self._inboxes, []
        for inbox, proc in zip(inboxes, procs, strict=True):
            if proc.is_alive():
                try:
                    inbox.put(None)
                except (OSError, ValueError):
                    pass
        deadline = time.monotonic() + STOP_GRACE_S
        for proc in procs:
            proc.join(max(0.0, deadline - time.monotonic()))
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
                proc.join(2.0)
            if proc.is_alive():
                proc.kill()
                proc.join(2.0)
        if self._store_dir:
            shutil.rmtree(self._store_dir, ignore_errors=True)
            self._store_dir = None

    def _restart_in_background(self, reason: str) -> None:
        def restart() -> None:
            try:
                self._start()
                self._restart_error = None
                log.warning("event=gen3c_group_restarted reason=%r", reason)
            except BaseException as exc:  # noqa: BLE001 - the next request reports it
                self._restart_error = exc
                log.error("event=gen3c_group_restart_failed error=%r", exc)

        self._stop_processes()
        self._restart = threading.Thread(target=restart, name="objvid-gen3c-group-restart", daemon=True)
        self._restart.start()

    def _ensure_running(self) -> None:
        if self._closed:
            raise WorkerGroupError("the GEN3C worker group is closed")
        if self._restart is not None:
            self._restart.join()
            self._restart = None
        if self._restart_error is not None or not self._procs or not all(p.is_alive() for p in self._procs):
            self._stop_processes()
            self._restart_error = None
            self._start()

    def close(self, wait_s: float | None = None) -> None:
        """Stop every worker (idempotent). wait_s: how long to wait for a running request (None = until it
        ends); after that the workers are stopped anyway (interpreter exit)."""
        locked = self._lock.acquire(timeout=-1 if wait_s is None else wait_s)
        try:
            self._closed = True
            if self._restart is not None:
                self._restart.join()
                self._restart = None
            self._stop_processes()
        finally:
            if locked:
                self._lock.release()

    # -- requests -----------------------------------------------------------------------------------------------

    def run(
        self, chunk: ChunkInputs, options: GenerateOptions, progress: ProgressFn | None = None
    ) -> np.ndarray:
        """Generate one chunk on the group -> (T, H, W, 3) uint8 (see the module docstring for failures)."""
        import torch

        with self._lock:
            self._ensure_running()
            job = next(self._jobs)
            self._cancel.clear()
            tensors = [
                torch.from_numpy(np.ascontiguousarray(a))
                for a in (chunk.first_frame, chunk.renders, chunk.masks)
            ]
            for inbox in self._inboxes:
                inbox.put((job, *tensors, options))
            raised: BaseException | None = None  # what the progress callback raised (cancellation)
            try:
                while True:
                    msg = self._get(POLL_S)
                    if msg is None or msg[1] != job:
                        continue
                    kind = msg[0]
                    if kind == "progress":
                        if raised is None and progress is not None:
                            try:
                                progress(msg[2])
                            except BaseException as exc:  # noqa: BLE001 - cancel on the workers, re-raise after
                                raised = exc
                                self._cancel.set()
                    elif kind == "done":
                        if raised is not None:
                            raise raised
                        self.last_latent = msg[3]
                        return msg[2].numpy()
                    elif kind == "cancelled":
                        raise raised or WorkerCancelled("request cancelled")
                    elif kind == "error":  # the other ranks may wait in a collective: restart them all
                        _, _, rank, error_kind, text = msg
                        failure = self._dead_worker(wait_s=2.0) or _worker_error(
                            rank, self.template.devices[rank], error_kind, text
                        )
                        break
            except WorkerGroupError as exc:  # a worker process died
                failure = exc
            log.error("event=gen3c_worker_failed job=%d error=%r", job, str(failure))
            self._restart_in_background(str(failure))
            raise failure


def _worker_error(rank: int, device: str, kind: str, text: str) -> Exception:
    """The exception for a worker's error report (GpuMemoryError keeps its type: RESOURCE_EXHAUSTED)."""
    message = f"GEN3C worker rank {rank} ({device}) failed: {kind}: {text}{RESTARTING}"
    if kind in ("GpuMemoryError", "OutOfMemoryError"):
        from objvid.diffusion.gen3c.memory import GpuMemoryError

        return GpuMemoryError(message)
    return WorkerGroupError(message)


class WorkerGroupModel(VideoModel):
    """GEN3C on a worker group of ``len(spec.devices)`` processes; same contract as :class:`Gen3cModel`."""

    name = "gen3c"
    preview = False

    def __init__(self, spec: WorkerSpec, start_timeout_s: float = 3600.0):
        check_layout(spec)  # bad degrees fail here, before N processes load the weights
        self.group = WorkerGroup(spec, start_timeout_s)
        info = self.group.info
        self.config = info["config"]
        self.layout = info["layout"]
        self.max_latent_size = tuple(info["max_latent_size"])

    @property
    def chunk_frames(self) -> int:
        return self.config.chunk_frames

    def check_frames(self, num_frames: int) -> None:
        from objvid.diffusion.gen3c.model import check_frame_count

        check_frame_count(self.config, num_frames)

    def check_size(self, height: int, width: int) -> None:
        from objvid.diffusion.gen3c.model import check_chunk_size

        check_chunk_size(self.config, self.max_latent_size, height, width, self.layout.cp)

    def generate(
        self, chunk: ChunkInputs, options: GenerateOptions, progress: ProgressFn | None = None
    ) -> np.ndarray:
        options.validate()
        self.check_frames(chunk.num_frames)
        self.check_size(chunk.height, chunk.width)
        if chunk.num_slots > self.config.frame_buffer_max:
            raise ValueError(
                f"RENDERS buffer slots N must be <= {self.config.frame_buffer_max}, got {chunk.num_slots}"
            )
        return self.group.run(chunk, options, progress)

    def close(self) -> None:
        self.group.close()


def check_layout(spec: WorkerSpec):
    """The :class:`ParallelLayout` the workers will choose, from ``transformer/config.json`` (ValueError when
    the world size, CFG degree and context-parallel mode do not fit the head count)."""
    import json

    from objvid.diffusion.parallel.plan import choose_layout

    config = os.path.join(spec.weights_dir, "transformer", "config.json")
    with open(config) as f:
        heads = int(json.load(f)["num_attention_heads"])
    return choose_layout(spec.world_size, heads, spec.cfg_parallel, spec.cp_mode)


def devices_for(device: str, world_size: int) -> tuple[str, ...]:
    """Rank devices: ``cuda:i`` .. ``cuda:i+N-1`` from ``device`` ("cuda" = "cuda:0"), or N times "cpu"."""
    if device == "cpu":
        return ("cpu",) * world_size
    first = int(device.split(":")[1]) if ":" in device else 0
    import torch

    count = torch.cuda.device_count()
    if first + world_size > count:
        raise ValueError(
            f"world_size {world_size} from {device} needs GPUs {first}..{first + world_size - 1}, "
            f"but {count} are visible"
        )
    return tuple(f"cuda:{first + r}" for r in range(world_size))


def start_group_model(weights_dir: str, settings) -> WorkerGroupModel:
    """A :class:`WorkerGroupModel` from :class:`~objvid.diffusion.registry.ModelSettings` (world_size > 1)."""
    shared = {f.name for f in dataclasses.fields(WorkerSpec)} & {f.name for f in dataclasses.fields(settings)}
    spec = WorkerSpec(
        weights_dir=weights_dir,
        devices=devices_for(settings.device, settings.world_size),
        store_dir="",
        log_level=logging.getLogger().getEffectiveLevel(),
        **{name: getattr(settings, name) for name in shared - {"weights_dir"}},
    )
    return WorkerGroupModel(spec)
