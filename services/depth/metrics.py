"""Prometheus metrics of one depth server, in a private registry (several servers may share a process).

Exposed names (prefix ``objvid_depth_``):
- ``requests_total{code}``: finished Lift RPCs by gRPC status code name (OK, INVALID_ARGUMENT, ...);
- ``request_seconds``: Lift latency histogram (server side, decode to response);
- ``stage_seconds{stage}``: time per stage: ``decode`` (bytes -> pixels at the inference size),
  ``queue`` (waiting for the inference thread), ``lift`` (on the inference thread: upload + model + GEN3C
  post-processing queued), ``download`` (waiting for the device work and the copies to the host),
  ``encode`` (response bytes); per micro-batch for queue/lift/download, per request otherwise;
- ``images_total``: images lifted;
- ``model_load_seconds``: time to load the model (0 until loaded); ``model_loaded``: 1 once serving;
plus the standard ``process_*`` collector (RSS, CPU).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from objvid.serving.metrics import MetricsEndpoint

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_STAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)
STAGES = ("decode", "queue", "lift", "download", "encode")


class DepthMetrics(MetricsEndpoint):
    """All metrics of one depth server. ``serve_http(port)`` exposes them; ``text()`` renders them."""

    def __init__(self) -> None:
        super().__init__()
        r = self.registry
        self.requests = Counter(
            "objvid_depth_requests", "Finished Lift RPCs by status code", ["code"], registry=r
        )
        self.latency = Histogram(
            "objvid_depth_request_seconds", "Lift latency (server side)", buckets=_LATENCY_BUCKETS, registry=r
        )
        self.stages = Histogram(
            "objvid_depth_stage_seconds", "Time per Lift stage", ["stage"], buckets=_STAGE_BUCKETS, registry=r
        )
        self.images = Counter("objvid_depth_images", "Images lifted", registry=r)
        self.model_load = Gauge(
            "objvid_depth_model_load_seconds", "Seconds it took to load the model", registry=r
        )
        self.model_loaded = Gauge(
            "objvid_depth_model_loaded", "1 once the model is loaded and serving", registry=r
        )

    def observe(self, code: str, seconds: float, images: int = 0) -> None:
        self.requests.labels(code=code).inc()
        self.latency.observe(seconds)
        if images:
            self.images.inc(images)

    def observe_rejected(self, method: str) -> None:
        """A call refused by the token check (``objvid.serving.auth``): requests_total{code=UNAUTHENTICATED}."""
        self.requests.labels(code="UNAUTHENTICATED").inc()

    def stage(self, name: str, seconds: float) -> None:
        self.stages.labels(stage=name).observe(seconds)

    def count(self, code: str) -> float:
        """Current value of requests_total{code} (tests and the bench read it)."""
        return self.registry.get_sample_value("objvid_depth_requests_total", {"code": code}) or 0.0
