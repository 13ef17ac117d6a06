"""The settings every objvid server shares, as one dataclass and one set of flags.

``ServingConfig`` is the base of each service's config (depth, cache; the diffusion server reads the
same host / metrics / log flags). TLS and the token come as *paths and strings*, never bytes: the
framework reads the files when it binds (``TlsFiles.read``), so a missing file is reported at start.

Flags (``serving_flags(...)``), each with an ``OBJVID_<SERVICE>_<FLAG>`` fallback:
``--host --port --workers --metrics-host --metrics-port --tls-cert --tls-key --tls-client-ca --token
--allow-insecure-token --grace --ready-file --parent-pid --malloc-tuning --log-level``.
Port 0 = any free port (reported); ``--metrics-port off`` = no endpoint; ``--metrics-host`` empty = the
serving host (not 0.0.0.0 unless ``--host`` is).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from objvid.runtime.config import PORT, PORT_OR_OFF, Flag, log_level_flag


@dataclasses.dataclass(frozen=True)
class TlsFiles:
    """PEM file paths: ``cert`` + ``key`` serve TLS; ``client_ca`` also requires client certificates (mTLS)."""

    cert: str = ""
    key: str = ""
    client_ca: str = ""

    @property
    def enabled(self) -> bool:
        return bool(self.cert)

    def check(self) -> None:
        if bool(self.cert) != bool(self.key):
            raise ValueError("tls_cert/tls_key: give both or neither")
        if self.client_ca and not self.cert:
            raise ValueError("tls_client_ca: mTLS needs tls_cert and tls_key too")

    def read(self) -> tuple[bytes, bytes, bytes | None]:
        """(cert, key, client_ca or None) bytes; ValueError naming the flag of a file that cannot be read."""
        out = []
        for name, path in (("tls_cert", self.cert), ("tls_key", self.key), ("tls_client_ca", self.client_ca)):
            if not path:
                out.append(None)
                continue
            try:
                out.append(Path(path).read_bytes())
            except OSError as exc:
                raise ValueError(f"{name}: cannot read {path}: {exc.strerror}") from None
        return out[0], out[1], out[2]


@dataclasses.dataclass
class ServingConfig:
    """What every server shares. Services subclass it with their own fields and defaults.

    metrics_port: None = no endpoint, 0 = any free port (a negative value also means off, for old
    callers). metrics_host: "" = the serving host. grace: seconds in-flight calls get after SIGTERM; the
    process then exits even when a handler is stuck. token: require ``authorization: Bearer <token>``
    (health and reflection stay open); refused on a plaintext port unless ``allow_insecure_token``.
    ready_file: written (atomically) once the ports are bound, with the same JSON as the stdout line.
    parent_pid: drain and exit when that process is gone (0 = off; the client's local stack sets it).
    """

    host: str = "127.0.0.1"
    port: int = 0
    workers: int = 16
    metrics_host: str = ""
    metrics_port: int | None = None
    tls_cert: str = ""
    tls_key: str = ""
    tls_client_ca: str = ""
    token: str = ""
    allow_insecure_token: bool = False
    grace: float = 5.0
    ready_file: str = ""
    malloc_tuning: bool = True
    parent_pid: int = 0

    @property
    def tls(self) -> TlsFiles:
        return TlsFiles(self.tls_cert or "", self.tls_key or "", self.tls_client_ca or "")

    @property
    def metrics_enabled(self) -> bool:
        return self.metrics_port is not None and self.metrics_port >= 0

    def check_serving(self) -> None:
        """Raise ValueError naming the first bad shared setting."""
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port: must be 0..65535, got {self.port}")
        if self.metrics_port is not None and self.metrics_port > 65535:
            raise ValueError(f"metrics_port: must be 0..65535 or off, got {self.metrics_port}")
        if self.workers < 1:
            raise ValueError(f"workers: must be >= 1, got {self.workers}")
        if not self.grace >= 0:
            raise ValueError(f"grace: must be >= 0 seconds, got {self.grace}")
        self.tls.check()
        if self.token and not self.tls.enabled and not self.allow_insecure_token:
            raise ValueError(
                "token: a bearer token over a plaintext port can be read by anyone on the network; serve TLS "
                "(--tls-cert/--tls-key) or pass --allow-insecure-token"
            )


def serving_flags(*, port: int, metrics_port: int | None, host: str = "0.0.0.0", workers: int = 16,
                  grace: float = 5.0, log_level: str = "info") -> list[Flag]:  # fmt: skip
    """The shared server flags with this service's defaults (in --help order)."""
    return [
        Flag("host", host, "gRPC bind address", metavar="ADDR"),
        Flag(
            "port", port, "gRPC port (0 = any free port, reported on stdout and in --ready-file)", kind=PORT
        ),
        Flag("workers", workers, "gRPC worker threads"),
        Flag(
            "metrics-host",
            "",
            "Prometheus /metrics bind address (empty = the --host address)",
            metavar="ADDR",
        ),
        Flag(
            "metrics-port",
            metrics_port,
            "Prometheus /metrics port (off = no endpoint, 0 = any free port)",
            kind=PORT_OR_OFF,
        ),  # fmt: skip
        Flag("tls-cert", "", "PEM server certificate (with --tls-key: serve TLS)", metavar="PATH"),
        Flag("tls-key", "", "PEM server private key", metavar="PATH"),
        Flag(
            "tls-client-ca",
            "",
            "PEM CA bundle: require client certificates signed by it (mTLS)",
            metavar="PATH",
        ),
        Flag(
            "token",
            "",
            "require `authorization: Bearer <token>` on every call except health/reflection",
            metavar="TOKEN",
        ),  # fmt: skip
        Flag(
            "allow-insecure-token", False, "accept --token on a plaintext port (the token travels readable)"
        ),
        Flag(
            "grace",
            grace,
            "on SIGTERM, seconds in-flight calls get; then the process exits regardless",
            aliases=("grace-seconds",),
            metavar="SECONDS",
        ),  # fmt: skip
        Flag(
            "ready-file",
            "",
            "write {service, pid, host, port, metrics_port} JSON here once bound",
            metavar="PATH",
        ),
        Flag(
            "parent-pid",
            0,
            "drain and exit once this process is gone (0 = off; set by the client's local stack so a killed "
            "client leaves no servers)",
            metavar="PID",
        ),
        Flag(
            "malloc-tuning",
            True,
            "keep multi-MB message buffers in glibc's heap instead of re-faulting them per request",
        ),  # fmt: skip
        log_level_flag(log_level),
    ]
