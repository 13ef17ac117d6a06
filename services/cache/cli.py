"""``objvid-cache serve``: run the cache gRPC service (also ``python -m objvid.cache serve``).

Every flag falls back to an environment variable ``OBJVID_CACHE_<FLAG>`` (dashes -> underscores, upper
case), e.g. ``OBJVID_CACHE_MEMORY_BUDGET=8G``; the flag wins when both are given. SIGTERM / SIGINT stop
the server gracefully: health turns NOT_SERVING, in-flight calls get ``--grace`` seconds to finish.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import sys
import threading

from objvid import serving

log = logging.getLogger("objvid.cache.cli")

ENV_PREFIX = "OBJVID_CACHE_"
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_bytes(text: str, device_total: int | None = None) -> int:
    """'4294967296', '4G', '512MiB', '1.5g' (binary units) or '80%' (of ``device_total``) -> bytes."""
    s = str(text).strip().lower()
    m = re.fullmatch(r"([0-9]*\.?[0-9]+)\s*%", s)
    if m:
        if not device_total:
            raise ValueError(f"memory budget {text!r}: a percentage needs a CUDA device")
        value = int(device_total * float(m.group(1)) / 100)
    else:
        m = re.fullmatch(r"([0-9]*\.?[0-9]+)\s*([kmgt]?)(i?b)?", s)
        if not m:
            raise ValueError(f"memory budget {text!r}: expected bytes like 4294967296, 4G, 512MiB or 80%")
        value = int(float(m.group(1)) * _UNITS[m.group(2)])
    if value <= 0:
        raise ValueError(f"memory budget {text!r}: must be > 0")
    return value


def resolve_device(name: str) -> str:
    """'auto' -> 'cuda' when available else 'cpu'; other names are checked."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"objvid-cache: --device {name}: CUDA is not available on this machine")
    if not (name == "cpu" or name.startswith("cuda")):
        raise SystemExit(f"objvid-cache: --device {name}: expected auto, cpu, cuda or cuda:N")
    return name


def resolve_budget(text: str, device: str) -> int:
    """'auto' -> 80% of the GPU's memory on CUDA, 4 GiB on the CPU."""
    import torch

    total = (
        torch.cuda.get_device_properties(torch.device(device)).total_memory
        if device.startswith("cuda")
        else None
    )
    if text == "auto":
        return int(total * 0.8) if total else 4 << 30
    return parse_bytes(text, total)


def _env(flag: str, default):
    return os.environ.get(ENV_PREFIX + flag.upper().replace("-", "_"), default)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="objvid-cache", description="objvid cache renderer gRPC service")
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser(
        "serve", help="run the gRPC server", formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )

    def add(flag, help, default=None, type=str, **kw):
        s.add_argument(
            f"--{flag}",
            default=_env(flag, default),
            type=type,
            help=f"{help} [env {ENV_PREFIX}{flag.upper().replace('-', '_')}]",
            **kw,
        )

    add("host", "address to bind", "0.0.0.0")
    add("port", "gRPC port (0 = pick a free one)", 50052, int)
    add("device", "auto, cpu, cuda or cuda:N", "auto")
    add(
        "memory-budget",
        "device bytes all resident scenes may hold: bytes, 8G, 512MiB, 80%% or auto "
        "(80%% of the GPU, 4 GiB on CPU)",
        "auto",
    )
    add("metrics-port", "Prometheus /metrics HTTP port (0 = off)", 9102, int)
    add("snapshot-dir", "write scenes here and serve them again after a restart (empty = off)", "")
    add("tls-cert", "PEM server certificate (enables TLS)", "")
    add("tls-key", "PEM server private key", "")
    add("tls-client-ca", "PEM CA bundle: require client certificates signed by it (mTLS)", "")
    add("token", "require `authorization: Bearer <token>` on every call except health/reflection", "")
    add("max-image-pixels", "largest width*height of an image or render", 4096 * 4096, int)
    add("max-points", "largest point cloud (scene or object) in points", 20_000_000, int)
    add("max-objects", "most objects per scene", 256, int)
    add("max-cameras", "most cameras per RenderTrajectory", 4096, int)
    add("workers", "gRPC worker threads", 32, int)
    add("grace", "seconds in-flight calls get on shutdown", 10.0, float)
    add(
        "malloc-reuse",
        "1 = keep freed large buffers in the heap (glibc mmap threshold 32 MiB, trim threshold 256 MiB) so "
        "each multi-MB response reuses warm pages instead of page-faulting fresh ones; 0 = glibc defaults",
        1,
        int,
    )
    add("log-level", "debug, info, warning, error", "info")
    return parser


