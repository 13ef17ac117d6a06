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

from collections.abc import Callable
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
#: Seconds the first call to an address that has not answered yet waits for it (``connect_timeout`` None):
#: a wrong or dead address fails in about this long, not after the whole retry schedule.
FIRST_CONNECT_TIMEOUT = 2.0
#: Seconds the probe that words why an address does not answer may take (one health check on a fresh
#: channel, no retries): a refused connection or a DNS error answers at once, a silent host takes this long.
PROBE_TIMEOUT = 2.0


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
    fails UNAVAILABLE; None = :data:`FIRST_CONNECT_TIMEOUT` (2 s) until the address has answered once,
    then the sum of the backoff schedule (a server restarting between calls), see :class:`Connections`.
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


def wait_connected(channel: grpc.Channel, timeout: float) -> bool:
    """Wait up to ``timeout`` s until the server behind ``channel`` accepts calls: a health check sent
    with gRPC's ``wait_for_ready`` (it waits for the connection instead of failing fast). Any answer, even
    an error status, means the server is there (True); a timeout means it is not (False)."""
    try:
        health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=max(timeout, 0.01), wait_for_ready=True
        )
    except grpc.RpcError as err:
        return err.code() != grpc.StatusCode.DEADLINE_EXCEEDED
    return True


def probe(channel: grpc.Channel, address: str, timeout: float = PROBE_TIMEOUT) -> str | None:
    """Why the server at ``address`` does not answer (gRPC's reason: refused, DNS, TLS), or None when it
    answers now (any status). ``channel``: one without retries, so the reason comes at once."""
    try:
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=timeout)
    except grpc.RpcError as err:
        if err.code() == grpc.StatusCode.UNAVAILABLE:
            return err.details() or f"{address}: no connection"
        if err.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            return f"no connection to {address}"
    return None


class Connections:
    """The wait before every call, per address (the module docstring says why there is one).

    Until an address has answered, its first call waits up to :data:`FIRST_CONNECT_TIMEOUT` (at most
    ``retry.connect_wait``) and later calls not at all, so a wrong or dead address fails in about two
    seconds with gRPC's own reason (a refused connection, a DNS or TLS error; :func:`probe`) and the
    request is never sent into gRPC's retries. Once it has answered, calls wait up to
    ``retry.connect_wait`` (a server restarting between calls). An explicit ``retry.connect_timeout`` is
    every call's wait (0: none). No answer in time: ``UNAVAILABLE`` (the request is not sent).

    While an address has answered and its channel is READY (gRPC's connectivity callback, watched from
    the first wait on), a call does not wait at all: the connection is up, so the health check's round
    trip would only add latency to every per-frame ``Render``. Once the connection drops the channel
    leaves READY and calls wait again.

    probe_channel: a channel to an address without the retry policy (closed after the probe).
    """

    def __init__(self, retry: RetryPolicy, probe_channel: Callable[[str], grpc.Channel]):
        self.retry = retry
        self._probe_channel = probe_channel
        self._answered: set[str] = set()
        self._silent: set[str] = set()
        self._watched: dict[str, grpc.Channel] = {}  # address -> the channel whose state is watched
        self._ready: dict[str, bool] = {}  # address -> that channel is READY now

    def _watch(self, channel: grpc.Channel, address: str) -> None:
        """Follow ``channel``'s connectivity (a new channel for an address replaces the old one)."""
        if self._watched.get(address) is channel:
            return
        self._watched[address] = channel
        self._ready[address] = False

        def on_state(state: grpc.ChannelConnectivity) -> None:
            if self._watched.get(address) is channel:
                self._ready[address] = state == grpc.ChannelConnectivity.READY

        channel.subscribe(on_state, try_to_connect=False)

    def connected(self, address: str) -> bool:
        """True when ``address`` has answered and its watched channel is READY (a call needs no wait)."""
        return address in self._answered and self._ready.get(address, False)

    def timeout(self, address: str) -> float:
        """Seconds the next call to ``address`` waits for it to accept calls."""
        if address in self._answered:
            return self.retry.connect_wait
        if self.retry.connect_timeout is not None:
            return self.retry.connect_timeout
        return 0.0 if address in self._silent else min(FIRST_CONNECT_TIMEOUT, self.retry.connect_wait)

    def wait(self, channel: grpc.Channel, address: str, service: str, method: str) -> None:
        """Return once the server at ``address`` accepts calls; ServiceError UNAVAILABLE when it does not."""
        self._watch(channel, address)
        if self.connected(address):
            return
        timeout = self.timeout(address)
        reason = None
        if timeout <= 0 or not wait_connected(channel, timeout):
            plain = self._probe_channel(address)
            try:
                reason = probe(plain, address)
            finally:
                plain.close()
        if reason is None:
            self._answered.add(address)
            self._silent.discard(address)
            return
        self._silent.add(address)
        waited = f"; waited {timeout:g} s" if timeout > 0 else ""
        raise ServiceError(service, method, "UNAVAILABLE", reason + waited)


def service_error(service: str, method: str, err: grpc.RpcError, partial: bool = False) -> ServiceError:
    """A gRPC error -> ServiceError carrying the status code's name and the server's message."""
    code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    details = err.details() if hasattr(err, "details") else str(err)
    return ServiceError(service, method, code.name if code else "UNKNOWN", details or "", partial=partial)
