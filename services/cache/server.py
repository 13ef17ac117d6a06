"""The cache server process: ``CacheServicer`` on the shared framework (``objvid.serving``).

In-process use (tests, benches)::

    server = CacheServer(ServerConfig(host="127.0.0.1", port=0, device="cpu"))   # bound and SERVING
    ... server.address, server.store ...
    server.stop(0)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from objvid.serving.config import ServingConfig
from objvid.serving.metrics import GcPauses
from objvid.serving.server import Binding, GrpcServer

from .frames import add_cache_service
from .metrics import CacheMetrics
from .requests import Limits
from .service import SERVICE_NAME, TRAJECTORY_BATCH, CacheServicer
from .store import SceneStore

log = logging.getLogger("objvid.cache.server")

#: Free heap the cache keeps before glibc trims it (``--malloc-tuning``; the depth service keeps 512 MiB).
TRIM_THRESHOLD = 256 << 20

__all__ = ["CacheServer", "Limits", "ServerConfig"]


@dataclass
class ServerConfig(ServingConfig):
    """Everything ``CacheServer`` needs; the CLI fills it from flags and ``OBJVID_CACHE_*`` variables.

    memory_budget: device bytes all resident scenes may hold. snapshot_dir: write scenes there and serve
    them again after a restart (None = off).
    """

    port: int = 50052
    workers: int = 32
    grace: float = 10.0
    device: str = "cpu"
    memory_budget: int = 4 << 30
    snapshot_dir: str | None = None
    limits: Limits = field(default_factory=Limits)
    trajectory_batch: int = TRAJECTORY_BATCH


class CacheServer:
    """A running cache service: gRPC (health, reflection, optional TLS/mTLS/token) + optional /metrics.

    ``CacheServer(config)`` binds and reports SERVING at once (nothing to load); ``start=False`` only builds
    it (``grpc.bind()`` / ``objvid.serving.server.run`` then drive the lifecycle).
    """

    def __init__(self, config: ServerConfig, *, start: bool = True) -> None:
        self.config = config
        self.metrics = CacheMetrics()
        self.servicer = CacheServicer(
            config.device,
            config.memory_budget,
            snapshot_dir=config.snapshot_dir,
            limits=config.limits,
            metrics=self.metrics,
            trajectory_batch=config.trajectory_batch,
        )
        self.gc_pauses = GcPauses(self.metrics.registry, "objvid_cache")
        try:
            self.grpc = GrpcServer(
                "cache",
                config,
                [Binding(add_cache_service, self.servicer, SERVICE_NAME)],
                self.metrics,
                trim_threshold=TRIM_THRESHOLD,
            )
            if start:
                self.grpc.bind()
                self.grpc.set_serving(True)
        except BaseException:
            self.close()
            raise
        log.info(
            "event=cache_server_created device=%s budget=%d snapshots=%s",
            config.device, config.memory_budget, config.snapshot_dir or "-",
        )  # fmt: skip

    @property
    def port(self) -> int:
        return self.grpc.port

    @property
    def metrics_port(self) -> int | None:
        return self.grpc.metrics_port

    @property
    def store(self) -> SceneStore:
        return self.servicer.store

    @property
    def address(self) -> str:
        return self.grpc.address

    def close(self) -> None:
        """Release what is not gRPC: queued snapshots reach the disk, the GC hook goes."""
        self.store.close()
        self.gc_pauses.close()

    def stop(self, grace: float | None = 2.0) -> None:
        """Health NOT_SERVING, finish in-flight calls within ``grace`` seconds, stop /metrics, close."""
        self.grpc.stop(grace)
        self.close()
        log.info("event=cache_server_stopped port=%d", self.port)

    def wait(self) -> None:
        self.grpc.wait()
