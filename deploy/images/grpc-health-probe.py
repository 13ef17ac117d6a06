#!/usr/bin/env python3
"""Exec probe for objvid's gRPC services: grpc.health.v1 Check, optionally over TLS.

The kubelet's native `grpc:` probe cannot speak TLS, so components/tls swaps it for this script.
Exit 0 when the server reports SERVING, 1 otherwise (one key=value line on stderr says why).

  grpc-health-probe.py --addr 127.0.0.1:50051 [--tls-ca CA.pem --server-name objvid-depth] [--service NAME]
"""

from __future__ import annotations

import argparse
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--addr", required=True, help="host:port of the gRPC server")
    parser.add_argument("--service", default="", help='health service name ("" = the whole server)')
    parser.add_argument("--tls-ca", default="", help="PEM CA bundle: connect with TLS and verify the server")
    parser.add_argument("--server-name", default="", help="name the certificate must carry (TLS only)")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds")
    return parser.parse_args(argv)


def open_channel(args: argparse.Namespace) -> grpc.Channel:
    if not args.tls_ca:
        return grpc.insecure_channel(args.addr)
    with open(args.tls_ca, "rb") as f:
        creds = grpc.ssl_channel_credentials(root_certificates=f.read())
    options = [("grpc.ssl_target_name_override", args.server_name)] if args.server_name else []
    return grpc.secure_channel(args.addr, creds, options)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        channel = open_channel(args)
    except OSError as exc:
        print(f"event=probe_failed field=tls_ca path={args.tls_ca} reason={exc.strerror}", file=sys.stderr)
        return 1
    with channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=args.service), timeout=args.timeout
            )
        except grpc.RpcError as err:
            print(f"event=probe_failed addr={args.addr} code={err.code().name}", file=sys.stderr)
            return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        print(f"event=probe_failed addr={args.addr} status={status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
