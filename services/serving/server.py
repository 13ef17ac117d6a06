"""The lifecycle every objvid gRPC server shares: bind -> load -> serve -> drain -> exit.

``GrpcServer.bind()`` starts gRPC (health NOT_SERVING, reflection, optional TLS/mTLS and bearer token) and
the Prometheus endpoint, then reports the bound ports (port 0 = any free port) as ONE JSON line on stdout
and, with ``ready_file``, in that file (written atomically)::

    {"service": "cache", "pid": 4242, "host": "127.0.0.1", "port": 41234, "metrics_port": null, "tls": false}

``set_serving(True)`` turns health SERVING once the service can answer (model loaded). ``stop(grace)``
turns health NOT_SERVING, lets in-flight calls finish for ``grace`` seconds, then cancels them.
``HostedService`` gives a service's server object (holding its ``GrpcServer`` as ``grpc``) the accessors.
``run(server, load=..., on_stop=...)`` is the whole process lifecycle for a CLI: SIGTERM/SIGINT (also
while loading) start the drain, and ``exit_process`` ends the process even when a handler thread is
stuck (a watchdog forces the exit ``EXIT_MARGIN_S`` after the grace period).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from objvid.runtime.malloc import MMAP_THRESHOLD, tune_malloc
from objvid.runtime.wire import MAX_MESSAGE_BYTES
from objvid.serving.auth import BearerTokenInterceptor
from objvid.serving.config import ServingConfig
from objvid.serving.metrics import MetricsEndpoint

log = logging.getLogger("objvid.serving.server")

SERVER_OPTIONS: list[tuple[str, int]] = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.so_reuseport", 0),
]
#: Seconds after the grace period at which a draining process is ended even if something still runs.
EXIT_MARGIN_S = 5.0


@dataclass(frozen=True)
class Binding:
    """One gRPC service: ``add(servicer, server)`` registers it (generated ``add_*_to_server`` or a custom
    one); ``name`` is its full name (``objvid.v1.CacheService``) for health and reflection."""

    add: Callable[[object, grpc.Server], None]
    servicer: object
    name: str


def _host_for_clients(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "", "[::]", "::") else host


class GrpcServer:
    """One server process's gRPC side and metrics endpoint (see module docstring)."""

    def __init__(
        self,
        service: str,
        config: ServingConfig,
        bindings: Sequence[Binding],
        metrics: MetricsEndpoint | None = None,
        *,
        trim_threshold: int = 512 << 20,
        interceptors: Iterable[grpc.ServerInterceptor] = (),
    ):
        config.check_serving()
        self.service = service
        self.config = config
        self.bindings = list(bindings)
        self.metrics = metrics
        self.trim_threshold = trim_threshold
        self._interceptors = list(interceptors)
        self.server: grpc.Server | None = None
        self.health: health.HealthServicer | None = None
        self.port = 0
        self.metrics_port: int | None = None
        #: Called once when the drain starts (after NOT_SERVING, before in-flight calls get their grace):
        #: a service ends work there that would otherwise hold the drain (the cache's parser processes).
        self.on_drain: Callable[[], None] | None = None

    @property
    def address(self) -> str:
        """``host:port`` a local client can dial (0.0.0.0 becomes 127.0.0.1)."""
        return f"{_host_for_clients(self.config.host)}:{self.port}"

    def _on_reject(self, method: str) -> None:
        observe = getattr(self.metrics, "observe_rejected", None)
        if observe is not None:
            observe(method.rsplit("/", 1)[-1])

    def bind(self) -> GrpcServer:
        """Start gRPC (health NOT_SERVING) and /metrics, then report the ports. On a failure everything
        opened so far is closed and the error re-raised (OSError: a port taken; ValueError: a bad file)."""
        c = self.config
        if c.malloc_tuning and not tune_malloc(MMAP_THRESHOLD, self.trim_threshold):
            log.warning("event=malloc_tuning_unavailable (not glibc?)")
        try:
            self._bind_grpc()
            if c.metrics_enabled and self.metrics is not None:
                self.metrics_port = self.metrics.serve_http(c.metrics_port, c.metrics_host or c.host)
        except BaseException:
            self.stop(0)
            raise
        self.report()
        return self

    def _bind_grpc(self) -> None:
        c = self.config
        interceptors = list(self._interceptors)
        if c.token:
            interceptors.insert(0, BearerTokenInterceptor(c.token, on_reject=self._on_reject))
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=c.workers, thread_name_prefix=f"{self.service}-rpc"),
            options=SERVER_OPTIONS,
            interceptors=interceptors,
        )
        for b in self.bindings:
            b.add(b.servicer, server)
        self.health = health.HealthServicer(experimental_non_blocking=True)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        names = [b.name for b in self.bindings]
        reflection.enable_server_reflection(
            [*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME],
            server,
        )
        address = f"{c.host}:{c.port}"
        if c.tls.enabled:
            cert, key, client_ca = c.tls.read()
            creds = grpc.ssl_server_credentials(
                [(key, cert)], root_certificates=client_ca, require_client_auth=client_ca is not None
            )
            bound = server.add_secure_port(address, creds)
        else:
            bound = server.add_insecure_port(address)
        if bound == 0:
            raise OSError(f"could not bind {address}")
        self.server = server
        self.port = bound
        server.start()
        self.set_serving(False)
        log.info(
            "event=server_started service=%s address=%s:%d services=%s tls=%s mtls=%s token=%s",
            self.service, c.host, bound, ",".join(names), c.tls.enabled, bool(c.tls_client_ca), bool(c.token),
        )  # fmt: skip

    def ready_info(self) -> dict:
        """What the stdout line and the ready file say."""
        c = self.config
        return {
            "service": self.service,
            "pid": os.getpid(),
            "host": _host_for_clients(c.host),
            "port": self.port,
            "metrics_port": self.metrics_port,
            "tls": c.tls.enabled,
        }

    def report(self) -> None:
        """Print the ready JSON as one stdout line and write it to ``ready_file`` (tmp + rename)."""
        report_ready(self.ready_info(), self.config.ready_file)

    def set_serving(self, serving: bool = True) -> None:
        """Health SERVING / NOT_SERVING for the whole server ("") and every registered service."""
        if self.health is None:
            return
        status = (
            health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ["", *(b.name for b in self.bindings)]:
            self.health.set(name, status)

    def stop(self, grace: float | None = None) -> None:
        """Health NOT_SERVING, in-flight calls get ``grace`` seconds (default: the config's), /metrics stops."""
        grace = self.config.grace if grace is None else grace
        if self.health is not None:
            self.health.enter_graceful_shutdown()
        if self.on_drain is not None:
            _call(self.on_drain)
        if self.server is not None:
            self.server.stop(grace).wait(grace + EXIT_MARGIN_S)
            self.server = None
        if self.metrics is not None:
            self.metrics.stop_http()
        if self.config.ready_file:
            Path(self.config.ready_file).unlink(missing_ok=True)

    def wait(self) -> None:
        if self.server is not None:
            self.server.wait_for_termination()


class HostedService:
    """Base of a service's server object (``DepthServer``, ``CacheServer``) that holds its ``GrpcServer`` as
    ``self.grpc``: the bound ports and address, and ``wait``."""

    grpc: GrpcServer

    @property
    def port(self) -> int:
        return self.grpc.port

    @property
    def metrics_port(self) -> int | None:
        return self.grpc.metrics_port

    @property
    def address(self) -> str:
        """``host:port`` a local client can dial."""
        return self.grpc.address

    def wait(self) -> None:
        """Block until the gRPC server has stopped."""
        self.grpc.wait()


def report_ready(info: dict, ready_file: str = "") -> None:
    """``info`` as ONE JSON line on stdout and, with ``ready_file``, atomically in that file (tmp + rename)."""
    text = json.dumps(info)
    if ready_file:  # the file first: whoever read the line finds the file too
        path = Path(ready_file)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(text + "\n")
        os.replace(tmp, path)
    print(text, flush=True)


def install_stop_signals(stop: threading.Event, on_signal: Callable[[int], None] | None = None) -> None:
    """SIGTERM / SIGINT set ``stop`` (main thread only; elsewhere nothing is installed)."""

    def handler(signum, _frame):
        log.info("event=signal signal=%s", signal.Signals(signum).name)
        stop.set()
        if on_signal is not None:
            on_signal(signum)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)


