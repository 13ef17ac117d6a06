"""Metrics shared by the servers.

- ``MetricsEndpoint``: a private Prometheus registry (several servers may share a process) with the
  standard ``process_*`` collector, rendered by ``text()`` and served on ``/metrics`` by ``serve_http``.
  Each service subclasses it and adds its own series to ``self.registry``.
- ``GcPauses``: Python garbage-collector pauses as gauges (for the p99 picture).
"""

from __future__ import annotations

import logging
import time

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest, start_http_server

log = logging.getLogger("objvid.serving.metrics")


class MetricsEndpoint:
    """A metrics registry and its HTTP endpoint. Log lines go to the subclass's module logger."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        self._http = None

    def text(self) -> str:
        """The exposition text of every series (what ``/metrics`` answers)."""
        return generate_latest(self.registry).decode()

    def serve_http(self, port: int, host: str = "127.0.0.1") -> int:
        """Start the /metrics HTTP endpoint on ``host`` (the serving host by default in every service, not
        0.0.0.0); returns the bound port (0 picks a free one)."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        self._http = server
        bound = server.server_address[1]
        logging.getLogger(type(self).__module__).info("event=metrics_started address=%s:%d", host, bound)
        return bound

    def stop_http(self) -> None:
        """Stop the endpoint (no-op when it is not running)."""
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None


class GcPauses:
    """Time Python's garbage collector stops the process, by generation (0, 1, 2), for the p99 picture:
    ``{prefix}_gc_pause_seconds_total{generation}`` and ``{prefix}_gc_collections_total``.

    ``gc.callbacks`` is process-wide: ``close()`` unhooks. The callback only adds to plain lists (no locks:
    it runs inside whatever allocation triggered the collection); the gauges read them at scrape time.
    """

    def __init__(self, registry, prefix: str) -> None:
        import gc

        from prometheus_client import Gauge

        self.seconds = [0.0, 0.0, 0.0]
        self.count = [0, 0, 0]
        self._t0 = 0.0
        pause = Gauge(
            f"{prefix}_gc_pause_seconds_total", "Python GC pause time", ["generation"], registry=registry
        )
        runs = Gauge(f"{prefix}_gc_collections_total", "Python GC runs", ["generation"], registry=registry)
        for g in range(3):
            pause.labels(generation=str(g)).set_function(lambda g=g: self.seconds[g])
            runs.labels(generation=str(g)).set_function(lambda g=g: self.count[g])
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
        else:
            g = info["generation"]
            self.seconds[g] += time.perf_counter() - self._t0
            self.count[g] += 1

    def close(self) -> None:
        import gc

        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)
