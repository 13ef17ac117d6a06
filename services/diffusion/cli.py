"""objvid-diffusion: serve the diffusion models locally through PyTriton, or convert GEN3C weights.

  objvid-diffusion serve [--models preview,gen3c] [--gen3c-weights DIR] [--host 127.0.0.1]
                         [--http-port 8000] [--grpc-port 8001] [--metrics-port 8002]
                         [--device auto] [--dtype auto] [--offload-text-encoder] [--offload-vae]
                         [--offload-transformer] [--cfg-batch] [--attention-backend auto] [--compile auto]
  objvid-diffusion convert --gen3c model.pt --tokenizer DIR [--text-encoder DIR] --out DIR

Every ``serve`` flag falls back to ``OBJVID_DIFFUSION_<FLAG>`` (e.g. ``OBJVID_DIFFUSION_GEN3C_WEIGHTS``,
``OBJVID_DIFFUSION_OFFLOAD_VAE=1``); ``convert`` flags to ``OBJVID_DIFFUSION_CONVERT_<FLAG>``.
The ``preview`` model is hole filling with OpenCV inpainting, NOT GEN3C.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from objvid.diffusion.registry import (
    DTYPES,
    MODEL_NAMES,
    OFFLOAD_PARTS,
    ModelSettings,
    load_model,
    parse_bool,
)

log = logging.getLogger("objvid.diffusion.cli")

PREVIEW_NOTICE = "model 'preview' = hole filling of the cache renders (OpenCV inpainting), NOT GEN3C"
ATTENTION_CHOICES = ("auto", "default", "cudnn", "flash", "efficient", "math", "fa4")
COMPILE_CHOICES = ("auto", "true", "false")
LOG_LEVELS = ("debug", "info", "warning", "error")


def _env_name(flag: str) -> str:
    return f"OBJVID_DIFFUSION_{flag.upper().replace('-', '_')}"


def _env(flag: str, default=None):
    return os.environ.get(_env_name(flag), default)


def _env_bool(flag: str) -> bool:
    value = _env(flag)
    return False if value is None else parse_bool(value, _env_name(flag))


def _env_int(flag: str, default: int) -> int:
    value = _env(flag)
    try:
        return default if value is None else int(value)
    except ValueError:
        raise ValueError(f"{_env_name(flag)} must be an integer, got {value!r}") from None


def _env_choice(flag: str, default: str, choices) -> str:
    """argparse checks ``choices`` only on the command line, so check the env fallback here."""
    value = _env(flag, default)
    if value not in choices:
        raise ValueError(f"{_env_name(flag)} must be one of {list(choices)}, got {value!r}")
    return value


def add_serve_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The ``serve`` flags with their env-var fallbacks and documented defaults."""
    parser.add_argument(
        "--models",
        default=_env("models"),
        help="comma list of models to serve, from " + ",".join(MODEL_NAMES)
        + " (default: preview, plus gen3c when --gen3c-weights is set)",
    )  # fmt: skip
    parser.add_argument(
        "--gen3c-weights", default=_env("gen3c-weights"), help="directory from `convert` (gen3c)"
    )
    parser.add_argument(
        "--host",
        default=_env("host", "127.0.0.1"),
        help="bind address for HTTP, gRPC, metrics (default 127.0.0.1)",
    )
    parser.add_argument("--http-port", type=int, default=_env_int("http-port", 8000), help="default 8000")
    parser.add_argument("--grpc-port", type=int, default=_env_int("grpc-port", 8001), help="default 8001")
    parser.add_argument(
        "--metrics-port", type=int, default=_env_int("metrics-port", 8002), help="default 8002"
    )
    parser.add_argument(
        "--device",
        default=_env("device", "auto"),
        help="gen3c device: auto (cuda if available), cpu, cuda, cuda:N",
    )
    parser.add_argument(
        "--dtype", choices=DTYPES, default=_env_choice("dtype", "auto", DTYPES),
        help="gen3c dtype (auto: bf16 on GPU)",
    )  # fmt: skip
    parser.add_argument(
        "--offload-text-encoder", action="store_true", default=_env_bool("offload-text-encoder"),
        help="keep the T5 text encoder on the CPU between uses",
    )  # fmt: skip
    parser.add_argument(
        "--offload-vae", "--offload-tokenizer", dest="offload_vae", action="store_true",
        default=_env_bool("offload-vae") or _env_bool("offload-tokenizer"),
        help="keep the Cosmos tokenizer (VAE) on the CPU between uses",
    )  # fmt: skip
    parser.add_argument(
        "--offload-transformer", action="store_true", default=_env_bool("offload-transformer"),
        help="keep the diffusion transformer on the CPU between uses (slowest, least GPU memory)",
    )  # fmt: skip
    parser.add_argument(
        "--cfg-batch", action="store_true", default=_env_bool("cfg-batch"),
        help="batch the guided and unguided passes (faster, more GPU memory)",
    )  # fmt: skip
    parser.add_argument(
        "--attention-backend", choices=ATTENTION_CHOICES,
        default=_env_choice("attention-backend", "auto", ATTENTION_CHOICES),
        help="gen3c attention kernel (auto: cudnn on CUDA, the fastest measured on H100)",
    )  # fmt: skip
    parser.add_argument(
        "--compile", default=_env_choice("compile", "auto", COMPILE_CHOICES), choices=COMPILE_CHOICES,
        help="torch.compile the gen3c transformer blocks (auto: on CUDA; first chunk is slower)",
    )  # fmt: skip
    parser.add_argument(
        "--inpaint-radius",
        type=int,
        default=_env_int("inpaint-radius", 3),
        help="preview inpainting radius (3)",
    )
    parser.add_argument(
        "--inpaint-max-side", type=int, default=_env_int("inpaint-max-side", 320),
        help="preview working resolution, longest side in pixels (320)",
    )  # fmt: skip
    parser.add_argument(
        "--log-level", default=_env_choice("log-level", "warning", LOG_LEVELS), choices=LOG_LEVELS
    )
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="objvid-diffusion", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    add_serve_arguments(
        commands.add_parser("serve", help="serve preview/gen3c over Triton (PyTriton) on this machine")
    )
    commands.add_parser("convert", help="convert official GEN3C + tokenizer weights (see `convert --help`)")
    return parser


