"""``objvid-depth serve``: run the depth service. Every flag falls back to ``OBJVID_DEPTH_<FLAG>``.

Exit codes: 0 after a clean stop (SIGTERM/SIGINT), 1 when the model cannot be loaded or the ports cannot be
bound (the message says why; for a hub id offline it names the file and where to place it), 2 on bad flags.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from dataclasses import fields

from objvid.depth.model import ModelLoadError
from objvid.depth.server import DepthServer, ServerConfig

log = logging.getLogger("objvid.depth.cli")

ENV_PREFIX = "OBJVID_DEPTH_"
_DEFAULTS = ServerConfig()

# (flag, type, help); the default comes from ServerConfig, the env var from the flag name.
_FLAGS: list[tuple[str, type, str]] = [
    ("model", str, "MoGe checkpoint path (model.pt) or Hugging Face hub id (v1: Ruicheng/moge-vitl)"),
    ("model-version", str, "auto (from the checkpoint config), v1 or v2"),
    ("model-dir", str, "hub ids are first looked up as <model-dir>/<org>/<name>/model.pt"),
    ("device", str, "auto (cuda if available), cpu, cuda, cuda:N"),
    ("dtype", str, "auto (float16 on CUDA, float32 on CPU), float16 (CUDA only), float32"),
    ("num-tokens", int, "ViT tokens per image; 0 = from --resolution-level"),
    ("resolution-level", int, "0..9 over the checkpoint's token range (MoGe default 9)"),
    ("host", str, "gRPC bind address"),
    ("port", int, "gRPC port (0 = pick a free one, logged in event=ready)"),
    ("metrics-host", str, "Prometheus /metrics bind address"),
    ("metrics-port", int, "Prometheus port (0 = pick a free one, -1 = off)"),
    ("width", int, "default working width (GEN3C 1280)"),
    ("height", int, "default working height (GEN3C 704)"),
    ("infer-width", int, "MoGe inference width (GEN3C 1280)"),
    ("infer-height", int, "MoGe inference height (GEN3C 720)"),
    ("max-pixels", int, "largest input image and working size, in pixels (RESOURCE_EXHAUSTED above)"),
    ("max-images", int, "most images per request (RESOURCE_EXHAUSTED above)"),
    ("micro-batch", int, "images per model call"),
    ("workers", int, "gRPC worker threads"),
    ("decode-threads", int, "threads decoding the images of a batch"),
    ("torch-threads", int, "torch CPU threads; 0 = auto (CUDA: 4, CPU: torch's default)"),
    ("grace-seconds", float, "on SIGTERM, how long in-flight requests may finish"),
    ("tls-cert", str, "PEM certificate file (with --tls-key: serve TLS)"),
    ("tls-key", str, "PEM private key file"),
]


_CHOICES = {"model-version": ["auto", "v1", "v2"], "dtype": ["auto", "float16", "float32"]}


def _env(flag: str) -> str:
    return ENV_PREFIX + flag.upper().replace("-", "_")


def _env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    if raw.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if raw.strip().lower() in ("0", "false", "no", "off"):
        return False
    raise SystemExit(f"{name}: expected a boolean (1/0, true/false), got {raw!r}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="objvid-depth", description="MoGe depth lifting service (GEN3C conventions)."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser(
        "serve", help="serve objvid.v1.DepthService", formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    for flag, kind, text in _FLAGS:
        attr = flag.replace("-", "_")
        env = _env(flag)
        raw = os.environ.get(env)
        try:
            default = kind(raw) if raw not in (None, "") else getattr(_DEFAULTS, attr)
        except ValueError:
            parser.error(f"{env}: expected {kind.__name__}, got {raw!r}")
        serve.add_argument(
            f"--{flag}", type=kind, default=default, choices=_CHOICES.get(flag), help=f"{text} [env {env}]"
        )
    serve.add_argument(
        "--warmup",
        action=argparse.BooleanOptionalAction,
        default=_env_bool(_env("warmup"), _DEFAULTS.warmup),
        help=f"lift gray images once per micro-batch size (CUDA; once on CPU) on the inference thread before reporting SERVING [env {_env('warmup')}]",
    )
    serve.add_argument(
        "--fast-kernels",
        action=argparse.BooleanOptionalAction,
        default=_env_bool(_env("fast-kernels"), _DEFAULTS.fast_kernels),
        help=f"CUDA: parallel GroupNorm statistics and a cached position embedding in MoGe (same math) "
        f"[env {_env('fast-kernels')}]",
    )
    serve.add_argument(
        "--malloc-tuning",
        action=argparse.BooleanOptionalAction,
        default=_env_bool(_env("malloc-tuning"), _DEFAULTS.malloc_tuning),
        help=f"keep multi-MB message buffers in glibc's heap instead of re-faulting them per request "
        f"[env {_env('malloc-tuning')}]",
    )
    serve.add_argument(
        "--log-level",
        default=os.environ.get(_env("log-level")) or "info",
        choices=["debug", "info", "warning", "error"],
        help=f"log level (debug adds one line per request) [env {_env('log-level')}]",
    )
    return parser


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    names = {f.name for f in fields(ServerConfig)}
    return ServerConfig(**{k: v for k, v in vars(args).items() if k in names})


class _Interrupted(BaseException):
    """SIGTERM/SIGINT arrived while the model was still loading (BaseException: no `except Exception` eats it)."""


def serve(config: ServerConfig) -> int:
    """Run until SIGTERM/SIGINT; returns the exit code."""
    stop = threading.Event()
    loading = threading.Event()
    loading.set()

    def on_signal(signum, _frame):
        log.info("event=signal signal=%s", signal.Signals(signum).name)
        stop.set()
        if loading.is_set():
            raise _Interrupted()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
    try:
        server = DepthServer(config).listen()
    except (OSError, ValueError, RuntimeError) as exc:
        log.error("event=start_failed error=%s", exc)
        return 1
    try:
        try:
            server.load()
        finally:
            loading.clear()
    except _Interrupted:
        server.stop(grace=0)
        return 0
    except ModelLoadError as exc:
        log.error("event=model_load_failed error=%s", exc)
        server.stop(grace=0)
        return 1
    while not stop.wait(0.5):
        pass
    server.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s level=%(levelname)s logger=%(name)s %(message)s",
        stream=sys.stderr,
    )
    try:
        config = config_from_args(args)
        config.validate()
    except ValueError as exc:
        parser.error(str(exc))
    if args.command == "serve":
        return serve(config)
    parser.error(f"unknown command {args.command!r}")  # pragma: no cover
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
