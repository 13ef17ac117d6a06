"""Depth server lifecycle: listen (health NOT_SERVING), load the model, warm up, report SERVING, stop.

In-process use (tests, benches)::

    server = DepthServer(ServerConfig(model="/models/moge-vitl.pt", port=0, metrics_port=None)).start()
    ... server.port, server.metrics_port ...
    server.stop()
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass

import torch

from objvid.depth import lift
from objvid.depth.metrics import DepthMetrics
from objvid.depth.model import DEFAULT_MODEL, DEFAULT_MODEL_DIR, MoGeDepthModel, load_model
from objvid.depth.service import SERVICE_NAME, DepthServicer, LiftSettings, add_to_server
from objvid.serving.config import ServingConfig
from objvid.serving.server import Binding, GrpcServer, HostedService

log = logging.getLogger("objvid.depth.server")

#: torch intra-op threads on a CUDA server with --torch-threads 0: the model runs on the GPU, and the few
#: CPU tensor ops are small; a pool as wide as the host only adds threads spinning at OpenMP barriers.
CUDA_TORCH_THREADS = 4


@dataclass
class ServerConfig(ServingConfig):
    """Everything ``objvid-depth serve`` takes (see cli.py / docs/depth.md for meanings and defaults).

    The shared server settings (host, ports, TLS, token, grace, ready file, malloc tuning) come from
    ``ServingConfig``. torch_threads: CPU threads of torch's intra-op pool; 0 = auto (CUDA: at most
    ``CUDA_TORCH_THREADS``, CPU: torch's default). fast_kernels: ``fast.apply_fast_paths`` on CUDA.
    """

    host: str = "0.0.0.0"
    port: int = 50051
    workers: int = 8
    metrics_port: int | None = 9101
    model: str = DEFAULT_MODEL
    model_version: str = "auto"
    geometry_model: str = ""  # VGGT for LiftViews (e.g. facebook/VGGT-1B); empty = LiftViews off
    model_dir: str = DEFAULT_MODEL_DIR
    device: str = "auto"
    dtype: str = "auto"
    num_tokens: int = 0
    resolution_level: int = 9
    width: int = lift.GEN3C_WORKING_HW[1]
    height: int = lift.GEN3C_WORKING_HW[0]
    infer_width: int = lift.GEN3C_INFER_HW[1]
    infer_height: int = lift.GEN3C_INFER_HW[0]
    max_pixels: int = 40_000_000
    max_images: int = 32
    max_request_pixels: int = 72_000_000
    host_memory_budget: int | None = 0  # 0 = automatic (80 % of the usable memory), None = off
    micro_batch: int = 4
    decode_threads: int = 4
    warmup: bool = True
    torch_threads: int = 0
    fast_kernels: bool = True

    def validate(self) -> None:
        """Raise ValueError naming the first bad setting."""
        for name in (
            "width",
            "height",
            "infer_width",
            "infer_height",
            "max_pixels",
            "max_images",
            "max_request_pixels",
            "micro_batch",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1, got {getattr(self, name)}")
        if self.workers < 1 or self.decode_threads < 1:
            raise ValueError("workers/decode_threads: must be >= 1")
        if self.torch_threads < 0:
            raise ValueError(f"torch_threads: must be >= 0 (0 = auto), got {self.torch_threads}")
        self.check_serving()

    def settings(self) -> LiftSettings:
        return LiftSettings(
            working_hw=(self.height, self.width),
            infer_hw=(self.infer_height, self.infer_width),
            max_pixels=self.max_pixels,
            max_images=self.max_images,
            max_request_pixels=self.max_request_pixels,
            micro_batch=self.micro_batch,
        )


class DepthServer(HostedService):
    """One depth server: gRPC (+ health, reflection, token) and the metrics endpoint, on ``objvid.serving``."""

    def __init__(self, config: ServerConfig):
        config.validate()
        self.config = config
        self.metrics = DepthMetrics()
        from objvid.runtime.memguard import HostMemoryGuard

        self.servicer = DepthServicer(
            config.settings(), self.metrics, config.decode_threads, HostMemoryGuard(config.host_memory_budget)
        )
        self.grpc = GrpcServer(
            "depth", config, [Binding(add_to_server, self.servicer, SERVICE_NAME)], self.metrics
        )
        self.model: MoGeDepthModel | None = None

    @property
    def handle(self):
        """The running grpc.Server (None before listen() and after stop())."""
        return self.grpc.server

    def listen(self) -> DepthServer:
        """Bind gRPC (health NOT_SERVING) and the metrics endpoint; the model is not loaded yet. On a
        failure (a port taken, a TLS file missing) everything opened so far is closed and the error re-raised."""
        try:
            self.grpc.bind()
        except BaseException:
            self.servicer.close()
            raise
        return self

    def load(self, model=None, geometry=None) -> MoGeDepthModel:
        """Load (and warm up) the model, then report SERVING. Raises ModelLoadError.

        model: an already built predictor (callable (B, 3, h, w) float [0, 1] -> ``lift.Prediction`` with
        ``device`` and ``name``) used instead of ``config.model`` (benchmarks, tests). geometry: a built
        ``geometry.GeometryModel`` used instead of ``config.geometry_model``.
        """
        c = self.config
        start = time.perf_counter()
        if model is None:
            model = load_model(
                c.model,
                device=c.device,
                dtype=c.dtype,
                version=c.model_version,
                num_tokens=c.num_tokens,
                resolution_level=c.resolution_level,
                model_dir=c.model_dir,
                fast_kernels=c.fast_kernels,
            )
        if geometry is None and c.geometry_model:
            from objvid.depth.geometry import load_geometry_model

            geometry = load_geometry_model(c.geometry_model, device=c.device, model_dir=c.model_dir)
        self.servicer.geometry_model = geometry  # None: LiftViews answers FAILED_PRECONDITION
        threads = set_torch_threads(c.torch_threads, model.device)
        warmup_s = 0.0
        if c.warmup:
            warmup_s = self.servicer.warm_up(model, warmup_batch_sizes(c, model.device))
        self.model = model
        self.servicer.set_model(model)
        self.metrics.model_load.set(time.perf_counter() - start)
        self.metrics.model_loaded.set(1)
        self.grpc.set_serving(True)
        log.info(
            "event=ready address=%s:%d metrics_port=%s model=%s version=%s device=%s dtype=%s "
            "torch_threads=%d load_seconds=%.2f warmup_seconds=%.2f",
            c.host, self.port, self.metrics_port, model.name, getattr(model, "version", "-"), model.device,
            getattr(model, "dtype_name", "-"), threads, time.perf_counter() - start, warmup_s,
        )  # fmt: skip
        return model

    def start(self) -> DepthServer:
        """listen() then load(); on a load failure the listeners are closed and the error re-raised."""
        self.listen()
        try:
            self.load()
        except BaseException:
            self.stop(grace=0)
            raise
        return self

    def stop(self, grace: float | None = None) -> None:
        """Health NOT_SERVING, let in-flight RPCs finish (up to ``grace`` s), close everything."""
        self.grpc.stop(grace)
        self.metrics.model_loaded.set(0)
        self.servicer.close()
        log.info("event=stopped pid=%d", os.getpid())


def set_torch_threads(requested: int, device: torch.device) -> int:
    """Apply --torch-threads (0 = auto, see ``ServerConfig``); returns the intra-op thread count in use."""
    if requested > 0:
        torch.set_num_threads(requested)
    elif device.type == "cuda":
        torch.set_num_threads(max(1, min(CUDA_TORCH_THREADS, os.cpu_count() or 1)))
    return torch.get_num_threads()


def warmup_batch_sizes(config: ServerConfig, device: torch.device) -> list[int]:
    """Batch sizes to warm up: on CUDA every size a micro-batch can have (cuDNN tunes each shape once, on
    the inference thread); on CPU one call."""
    if device.type != "cuda":
        return [1]
    return list(range(1, min(config.micro_batch, config.max_images) + 1))