def selected_models(args: argparse.Namespace) -> list[str]:
    """Model names to serve; ValueError for unknown names or gen3c without weights."""
    text = args.models or ("preview,gen3c" if args.gen3c_weights else "preview")
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in MODEL_NAMES]
    if unknown or not names:
        raise ValueError(f"--models: unknown model(s) {unknown}; choose from {','.join(MODEL_NAMES)}")
    if "gen3c" in names and not args.gen3c_weights:
        raise ValueError(
            "--models includes gen3c but --gen3c-weights (OBJVID_DIFFUSION_GEN3C_WEIGHTS) is not set"
        )
    return list(dict.fromkeys(names))


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_models(args: argparse.Namespace) -> list:
    """Build the selected models from the flags (ValueError / OSError / GpuMemoryError on bad setups)."""
    offload = tuple(part for part in OFFLOAD_PARTS if getattr(args, f"offload_{part}"))
    models = []
    for name in selected_models(args):
        settings = ModelSettings(
            weights_dir=args.gen3c_weights,
            device=resolve_device(args.device) if name == "gen3c" else "cpu",
            dtype=args.dtype,
            offload=offload,
            cfg_batch=args.cfg_batch,
            attention_backend=args.attention_backend,
            compile=args.compile,
            inpaint_radius=args.inpaint_radius,
            inpaint_max_side=args.inpaint_max_side,
        )
        models.append(load_model(name, settings))
    return models


def serve_command(args: argparse.Namespace) -> int:
    from objvid.diffusion.pytriton_server import ServerConfig, serve

    try:
        models = load_models(args)
    except (ValueError, OSError, RuntimeError) as err:  # RuntimeError: GpuMemoryError names what to offload
        print(f"objvid-diffusion serve: error: {err}", file=sys.stderr)
        return 2
    if any(model.preview for model in models):
        print(f"objvid-diffusion: {PREVIEW_NOTICE}", file=sys.stderr)
    config = ServerConfig(
        host=args.host, http_port=args.http_port, grpc_port=args.grpc_port, metrics_port=args.metrics_port
    )
    print(
        f"objvid-diffusion: serving {','.join(m.name for m in models)} on {args.host} "
        f"(gRPC {args.grpc_port}, HTTP {args.http_port}, metrics {args.metrics_port})",
        file=sys.stderr,
        flush=True,
    )
    serve(models, config)
    return 0


def convert_command(argv: list[str]) -> int:
    try:
        from objvid.diffusion import convert
    except ImportError as err:
        print(f"objvid-diffusion convert: unavailable ({err}); install objvid[diffusion]", file=sys.stderr)
        return 2
    return int(convert.main(argv) or 0)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "convert":  # the converter owns its flags and help
        return convert_command(argv[1:])
    try:
        parser = build_parser()
    except ValueError as err:  # a bad OBJVID_DIFFUSION_* value
        print(f"objvid-diffusion: error: {err}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    level = getattr(logging, args.log_level.upper())
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if level > logging.DEBUG:  # PyTriton logs a traceback for every rejected request; ours is one line
        logging.getLogger("pytriton").setLevel(max(level, logging.ERROR))
    return serve_command(args)


if __name__ == "__main__":
    sys.exit(main())
