"""How the SDK makes every call: deadlines, gRPC's own retry policy, connection waits, error mapping.

Retries are gRPC's (a service config in the channel options, ``objvid.runtime.channels``), given only
to the **idempotent** methods in :data:`IDEMPOTENT`: Lift, GetScene, DeleteScene, ExportScene,
PlaceObject, UpdateObject (absolute transforms), RenderTrajectory / Render (read-only; gRPC retries a
stream only before its first response), the health check and Triton's readiness calls, and CreateScene,
AddObject and UpdateScene, which the SDK always sends with an ``idempotency_key`` (the cache answers a
resent request with the first answer instead of doing the work twice). Triton's ModelStreamInfer runs a
whole chunk: it is sent once. For them (and for every call) the only wait is *before* sending: the call
waits up to :attr:`RetryPolicy.connect_timeout` for the server to accept calls (a health check with
gRPC's ``wait_for_ready``: a server still starting), which never sends the request itself twice. A
broken render stream is resumed at the next frame by the SDK (gRPC cannot resume a stream that already
delivered responses).
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from objvid.client.errors import ServiceError
from objvid.runtime.channels import retry_service_config

#: Idempotent methods per full service name (retried on UNAVAILABLE by gRPC's retry policy).
IDEMPOTENT: dict[str, tuple[str, ...]] = {
    "objvid.v1.DepthService": ("Lift", "LiftViews"),
    "objvid.v1.CacheService": (
        "GetScene",
        "DeleteScene",
        "ExportScene",
        "PlaceObject",
        "UpdateObject",
        "Render",
        "RenderTrajectory",
        # Sent with an idempotency key by the SDK: a resend gets the first answer (docs/security.md).
        "CreateScene",
        "AddObject",
        "UpdateScene",
    ),  # fmt: skip
    "grpc.health.v1.Health": ("Check",),
    "inference.GRPCInferenceService": ("ServerLive", "ServerReady", "ModelReady", "ModelMetadata"),
}
#: gRPC caps maxAttempts at 5 (larger values are clamped by gRPC itself).
GRPC_MAX_ATTEMPTS = 5


@dataclass(frozen=True)
class Deadlines:
    """Per-call deadlines in seconds (the client never waits forever)."""

    health: float = 5.0
    lift: float = 900.0
    create_scene: float = 300.0
    unary: float = 120.0
    update_scene: float = 900.0
    render_base: float = 120.0
    render_per_frame: float = 30.0
    generate_chunk: float = 4 * 3600.0


@dataclass(frozen=True)
class RetryPolicy:
    """gRPC's retry policy for the idempotent methods: ``attempts`` in total (gRPC caps it at 5), backoff
    from ``initial`` doubling up to ``maximum`` seconds (gRPC draws each delay uniformly below it).

    connect_timeout: how long any call waits for a server that does not accept connections yet before it
    is sent anyway (and fails UNAVAILABLE); None = the sum of the backoff schedule.
    """

    attempts: int = 6
    initial: float = 0.25
    maximum: float = 8.0
    connect_timeout: float | None = None

    def schedule(self) -> list[float]:
        """The backoff ceilings between attempts (seconds)."""
        return [min(self.initial * 2**k, self.maximum) for k in range(max(self.attempts - 1, 0))]

    @property
    def connect_wait(self) -> float:
        return self.connect_timeout if self.connect_timeout is not None else sum(self.schedule())

    def service_config(self, services: tuple[str, ...]) -> dict | None:
        """The gRPC service config retrying the idempotent methods of ``services`` (None: no retries)."""
        if self.attempts < 2:
            return None
        configs = []
        for service in services:
            cfg = retry_service_config(service, IDEMPOTENT[service], max_attempts=min(self.attempts, GRPC_MAX_ATTEMPTS),
                                       initial_backoff_s=self.initial, max_backoff_s=self.maximum)  # fmt: skip
            configs += cfg["methodConfig"]
        return {"methodConfig": configs}


def wait_connected(channel: grpc.Channel, timeout: float) -> None:
    """Wait up to ``timeout`` s until the server behind ``channel`` accepts calls: a health check sent
    with gRPC's ``wait_for_ready`` (it waits for the connection instead of failing fast). Any answer, even
    an error status, means the server is there; a timeout means it is not (the caller's call then fails)."""
    try:
        health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=max(timeout, 0.01), wait_for_ready=True
        )
    except grpc.RpcError:
        pass


def service_error(service: str, method: str, err: grpc.RpcError, partial: bool = False) -> ServiceError:
    """A gRPC error -> ServiceError carrying the status code's name and the server's message."""
    code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    details = err.details() if hasattr(err, "details") else str(err)
    return ServiceError(service, method, code.name if code else "UNKNOWN", details or "", partial=partial)