def _read(path: str, what: str) -> bytes | None:
    if not path:
        return None
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise SystemExit(f"objvid-cache: --{what} {path}: {exc.strerror}") from None


def config_from_args(args: argparse.Namespace):
    from .service import Limits, ServerConfig

    device = resolve_device(args.device)
    try:
        budget = resolve_budget(args.memory_budget, device)
    except ValueError as exc:
        raise SystemExit(f"objvid-cache: --memory-budget: {exc}") from None
    if bool(args.tls_cert) != bool(args.tls_key):
        raise SystemExit("objvid-cache: --tls-cert and --tls-key go together")
    if args.tls_client_ca and not args.tls_cert:
        raise SystemExit("objvid-cache: --tls-client-ca (mTLS) needs --tls-cert and --tls-key")
    for flag in ("max_image_pixels", "max_points", "max_objects", "max_cameras", "workers"):
        if getattr(args, flag) <= 0:
            raise SystemExit(f"objvid-cache: --{flag.replace('_', '-')} must be > 0")
    return ServerConfig(
        host=args.host,
        port=args.port,
        device=device,
        memory_budget=budget,
        snapshot_dir=args.snapshot_dir or None,
        metrics_port=args.metrics_port,
        tls_cert=_read(args.tls_cert, "tls-cert"),
        tls_key=_read(args.tls_key, "tls-key"),
        tls_client_ca=_read(args.tls_client_ca, "tls-client-ca"),
        token=args.token or None,
        limits=Limits(args.max_image_pixels, args.max_points, args.max_objects, args.max_cameras),
        workers=args.workers,
    )


#: Free heap the cache keeps before glibc trims it (``--malloc-reuse``; the depth service keeps 512 MiB).
TRIM_THRESHOLD = 256 << 20


def tune_malloc(mmap_threshold: int = serving.MMAP_THRESHOLD, trim_threshold: int = TRIM_THRESHOLD) -> bool:
    """``objvid.serving.tune_malloc`` with the cache's thresholds (``--malloc-reuse``); False off glibc."""
    return serving.tune_malloc(mmap_threshold, trim_threshold)


def serve(args: argparse.Namespace, stop_event: threading.Event | None = None) -> int:
    import gc

    from .service import CacheServer

    if args.malloc_reuse:
        log.info("event=malloc_tuned ok=%s", tune_malloc())
    server = CacheServer(config_from_args(args))
    # Startup objects (torch, numpy, protobuf, grpc modules) never become garbage: keep them out of the
    # collector's full passes, which otherwise walk them all (tens of ms) in the middle of some request.
    gc.freeze()
    stop_event = stop_event or threading.Event()

    def on_signal(signum, _frame):
        log.info("event=signal signal=%s", signal.Signals(signum).name)
        stop_event.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
    # One line on stdout so wrappers (bench, tests) learn the bound port.
    print(
        f"objvid-cache listening on {args.host}:{server.port} metrics={server.metrics_port or 0}", flush=True
    )
    stop_event.wait()
    server.stop(args.grace)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s level=%(levelname)s logger=%(name)s %(message)s",
        stream=sys.stderr,
    )
    if args.command == "serve":
        return serve(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
