"""Prometheus metrics of one cache server, in a private registry (several servers may share a process).

Exposed names (prefix ``objvid_cache_``):
- ``requests_total{method, code}``: finished RPCs by gRPC status code name;
- ``request_seconds{method}``: latency histogram (for RenderTrajectory: the whole stream);
- ``frames_rendered_total``: frames rendered (streamed or not);
- ``scenes_resident``: scenes held on the device; ``scenes_known``: resident plus snapshot-only;
- ``device_bytes``: bytes the resident scenes hold on the device; ``memory_budget_bytes``;
- ``evictions_total``: scenes evicted from the device to make room;
- ``device_queue_seconds``: time requests waited for the device;
plus the standard ``process_*`` collector (RSS, CPU).
"""

from __future__ import annotations

import logging

from prometheus_client import Counter, Gauge, Histogram

from objvid.serving.metrics import MetricsEndpoint

log = logging.getLogger("objvid.cache.service")

_LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class CacheMetrics(MetricsEndpoint):
    """All metrics of one server. ``serve_http(port)`` exposes them; ``text()`` renders them."""

    def __init__(self) -> None:
        super().__init__()
        r = self.registry
        self.requests = Counter(
            "objvid_cache_requests", "Finished RPCs by method and status code", ["method", "code"], registry=r
        )
        self.latency = Histogram(
            "objvid_cache_request_seconds", "RPC latency", ["method"], buckets=_LATENCY_BUCKETS, registry=r
        )
        self.frames = Counter("objvid_cache_frames_rendered", "Frames rendered", registry=r)
        self.scenes_resident = Gauge("objvid_cache_scenes_resident", "Scenes held on the device", registry=r)
        self.scenes_known = Gauge(
            "objvid_cache_scenes_known", "Scenes resident or restorable from snapshots", registry=r
        )
        self.device_bytes = Gauge(
            "objvid_cache_device_bytes", "Bytes the resident scenes hold on the device", registry=r
        )
        self.budget_bytes = Gauge(
            "objvid_cache_memory_budget_bytes", "Configured device memory budget", registry=r
        )
        self.evictions = Counter("objvid_cache_evictions", "Scenes evicted from the device", registry=r)
        self.queue_wait = Histogram(
            "objvid_cache_device_queue_seconds",
            "Time spent waiting for the device",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )

    def observe(self, method: str, code: str, seconds: float) -> None:
        self.requests.labels(method=method, code=code).inc()
        self.latency.labels(method=method).observe(seconds)

    def observe_rejected(self, method: str) -> None:
        """A call refused by the token check (``objvid.serving.auth``)."""
        self.observe(method, "UNAUTHENTICATED", 0.0)

    def count(self, method: str, code: str) -> float:
        """Current value of requests_total{method, code} (tests and the load tool read it)."""
        return (
            self.registry.get_sample_value("objvid_cache_requests_total", {"method": method, "code": code})
            or 0.0
        )


class RenderStages:
    """Where a per-frame ``Render`` spends its time on the server, per stage:

    ``decode`` (request checks, scene lookup), ``queue`` (waiting for the device), ``render`` (the library
    call: its checks and kernel launches; on CUDA the kernels may still run), ``to_host`` (waits for the
    kernels, packs and copies the outputs to pinned host memory), ``encode`` (the response bytes).
    Exported as ``objvid_cache_render_stage_seconds{stage}`` (a Summary: ``_sum`` / ``_count``; the load
    tool turns them into means) and, at debug level, one ``event=render_stages`` log line per call.
    gRPC's own work (request parsing, copying the response into its buffers, the transport) is outside.
    """

    NAMES = ("decode", "queue", "render", "to_host", "encode")

    def __init__(self, registry) -> None:
        from prometheus_client import Summary

        summary = Summary(
            "objvid_cache_render_stage_seconds",
            "Server time of per-frame Render calls by stage",
            ["stage"],
            registry=registry,
        )
        self._children = [summary.labels(stage=n) for n in self.NAMES]

    def observe(self, scene_id: str, *marks: float) -> None:
        """``marks``: perf_counter() at the start and after each stage (len(NAMES) + 1 values)."""
        for child, a, b in zip(self._children, marks, marks[1:], strict=False):
            child.observe(b - a)
        if log.isEnabledFor(logging.DEBUG):
            ms = " ".join(
                f"{n}_ms={(b - a) * 1e3:.3f}" for n, a, b in zip(self.NAMES, marks, marks[1:], strict=False)
            )
            log.debug("event=render_stages scene=%s %s", scene_id, ms)
