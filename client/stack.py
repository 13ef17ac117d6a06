"""The local embedded stack: depth, cache and diffusion servers as child processes on 127.0.0.1.

Start: each child is spawned without a pre-exec hook (a fork running Python code beside gRPC's threads
failed under load) in its own process group (a terminal Ctrl-C reaches only the client, which then
stops the children in order), with ``--port 0`` (the server binds any free port: no check-then-bind
race) and ``--ready-file``: the server writes its bound ports there as JSON once it listens, the stack
reads the address from it and then polls the health check (gRPC health; Triton: model ready) until the
server serves. (PyTriton's tritonserver cannot bind port 0: the diffusion server gets free ports picked
just before it starts.) ``--parent-pid`` makes every server drain and exit when the client is gone,
even after a SIGKILL that leaves no chance to stop them.

Stop (success, error, Ctrl-C, SIGTERM alike): SIGTERM to every process of each child's tree (psutil;
PyTriton's tritonserver included), wait, SIGKILL what is left; SIGINT/SIGTERM are held back meanwhile so
a second Ctrl-C cannot leave orphans.

    with LocalStack(StackConfig(backend="preview"), workdir) as stack:
        client = ObjvidClient(stack.depth_addr, stack.cache_addr, stack.triton_addr)
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from objvid.client.errors import ObjvidError
from objvid.runtime.channels import check_health, make_channel

log = logging.getLogger("objvid.client.stack")

DEFAULT_DEPTH_MODEL = "Ruicheng/moge-vitl"
HOST = "127.0.0.1"


@dataclass
class StackConfig:
    """What to start. depth / cache: start that service; depth_model: MoGe checkpoint path or hub id;
    backend: the Triton model to load ("preview" or "gen3c"; None = no diffusion server)."""

    depth: bool = True
    depth_model: str = DEFAULT_DEPTH_MODEL
    geometry_model: str = ""  # VGGT for LiftViews (--views DIR|VIDEO); empty = not loaded
    cache: bool = True
    backend: str | None = "preview"
    gen3c_weights: str | None = None
    device: str = "auto"
    startup_timeout: float = 600.0
    stop_timeout: float = 15.0
    extra_env: dict[str, str] = field(default_factory=dict)


@dataclass
class ChildSpec:
    """How to start one server: ``python -m <args>`` and the ready-file keys that hold its ports (the
    first is the address clients use)."""

    name: str
    args: list[str]
    port_keys: tuple[str, ...] = ("port",)
    env: dict[str, str] = field(default_factory=dict)  # on top of the client's environment


def child_specs(cfg: StackConfig) -> list[ChildSpec]:
    """The servers ``cfg`` asks for, with the flags that make them bind any free port on 127.0.0.1."""
    specs = []
    if cfg.depth:
        specs.append(ChildSpec("depth", ["objvid.depth", "serve", "--host", HOST, "--port", "0", "--model",
                                         cfg.depth_model, "--device", cfg.device, "--metrics-port", "off",
                                         "--geometry-model", cfg.geometry_model]))  # fmt: skip
    if cfg.cache:
        specs.append(ChildSpec("cache", ["objvid.cache", "serve", "--host", HOST, "--port", "0", "--device",
                                         cfg.device, "--metrics-port", "off"]))  # fmt: skip
    if cfg.backend:
        specs.append(_diffusion_spec(cfg))
    return specs


def _diffusion_spec(cfg: StackConfig) -> ChildSpec:
    # PyTriton's tritonserver takes fixed ports (no port 0): they are picked here, just before it starts;
    # the server writes its ready file once the model is served.
    grpc_port, http_port = _free_ports(2)
    args = ["objvid.diffusion", "serve", "--host", HOST, "--grpc-port", str(grpc_port), "--http-port", str(http_port),
            "--metrics-port", "off", "--models", cfg.backend, "--device", cfg.device]  # fmt: skip
    if cfg.backend == "gen3c" and cfg.gen3c_weights:
        args += ["--gen3c-weights", str(cfg.gen3c_weights)]
    return ChildSpec("diffusion", args, ("grpc_port", "http_port"))


#: The diffusion server's settings for where it fetches renders (``objvid.diffusion.cache_source``).
CACHE_READY_FILE_ENV = "OBJVID_DIFFUSION_CACHE_READY_FILE"
CACHE_ADDRESS_ENVS = ("OBJVID_DIFFUSION_CACHE_ADDRESS", "OBJVID_DIFFUSION_CACHE_TOKEN")


def wire_cache(specs: list[ChildSpec], log_dir: Path) -> bool:
    """Point the diffusion server at the cache started beside it, so the model can fetch a chunk's renders
    itself (RENDER_SOURCE): its setting is the cache's ready file (the cache binds port 0, so its address
    is known only once it listens; the model reads the file when a request arrives, and only a loopback
    host). Start-up stays parallel. An address inherited from the client's environment is cleared (it would
    win over the file). True when both are started here, i.e. wired."""
    names = {s.name: s for s in specs}
    if "cache" not in names or "diffusion" not in names:
        return False
    names["diffusion"].env.update({CACHE_READY_FILE_ENV: str(log_dir / "cache.ready.json")},
                                  **dict.fromkeys(CACHE_ADDRESS_ENVS, ""))  # fmt: skip
    return True


def _free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports on 127.0.0.1 that were free a moment ago (only for tritonserver)."""
    import socket

    socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for s in socks:
            s.bind((HOST, 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class Child:
    """A started server: its process, log, ready file and (once read) its ports."""

    spec: ChildSpec
    proc: subprocess.Popen
    log_path: Path
    ready_path: Path
    ports: dict[str, int] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def address(self) -> str | None:
        port = self.ports.get(self.spec.port_keys[0])
        return f"{HOST}:{port}" if port else None

    def read_ready_file(self) -> bool:
        """Read the ports once the server has written its ready file; True when known."""
        if not self.ports:
            try:
                data = json.loads(self.ready_path.read_text())
            except (OSError, ValueError):
                return False  # not written yet (it is renamed into place whole)
            self.ports = {k: int(data[k]) for k in self.spec.port_keys if data.get(k)}
        return len(self.ports) == len(self.spec.port_keys)

    def tail(self, lines: int = 3) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join([line.strip() for line in text if line.strip()][-lines:])


def _client_hint(child: Child) -> str:
    """The child's last log lines, with the depth service's model flag named as the client's flag."""
    tail = child.tail()
    if child.name == "depth" and "model" in tail:
        tail = tail.replace("pass --model ", "pass --depth-model ")
        tail += " | the client passes --depth-model (env OBJVID_CLIENT_DEPTH_MODEL) as the depth service's --model"
    return tail


def process_tree(pid: int) -> list[psutil.Process]:
    """The process ``pid`` and all its live descendants (empty when it is gone)."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def stop_tree(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """SIGTERM ``procs``, wait up to ``timeout`` s, SIGKILL the rest; -> the processes that were killed."""
    for p in procs:
        try:
            p.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=5)
    return alive


class LocalStack:
    """Starts the configured servers, waits until they serve, and stops them (see module doc).

    on_event(name, state): "starting" / "ready" per server (progress for the CLI).
    """

    def __init__(self, config: StackConfig, log_dir: str | Path,
                 on_event: Callable[[str, str], None] | None = None):  # fmt: skip
        self.config = config
        self.log_dir = Path(log_dir)
        self.children: list[Child] = []
        self.startup_seconds: dict[str, float] = {}
        self.seconds = 0.0  # wall time of start() as measured by the caller (the CLI's timing table)
        self.cache_wired = False  # the diffusion server fetches renders from this stack's cache (wire_cache)
        self._on_event = on_event or (lambda name, state: None)

    def _child(self, name: str) -> Child | None:
        return next((c for c in self.children if c.name == name), None)

    @property
    def depth_addr(self) -> str | None:
        return (c := self._child("depth")) and c.address

    @property
    def cache_addr(self) -> str | None:
        return (c := self._child("cache")) and c.address

    @property
    def triton_addr(self) -> str | None:
        return (c := self._child("diffusion")) and c.address

    @property
    def triton_http_addr(self) -> str | None:
        c = self._child("diffusion")
        return f"{HOST}:{c.ports['http_port']}" if c and c.ports.get("http_port") else None

    # ------------------------------------------------------------------------------ start

    def _spawn(self, spec: ChildSpec) -> Child:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{spec.name}.log"
        ready_path = self.log_dir / f"{spec.name}.ready.json"
        ready_path.unlink(missing_ok=True)
        env = {**os.environ, **self.config.extra_env, **spec.env}
        env.setdefault("PYTHONUNBUFFERED", "1")
        args = [
            sys.executable,
            "-m",
            *spec.args,
            "--ready-file",
            str(ready_path),
            "--parent-pid",
            str(os.getpid()),
        ]
        with open(log_path, "wb") as out:
            proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                                    process_group=0, close_fds=True)  # fmt: skip
        log.info("event=child_started name=%s pid=%d", spec.name, proc.pid)
        return Child(spec, proc, log_path, ready_path)

    def start(self) -> LocalStack:
        """Spawn every configured server, then wait for all of them (they start in parallel)."""
        try:
            specs = child_specs(self.config)
            self.cache_wired = wire_cache(specs, self.log_dir)
            for spec in specs:
                self.children.append(self._spawn(spec))
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _serving(self, child: Child) -> bool:
        if not child.read_ready_file():
            return False
        if child.name == "diffusion":
            from objvid.client.triton import DiffusionClient

            probe = DiffusionClient(child.address)
            try:
                return probe.ready(self.config.backend)
            finally:
                probe.close()
        channel = make_channel(child.address)
        try:
            return check_health(channel, timeout=2.0)
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
                    raise ObjvidError("stack", f"{child.name} server exited with code {code} while starting "
                                               f"(log {child.log_path}: {_client_hint(child)})")  # fmt: skip
                if self._serving(child):
                    pending.remove(child)
                    self.startup_seconds[child.name] = time.monotonic() - start
                    self._on_event(child.name, "ready")
                    log.info("event=child_ready name=%s address=%s seconds=%.1f", child.name, child.address,
                             self.startup_seconds[child.name])  # fmt: skip
            if pending and time.monotonic() - start > self.config.startup_timeout:
                names = ", ".join(c.name for c in pending)
                raise ObjvidError("stack", f"{names} not ready after {self.config.startup_timeout:.0f} s "
                                           f"(logs in {self.log_dir})")  # fmt: skip
            if pending:
                time.sleep(0.2)

    # ------------------------------------------------------------------------------ stop

    def stop(self) -> None:
        """Stop every child's process tree (SIGTERM, wait, SIGKILL). Safe to call twice.

        SIGINT and SIGTERM are held back while stopping, so a second Ctrl-C cannot leave orphans.
        """
        if not self.children:
            return
        old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            trees = {c.name: process_tree(c.proc.pid) for c in self.children}  # before parents exit
            procs = [p for tree in trees.values() for p in tree]
            for p in stop_tree(procs, self.config.stop_timeout):
                log.warning("event=child_killed pid=%d", p.pid)
            for child in self.children:
                try:
                    child.proc.wait(timeout=5)  # reap (stop_tree waited for it already)
                except subprocess.TimeoutExpired:  # SIGKILLed but not gone (a hung kernel call): never block
                    log.warning("event=child_not_reaped name=%s pid=%d", child.name, child.proc.pid)
                child.ready_path.unlink(missing_ok=True)
                log.info("event=child_stopped name=%s code=%s", child.name, child.proc.returncode)
            self.children.clear()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def pids(self) -> list[int]:
        """PIDs of every live process of the stack (children and their descendants)."""
        return [p.pid for c in self.children for p in process_tree(c.proc.pid)]

    def addresses(self) -> dict[str, str]:
        out = {"depth": self.depth_addr, "cache": self.cache_addr, "triton_grpc": self.triton_addr,
               "triton_http": self.triton_http_addr}  # fmt: skip
        return {k: v for k, v in out.items() if v}
