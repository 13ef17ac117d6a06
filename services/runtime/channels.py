"""gRPC channels with the project's options (client side; servers: ``objvid.serving``).

``make_channel`` builds a plaintext, TLS or mTLS channel with the message limits and keepalive every
objvid server expects and, optionally, gRPC's own retry policy (a service config): calls that fail with
UNAVAILABLE before the server acted are retried with exponential backoff by gRPC itself. Give the retry
only to idempotent methods (``retry_service_config(service, methods)``): a retried CreateScene could
otherwise create two scenes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from objvid.runtime.wire import MAX_MESSAGE_BYTES

CHANNEL_OPTIONS: list[tuple[str, int]] = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
]


def retry_service_config(
    service: str,
    methods: Iterable[str],
    *,
    max_attempts: int = 4,
    initial_backoff_s: float = 0.2,
    max_backoff_s: float = 2.0,
    codes: Sequence[str] = ("UNAVAILABLE",),
) -> dict:
    """A gRPC service config retrying ``methods`` of ``service`` (full name, e.g. ``objvid.v1.CacheService``)
    on ``codes`` (default UNAVAILABLE only), up to ``max_attempts`` tries in all, backoff doubling from
    ``initial_backoff_s`` to ``max_backoff_s`` (gRPC adds jitter)."""
    if max_attempts < 2:
        raise ValueError(
            f"max_attempts: must be >= 2 (gRPC's minimum for a retry policy), got {max_attempts}"
        )
    return {
        "methodConfig": [
            {
                "name": [{"service": service, "method": m} for m in methods],
                "retryPolicy": {
                    "maxAttempts": int(max_attempts),
                    "initialBackoff": f"{initial_backoff_s:g}s",
                    "maxBackoff": f"{max_backoff_s:g}s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": list(codes),
                },
            }
        ]
    }


def make_channel(
    address: str,
    *,
    tls_ca: bytes | None = None,
    tls_cert: bytes | None = None,
    tls_key: bytes | None = None,
    tls: bool | None = None,
    service_config: dict | None = None,
    options: Sequence[tuple[str, object]] = (),
) -> grpc.Channel:
    """A channel to ``address`` (``host:port``) with the project's options.

    TLS when ``tls_ca`` (PEM CA bundle) or ``tls_cert`` is given, or ``tls`` is True (system roots);
    ``tls_cert`` + ``tls_key`` (PEM) present a client certificate (mTLS). ``service_config``: a gRPC
    service config dict (``retry_service_config``); ``options``: extra channel arguments.
    """
    if bool(tls_cert) != bool(tls_key):
        raise ValueError("tls_cert/tls_key: a client certificate needs its key (give both or neither)")
    opts = list(CHANNEL_OPTIONS) + list(options)
    if service_config is not None:
        opts += [("grpc.service_config", json.dumps(service_config)), ("grpc.enable_retries", 1)]
    if tls or tls_ca or tls_cert:
        creds = grpc.ssl_channel_credentials(
            root_certificates=tls_ca, private_key=tls_key, certificate_chain=tls_cert
        )
        return grpc.secure_channel(address, creds, options=opts)
    return grpc.insecure_channel(address, options=opts)


def check_health(channel: grpc.Channel, service: str = "", timeout: float = 2.0) -> bool:
    """True when the server reports SERVING for ``service`` ("" = the whole server); False on any error."""
    stub = health_pb2_grpc.HealthStub(channel)
    try:
        resp = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
    except grpc.RpcError:
        return False
    return resp.status == health_pb2.HealthCheckResponse.SERVING
