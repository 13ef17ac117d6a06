"""A tiny gRPC service on ``objvid.serving`` for the framework tests (tests/test_serving.py).

``objvid.test.Probe/Echo`` answers its request bytes; ``Raise`` raises the exception named by the request
(``invalid``, ``notfound``, ``exhausted``, ``value``, ``memory``, ``boom``); ``Stuck`` never returns and
ignores cancellation (it writes ``stuck`` to stderr first). Run as a script it is a whole server process:
``python tests/serving_helpers.py --grace 0.5 [--ready-file F]`` (port 0, ready line on stdout).
"""

from __future__ import annotations

import sys
import time

import grpc

from objvid.runtime import errors
from objvid.serving import server as serving
from objvid.serving.config import ServingConfig
from objvid.serving.metrics import MetricsEndpoint
from objvid.serving.status import guard_unary

SERVICE = "objvid.test.Probe"
RAISES = {
    "invalid": lambda: errors.InvalidArgument("camera.width", "must be > 0"),
    "notfound": lambda: errors.NotFound("scene_id: no scene 'x'"),
    "exhausted": lambda: errors.ResourceExhausted(
        "cameras: 9 cameras is over the limit of 8 (--max-cameras)"
    ),
    "unavailable": lambda: errors.Unavailable("model is still loading"),
    "value": lambda: ValueError("options.footprint: must be in 1..15"),
    "memory": lambda: MemoryError(),
    "boom": lambda: RuntimeError("kaboom\nsecond line of a long story"),
}


class ProbeServicer:
    def __init__(self):
        self.calls: list[tuple[str, str]] = []

    def observe_rpc(self, method: str, code: str, seconds: float) -> None:
        self.calls.append((method, code))

    @guard_unary
    def Echo(self, request: bytes, context) -> bytes:
        return request

    @guard_unary
    def Raise(self, request: bytes, context) -> bytes:
        raise RAISES[request.decode()]()

    @guard_unary
    def Stuck(self, request: bytes, context) -> bytes:
        sys.stderr.write("stuck\n")
        sys.stderr.flush()
        while True:  # a handler that ignores cancellation and deadlines (e.g. a parser in a long loop)
            time.sleep(0.05)


def add_probe(servicer: ProbeServicer, server: grpc.Server) -> None:
    def handler(fn):
        return grpc.unary_unary_rpc_method_handler(fn, request_deserializer=None, response_serializer=None)

    methods = {name: handler(getattr(servicer, name)) for name in ("Echo", "Raise", "Stuck")}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, methods),))


def probe_server(config: ServingConfig) -> tuple[serving.GrpcServer, ProbeServicer]:
    servicer = ProbeServicer()
    bindings = [serving.Binding(add_probe, servicer, SERVICE)]
    return serving.GrpcServer("probe", config, bindings, MetricsEndpoint()), servicer


def call(channel: grpc.Channel, method: str, payload: bytes = b"", **kw) -> bytes:
    return channel.unary_unary(f"/{SERVICE}/{method}")(payload, **kw)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--grace", type=float, default=0.5)
    parser.add_argument("--ready-file", default="")
    parser.add_argument("--parent-pid", type=int, default=0)
    args = parser.parse_args()
    config = ServingConfig(
        host="127.0.0.1", port=0, grace=args.grace, ready_file=args.ready_file, parent_pid=args.parent_pid
    )
    server, _ = probe_server(config)
    sys.exit(serving.exit_code(server, serving.run(server)))
