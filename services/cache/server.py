"""The cache server process: ``CacheServicer`` on the shared framework (``objvid.serving``).

In-process use (tests, benches)::

    server = CacheServer(ServerConfig(host="127.0.0.1", port=0, device="cpu"))   # bound and SERVING
    ... server.address, server.store ...
    server.stop(0)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from objvid.runtime.memguard import HostMemoryGuard
from objvid.serving.config import ServingConfig
from objvid.serving.metrics import GcPauses
from objvid.serving.server import Binding, GrpcServer, HostedService

from .frames import add_cache_service
from .io_limits import LoadLimits
from .metrics import CacheMetrics
from .parse_pool import ParsePool
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
    them again after a restart (None = off). The rest bound hostile input (docs/security.md): load_limits
    (object files), parse_workers / parse_timeout / parse_memory (the parser processes),
    host_memory_budget (bytes; 0 = 80 % of the usable memory, None = off), snapshot_disk_budget (bytes, 0 =
    none).
    """

    port: int = 50052
    workers: int = 32
    grace: float = 10.0
    device: str = "cpu"
    memory_budget: int = 4 << 30
    snapshot_dir: str | None = None
    limits: Limits = field(default_factory=Limits)
    trajectory_batch: int = TRAJECTORY_BATCH
    load_limits: LoadLimits = field(default_factory=LoadLimits)
    parse_workers: int = 2
    parse_timeout: float = 60.0
    parse_memory: int = 4 << 30
    host_memory_budget: int | None = 0
    snapshot_disk_budget: int = 0


class CacheServer(HostedService):
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
            load_limits=config.load_limits,
            parse_pool=ParsePool(
                config.parse_workers,
                timeout_s=config.parse_timeout,
                memory_bytes=config.parse_memory,
                limits=config.load_limits,
            ),
            host_guard=HostMemoryGuard(config.host_memory_budget),
            snapshot_disk_budget=config.snapshot_disk_budget,
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
            # Parses in flight end at once when the drain starts (UNAVAILABLE): a stop never waits on one.
            self.grpc.on_drain = self.servicer.parse_pool.close
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
    def store(self) -> SceneStore:
        return self.servicer.store

    def close(self) -> None:
        """Release what is not gRPC: parser workers end, queued snapshots reach the disk, the GC hook goes."""
        self.servicer.parse_pool.close()
        self.store.close()
        self.gc_pauses.close()

    def stop(self, grace: float | None = 2.0) -> None:
        """Health NOT_SERVING, finish in-flight calls within ``grace`` seconds, stop /metrics, close."""
        self.grpc.stop(grace)
        self.close()
        log.info("event=cache_server_stopped port=%d", self.port)
