"""Host the diffusion models locally through PyTriton (``objvid-diffusion serve``, the client's embedded stack).

Same model classes and the same request code (:func:`objvid.diffusion.triton_io.run_chunk`) as the official
repository under ``model_repository/``; same tensors, same decoupled streaming. PyTriton traps handled here:
numpy must be < 2 (else empty outputs), ``LD_LIBRARY_PATH`` must start with this interpreter's LIBDIR (else
the backend stub of a pyenv/uv Python fails to load models), binds default to 127.0.0.1 (PyTriton's own
default is 0.0.0.0), and a small ``exit_timeout_secs`` keeps ``stop()`` quick.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sysconfig
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from objvid.diffusion.base import VideoModel
from objvid.diffusion.cache_source import CacheSource
from objvid.diffusion.triton_io import INPUTS, OUTPUTS, ChunkError, run_chunk
from objvid.serving import server as serving

log = logging.getLogger("objvid.diffusion.pytriton")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_HTTP_PORT = 8000
DEFAULT_GRPC_PORT = 8001
DEFAULT_METRICS_PORT = 8002
#: Triton endpoints that need ``--token`` besides PyTriton's admin ones (health stays open for probes).
TOKEN_PROTECTED = ("inference", "metadata", "model-config")
#: How a caller presents the token: gRPC metadata / HTTP header (Triton's restricted-protocol headers).
ACCESS_HEADERS = {"grpc": "triton-grpc-protocol-triton-access-token", "http": "triton-access-token"}


@dataclasses.dataclass(frozen=True)
class ServerConfig:
    """Where the local Triton listens. host: bind address for HTTP, gRPC and metrics (0.0.0.0 = all).
    metrics_port: None = no metrics endpoint (the flag's ``off``, as in every objvid server). ready_file:
    written with the ready JSON once the models are served (``objvid.serving.server.report_ready``).
    parent_pid: stop when that process is gone (0 = off), as every objvid server. token: callers of
    inference, metadata and model-config must send it as Triton's access header (``ACCESS_HEADERS``;
    health stays open); Triton checks it, like the ``--token`` of the depth and cache servers.
    Ports must be given (Triton cannot report a port it picked, unlike the depth and cache servers)."""

    host: str = DEFAULT_HOST
    http_port: int = DEFAULT_HTTP_PORT
    grpc_port: int = DEFAULT_GRPC_PORT
    metrics_port: int | None = DEFAULT_METRICS_PORT
    exit_timeout_secs: int = 3
    log_verbose: int = 0
    ready_file: str = ""
    parent_pid: int = 0
    token: str = ""
    allow_insecure_token: bool = False

    def __post_init__(self):
        if self.token and not self.allow_insecure_token:
            raise ValueError(
                "token: the local Triton serves plaintext, so the token would travel readable; pass "
                "--allow-insecure-token (and keep the ports on 127.0.0.1 or behind a NetworkPolicy)"
            )


def prepare_environment() -> None:
    """Check numpy < 2 and put this interpreter's LIBDIR first in ``LD_LIBRARY_PATH``.

    The tritonserver process and its Python backend stub inherit ``os.environ`` when PyTriton starts them,
    so setting it here, before :func:`start_server`, is enough (no re-exec needed).
    """
    if int(np.__version__.split(".")[0]) >= 2:
        raise RuntimeError(f"PyTriton needs numpy < 2 (numpy {np.__version__} makes it return empty outputs)")
    libdir = sysconfig.get_config_var("LIBDIR")
    if not libdir:
        return
    parts = [p for p in os.environ.get("LD_LIBRARY_PATH", "").split(":") if p and p != libdir]
    os.environ["LD_LIBRARY_PATH"] = ":".join([libdir, *parts])


def infer_function(model: VideoModel):
    """PyTriton decoupled inference callable for ``model``: yields one response list per streamed message."""

    source = CacheSource.from_config()  # RENDER_SOURCE: OBJVID_DIFFUSION_CACHE_ADDRESS (cache_source.py)

    def infer(requests) -> Iterator[list[dict[str, np.ndarray]]]:
        if len(requests) != 1:  # max_batch_size 0, no batcher: Triton hands over one request per call
            raise ChunkError("INTERNAL", f"expected one request per call, got {len(requests)}")
        inputs = {name: requests[0].data.get(name) for name, *_ in INPUTS}
        try:
            for outputs in run_chunk(model, inputs, source=source):
                yield [outputs]
        except ChunkError as err:
            yield [{"PROGRESS": err.status_tensor(model)}]  # the typed status (see triton_io)
            raise ChunkError(err.code, err.reason) from None  # PyTriton sends the traceback + this message

    infer.__name__ = f"infer_{model.name}"
    return infer


def bind_model(triton, model: VideoModel) -> None:
    """Register ``model`` on a ``pytriton.triton.Triton`` under ``model.name`` (decoupled, no batching)."""
    from pytriton.model_config import ModelConfig, Tensor

    triton.bind(
        model_name=model.name,
        infer_func=infer_function(model),
        inputs=[Tensor(name=n, dtype=dt, shape=shape, optional=opt) for n, dt, shape, opt in INPUTS],
        outputs=[Tensor(name=n, dtype=dt, shape=shape) for n, dt, shape in OUTPUTS],
        config=ModelConfig(batching=False, decoupled=True),
        strict=False,
    )


def build_triton(config: ServerConfig):
    """A configured, not yet started ``pytriton.triton.Triton``."""
    prepare_environment()
    from pytriton.triton import DEFAULT_PROTECTED_ENDPOINTS, Triton, TritonConfig, TritonSecurityConfig

    triton_config = TritonConfig(
        http_address=config.host,
        http_port=config.http_port,
        grpc_address=config.host,
        grpc_port=config.grpc_port,
        allow_metrics=config.metrics_port is not None,
        metrics_address=config.host,
        metrics_port=config.metrics_port if config.metrics_port is not None else DEFAULT_METRICS_PORT,
        exit_timeout_secs=config.exit_timeout_secs,
        log_verbose=config.log_verbose,
    )
    security = None  # PyTriton's default: its own random token on the admin endpoints
    if config.token:
        protected = [*DEFAULT_PROTECTED_ENDPOINTS, *TOKEN_PROTECTED]
        security = TritonSecurityConfig(access_token=config.token, restricted_endpoints=protected)
    return Triton(config=triton_config, security_config=security)


def start_server(models: Sequence[VideoModel], config: ServerConfig = ServerConfig()):
    """Start Triton with ``models`` bound and return the running ``Triton`` (call ``.stop()`` when done)."""
    if not models:
        raise ValueError("start_server needs at least one model")
    triton = build_triton(config)
    for model in models:
        bind_model(triton, model)
    triton.run()
    log.info(
        "event=triton_started host=%s http_port=%d grpc_port=%d metrics_port=%s models=%s",
        config.host, config.http_port, config.grpc_port, config.metrics_port, ",".join(m.name for m in models),
    )  # fmt: skip
    return triton


def ready_info(config: ServerConfig, models: Sequence[VideoModel]) -> dict:
    """The ready JSON of a local Triton (stdout line and ``ready_file``)."""
    return {
        "service": "diffusion",
        "pid": os.getpid(),
        "host": "127.0.0.1" if config.host in ("0.0.0.0", "") else config.host,
        "grpc_port": config.grpc_port,
        "http_port": config.http_port,
        "metrics_port": config.metrics_port,
        "models": [m.name for m in models],
    }


def serve(models: Sequence[VideoModel], config: ServerConfig = ServerConfig()) -> int:
    """Serve ``models`` until SIGINT or SIGTERM (blocking): Triton keeps its own lifecycle, the process side
    is ``objvid.serving``'s (signals, the ready line/file, an exit that cannot hang). Returns the exit code:
    0 after a signal, 1 when Triton died on its own."""
    if not models:
        raise ValueError("serve needs at least one model")
    triton = build_triton(config)
    for model in models:
        bind_model(triton, model)
    stop = threading.Event()
    serving.install_stop_signals(stop)
    serving.watch_parent(config.parent_pid, stop)
    code = 0
    with triton:
        triton.run()
        log.info(
            "event=triton_serving host=%s http_port=%d grpc_port=%d metrics_port=%s models=%s",
            config.host, config.http_port, config.grpc_port, config.metrics_port, ",".join(m.name for m in models),
        )  # fmt: skip
        serving.report_ready(ready_info(config, models), config.ready_file)
        while not stop.wait(1.0):
            if not triton.is_alive():
                log.error("event=triton_died")
                code = 1
                break
        serving.start_exit_watchdog(config.exit_timeout_secs + serving.EXIT_MARGIN_S, code)
    if config.ready_file:
        Path(config.ready_file).unlink(missing_ok=True)
    log.info("event=triton_stopped")
    return code