def watch_parent(pid: int, stop: threading.Event, period_s: float = 1.0) -> threading.Thread | None:
    """When ``pid`` > 0: set ``stop`` (a clean drain) once that process is gone, checked every ``period_s``.
    The safety net of a server started by another process (the client's local stack): if the parent is
    killed (even with SIGKILL) its servers do not outlive it. Returns the watcher thread (None for pid 0)."""
    if pid <= 0:
        return None
    reparented_check = os.getppid() == pid  # our parent: its death re-parents us

    def alive() -> bool:
        if reparented_check and os.getppid() != pid:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # exists, owned by someone else
            return True
        return True

    def loop():
        while not stop.wait(period_s):
            if not alive():
                log.info("event=parent_gone parent_pid=%d (draining)", pid)
                stop.set()
                return

    thread = threading.Thread(target=loop, name="parent-watch", daemon=True)
    thread.start()
    return thread


class _Interrupted(BaseException):
    """SIGTERM/SIGINT during load (BaseException: no ``except Exception`` in a loader eats it)."""


def run(
    server: GrpcServer,
    *,
    load: Callable[[], object] | None = None,
    on_stop: Callable[[], None] | None = None,
    stop_event: threading.Event | None = None,
) -> int:
    """The process lifecycle: bind, ``load()``, SERVING, wait for SIGTERM/SIGINT (or ``stop_event``),
    drain, ``on_stop()``. Returns the exit code: 0 after a clean stop (also when the signal arrives while
    loading), 1 when binding or loading fails (one ``event=start_failed`` / ``event=load_failed`` line)."""
    stop = stop_event or threading.Event()
    loading = threading.Event()

    def interrupt_loading(_signum):
        if loading.is_set():
            raise _Interrupted()

    install_stop_signals(stop, interrupt_loading)
    watch_parent(server.config.parent_pid, stop)
    try:
        server.bind()
    except (OSError, ValueError, RuntimeError) as exc:
        log.error("event=start_failed service=%s error=%s", server.service, exc)
        return 1
    try:
        loading.set()
        try:
            if load is not None and not stop.is_set():
                load()
        finally:
            loading.clear()
    except _Interrupted:
        server.stop(0)
        _call(on_stop)
        return 0
    except Exception as exc:  # noqa: BLE001 - a failed load ends the process with one line
        log.error("event=load_failed service=%s error=%s: %s", server.service, type(exc).__name__, exc)
        server.stop(0)
        _call(on_stop)
        return 1
    server.set_serving(True)
    log.info("event=serving service=%s address=%s", server.service, server.address)
    while not stop.wait(0.5):
        pass
    start_exit_watchdog(server.config.grace + EXIT_MARGIN_S)
    server.stop()
    _call(on_stop)
    log.info("event=stopped service=%s pid=%d", server.service, os.getpid())
    return 0


def _call(fn) -> None:
    if fn is not None:
        fn()


def start_exit_watchdog(seconds: float, code: int = 0) -> None:
    """End the process with ``code`` ``seconds`` from now unless it has ended by then (a drain that hangs)."""

    def force():
        log.error("event=drain_timeout seconds=%.1f (forcing exit)", seconds)
        _hard_exit(code)

    timer = threading.Timer(seconds, force)
    timer.daemon = True
    timer.start()


def _hard_exit(code: int) -> None:
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def exit_code(server: GrpcServer, code: int) -> int:
    """``code`` for the CLI to exit with, after ``run``. A handler thread of this server still running after
    the drain (a request that ignores cancellation) would keep the interpreter alive at exit (Python joins
    executor threads), so then the process ends here at once, without joining it."""
    prefix = f"{server.service}-rpc"
    stuck = [t for t in threading.enumerate() if t.name.startswith(prefix) and t.is_alive()]
    if stuck:
        log.warning("event=exit_with_busy_handlers count=%d", len(stuck))
        _hard_exit(code)
    return code
