"""Bearer-token check for every objvid gRPC service: ``authorization: Bearer <token>`` in the call metadata.

The compare is constant-time (``hmac.compare_digest``). Health checks and server reflection stay open so
load balancers and probes work without the token.
"""

from __future__ import annotations

import hmac
import logging

import grpc

log = logging.getLogger("objvid.serving.auth")

#: Method prefixes that never need the token.
OPEN_PREFIXES: tuple[str, ...] = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)


def _deny(message: str):
    def abort(request_or_iterator, context):
        context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    return abort


def _denying_handler(handler: grpc.RpcMethodHandler, message: str) -> grpc.RpcMethodHandler:
    """A handler of the same streaming kind as ``handler`` that answers UNAUTHENTICATED."""
    fn = _deny(message)
    kwargs = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(fn, **kwargs)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(fn, **kwargs)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(fn, **kwargs)
    return grpc.unary_unary_rpc_method_handler(fn, **kwargs)


class BearerTokenInterceptor(grpc.ServerInterceptor):
    """Rejects calls without ``authorization: Bearer <token>`` (UNAUTHENTICATED), except OPEN_PREFIXES."""

    def __init__(self, token: str, on_reject=None):
        if not token:
            raise ValueError("token: must not be empty")
        self._expected = f"Bearer {token}".encode()
        self._on_reject = on_reject

    def _authorized(self, metadata) -> bool:
        ok = False
        for key, value in metadata or ():
            if key.lower() == "authorization":
                got = value.encode() if isinstance(value, str) else bytes(value)
                # Evaluate every header so timing does not depend on which one matched.
                ok = hmac.compare_digest(got, self._expected) or ok
        return ok

    def intercept_service(self, continuation, handler_call_details):
        method = handler_call_details.method or ""
        if method.startswith(OPEN_PREFIXES):
            return continuation(handler_call_details)
        handler = continuation(handler_call_details)
        if handler is None or self._authorized(handler_call_details.invocation_metadata):
            return handler
        log.info("event=auth_rejected method=%s", method)
        if self._on_reject is not None:
            self._on_reject(method)
        return _denying_handler(
            handler, "missing or invalid bearer token (metadata `authorization: Bearer <token>`)"
        )
