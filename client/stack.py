"""The local embedded stack: depth, cache and diffusion servers as child processes on 127.0.0.1.

Each child runs in its own process group (so a terminal Ctrl-C reaches only the client, which then stops
the children in order) and gets ``PR_SET_PDEATHSIG`` = SIGTERM (so it goes down with the client even if
the client is killed). Ports are free ephemeral ports picked here. ``stop()`` sends SIGTERM to each
group, waits, then SIGKILLs whatever is left, grandchildren included (PyTriton's tritonserver). The
children carry ``OBJVID_STACK_RUN=<id>`` in their environment, which makes them findable.

    with LocalStack(StackConfig(backend="preview"), workdir) as stack:
        client = ObjvidClient(stack.depth_addr, stack.cache_addr, stack.triton_addr)
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from objvid import wire
from objvid.client.errors import ObjvidError

log = logging.getLogger("objvid.client.stack")

STACK_ENV = "OBJVID_STACK_RUN"
DEFAULT_DEPTH_MODEL = "Ruicheng/moge-vitl"


@dataclass
class StackConfig:
    """What to start. depth_model: checkpoint path or hub id (None = no depth service); backend: the
    Triton model(s) to load ("preview" or "gen3c"; None = no diffusion server)."""

    depth: bool = True
    depth_model: str = DEFAULT_DEPTH_MODEL
    cache: bool = True
    backend: str | None = "preview"
    gen3c_weights: str | None = None
    device: str = "auto"
    startup_timeout: float = 600.0
    stop_timeout: float = 15.0
    extra_env: dict[str, str] = field(default_factory=dict)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports on 127.0.0.1 that were free a moment ago (all held while picking, so
    two servers of one stack never get the same port)."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def _pdeathsig() -> None:  # runs in the child between fork and exec
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - best effort: stop() still cleans up
        pass


@dataclass
class _Child:
    name: str
    proc: subprocess.Popen
    log_path: Path
    address: str

    def tail(self, lines: int = 3) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        keep = [line.strip() for line in text if line.strip()][-lines:]
        return " | ".join(keep)


class LocalStack:
    """Starts the configured servers, waits until they are healthy, and stops them (see module doc)."""

    def __init__(self, config: StackConfig, log_dir: str | Path, on_event=None):
        self.config = config
        self.log_dir = Path(log_dir)
        self.run_id = uuid.uuid4().hex
        self.children: list[_Child] = []
        self.depth_addr: str | None = None
        self.cache_addr: str | None = None
        self.triton_addr: str | None = None
        self.triton_http_addr: str | None = None
        self._on_event = on_event or (lambda name, state: None)
        self.startup_seconds: dict[str, float] = {}

    # ------------------------------------------------------------------------------ start

    def _spawn(self, name: str, args: list[str], address: str) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        env = dict(os.environ)
        env.update(self.config.extra_env)
        env[STACK_ENV] = self.run_id
        env.setdefault("PYTHONUNBUFFERED", "1")
        with open(log_path, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", *args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                process_group=0,
                preexec_fn=_pdeathsig,
                close_fds=True,
            )
        self.children.append(_Child(name, proc, log_path, address))
        log.info("event=child_started name=%s pid=%d address=%s", name, proc.pid, address)

    def start(self) -> LocalStack:
        """Spawn every configured server, then wait for all of them (they start in parallel)."""
        cfg = self.config
        depth_port, cache_port, grpc_port, http_port, metrics_port = free_ports(5)
        try:
            if cfg.depth:
                self.depth_addr = f"127.0.0.1:{depth_port}"
                self._spawn("depth", ["objvid.depth", "serve", "--host", "127.0.0.1", "--port", str(depth_port),
                                      "--model", cfg.depth_model, "--device", cfg.device,
                                      "--metrics-port", "-1"], self.depth_addr)  # fmt: skip
            if cfg.cache:
                self.cache_addr = f"127.0.0.1:{cache_port}"
                self._spawn("cache", ["objvid.cache", "serve", "--host", "127.0.0.1", "--port", str(cache_port),
                                      "--device", cfg.device, "--metrics-port", "0"],
                            self.cache_addr)  # fmt: skip
            if cfg.backend:
                self.triton_addr = f"127.0.0.1:{grpc_port}"
                self.triton_http_addr = f"127.0.0.1:{http_port}"
                args = ["objvid.diffusion", "serve", "--host", "127.0.0.1", "--http-port", str(http_port),
                        "--grpc-port", str(grpc_port), "--metrics-port", str(metrics_port),
                        "--models", cfg.backend, "--device", cfg.device]  # fmt: skip
                if cfg.backend == "gen3c" and cfg.gen3c_weights:
                    args += ["--gen3c-weights", str(cfg.gen3c_weights)]
                self._spawn("diffusion", args, self.triton_addr)
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _ready(self, child: _Child) -> bool:
        if child.name == "diffusion":
            from objvid.client.sdk import ObjvidClient

            probe = ObjvidClient(triton_addr=child.address)
            try:
                return probe.triton_ready(self.config.backend)
            finally:
                probe.close()
        channel = wire.make_channel(child.address)
        try:
            return wire.check_health(channel, timeout=2.0)
        finally:
            channel.close()

    def _wait_ready(self) -> None:
        start = time.monotonic()
        pending = list(self.children)
        for child in pending:
            self._on_event(child.name, "starting")
        while pending:
            for child in list(pending):
                code = child.proc.poll()
                if code is not None:
                    raise ObjvidError(
                        "stack",
                        f"{child.name} server exited with code {code} while starting "
                        f"(log {child.log_path}: {child.tail()})",
                    )
                if self._ready(child):
                    pending.remove(child)
                    self.startup_seconds[child.name] = time.monotonic() - start
                    self._on_event(child.name, "ready")
                    log.info(
                        "event=child_ready name=%s seconds=%.1f", child.name, self.startup_seconds[child.name]
                    )
            if pending and time.monotonic() - start > self.config.startup_timeout:
                names = ", ".join(c.name for c in pending)
                raise ObjvidError("stack", f"{names} not ready after {self.config.startup_timeout:.0f} s "
                                           f"(logs in {self.log_dir})")  # fmt: skip
            if pending:
                time.sleep(0.2)

    # ------------------------------------------------------------------------------ stop

    def stop(self) -> None:
        """SIGTERM every child's process group, wait, SIGKILL what is left. Safe to call twice.

        SIGINT and SIGTERM are held back while stopping, so a second Ctrl-C cannot leave orphans.
        """
        if not self.children:
            return
        blocked = {signal.SIGINT, signal.SIGTERM}
        old = signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
        try:
            for child in self.children:
                _signal_group(child.proc.pid, signal.SIGTERM)
            deadline = time.monotonic() + self.config.stop_timeout
            for child in self.children:
                try:
                    child.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    log.warning("event=child_kill name=%s pid=%d", child.name, child.proc.pid)
            # Grandchildren (e.g. tritonserver) may outlive their parent: wait for each group to empty.
            for child in self.children:
                while _group_alive(child.proc.pid) and time.monotonic() < deadline:
                    time.sleep(0.05)
                _signal_group(child.proc.pid, signal.SIGKILL)
                try:
                    child.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
                log.info("event=child_stopped name=%s code=%s", child.name, child.proc.returncode)
            self.children.clear()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def addresses(self) -> dict[str, str]:
        out = {"depth": self.depth_addr, "cache": self.cache_addr, "triton_grpc": self.triton_addr,
               "triton_http": self.triton_http_addr}  # fmt: skip
        return {k: v for k, v in out.items() if v}


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _group_alive(pgid: int) -> bool:
    """True while a live (non-zombie) process is in process group ``pgid``."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()  # state ppid pgrp ...
        if len(fields) > 2 and fields[0] != "Z" and int(fields[2]) == pgid:
            return True
    return False


def stack_processes(run_id: str) -> list[int]:
    """PIDs of live processes whose environment carries ``OBJVID_STACK_RUN=run_id`` (for checks)."""
    return processes_with_env(STACK_ENV, run_id)


def processes_with_env(name: str, value: str) -> list[int]:
    """PIDs of live (non-zombie) processes whose environment has ``name=value`` (Linux /proc)."""
    marker = f"{name}={value}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            env = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]  # after "pid (comm)"
        except (OSError, IndexError):
            continue
        if marker in env.split(b"\0") and state != "Z":
            found.append(int(entry.name))
    return found
