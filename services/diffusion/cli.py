"""objvid-diffusion: serve the diffusion models locally through PyTriton, or convert GEN3C weights.

  objvid-diffusion serve [--models preview,gen3c] [--gen3c-weights DIR] [--host 127.0.0.1]
                         [--http-port 8000] [--grpc-port 8001] [--metrics-port 8002|off] ...
  objvid-diffusion convert --gen3c model.pt --tokenizer DIR [--text-encoder DIR] --out DIR

Flags come from ``objvid.runtime.config`` like every objvid CLI: each ``serve`` flag falls back to
``OBJVID_DIFFUSION_<FLAG>`` (e.g. ``OBJVID_DIFFUSION_GEN3C_WEIGHTS``, ``OBJVID_DIFFUSION_OFFLOAD_VAE=1``),
``convert`` flags to ``OBJVID_DIFFUSION_CONVERT_<FLAG>``; ``--help`` lists names and defaults.
The ``preview`` model is hole filling with OpenCV inpainting, NOT GEN3C.
"""

from __future__ import annotations

import logging
import sys

import click

from objvid.diffusion.registry import DTYPES, MODEL_NAMES, OFFLOAD_PARTS, ModelSettings, load_model
from objvid.runtime import config as cfg
from objvid.runtime.config import PORT, PORT_OR_OFF, Flag, log_level_flag
from objvid.serving.cli import setup_logging

log = logging.getLogger("objvid.diffusion.cli")

SERVICE = "diffusion"
PREVIEW_NOTICE = "model 'preview' = hole filling of the cache renders (OpenCV inpainting), NOT GEN3C"
ATTENTION_CHOICES = ("auto", "default", "cudnn", "flash", "efficient", "math", "fa4")
COMPILE_CHOICES = ("auto", "true", "false")
CFG_PARALLEL_CHOICES = ("auto", "1", "2")
CP_MODE_CHOICES = ("auto", "ulysses", "ring")

FLAGS: list[Flag] = [
    Flag(
        "models",
        "",
        "comma list of models to serve, from "
        + ",".join(MODEL_NAMES)
        + " (empty: preview, plus gen3c when --gen3c-weights is set)",
        metavar="LIST",
    ),  # fmt: skip
    Flag("gen3c-weights", "", "directory written by `objvid-diffusion convert` (gen3c)", metavar="DIR"),
    Flag("host", "127.0.0.1", "bind address for HTTP, gRPC and metrics", metavar="ADDR"),
    Flag("http-port", 8000, "Triton HTTP port", kind=PORT),
    Flag("grpc-port", 8001, "Triton gRPC port", kind=PORT),
    Flag("metrics-port", 8002, "Triton /metrics port (off = no endpoint)", kind=PORT_OR_OFF),
    Flag(
        "ready-file",
        "",
        "write {service, pid, host, grpc_port, http_port, metrics_port} JSON here once the models are served",
        metavar="PATH",
    ),  # fmt: skip
    Flag(
        "token",
        "",
        "require this token on inference/metadata calls (Triton's access header, docs/diffusion.md); health stays open",
        metavar="TOKEN",
    ),
    Flag("allow-insecure-token", False, "accept --token although the local Triton serves plaintext"),
    Flag(
        "parent-pid",
        0,
        "stop once this process is gone (0 = off; set by the client's local stack)",
        metavar="PID",
    ),  # fmt: skip
    Flag("device", "auto", "gen3c device: auto (cuda if available), cpu, cuda, cuda:N", metavar="DEVICE"),
    Flag("dtype", "auto", "gen3c dtype (auto: bf16 on GPU)", choices=DTYPES),
    Flag("offload-text-encoder", False, "keep the T5 text encoder on the CPU between uses"),
    Flag(
        "offload-vae",
        False,
        "keep the Cosmos tokenizer (VAE) on the CPU between uses",
        aliases=("offload-tokenizer",),
    ),  # fmt: skip
    Flag(
        "offload-transformer",
        False,
        "keep the diffusion transformer on the CPU between uses (slowest, least GPU memory)",
    ),  # fmt: skip
    Flag("cfg-batch", False, "batch the guided and unguided passes (faster, more GPU memory)"),
    Flag(
        "attention-backend",
        "auto",
        "gen3c attention kernel (auto: fa4 where flash-attn-4 runs, else cudnn on CUDA)",
        choices=ATTENTION_CHOICES,
    ),  # fmt: skip
    Flag(
        "compile",
        "auto",
        "torch.compile the gen3c transformer blocks (auto: on CUDA; first chunk is slower)",
        choices=COMPILE_CHOICES,
    ),  # fmt: skip
    Flag(
        "compile-cache",
        "",
        "directory for torch.compile's caches, kept across restarts (a restarted server compiles in ~6 s "
        "instead of ~16 s on an H200); empty: Inductor's default under /tmp",
        metavar="DIR",
    ),  # fmt: skip
    Flag(
        "fp8",
        False,
        "opt-in FP8 linear layers in the gen3c transformer (Hopper/Ada GPUs; ~12% faster per chunk on an "
        "H200, video PSNR ~32 dB against bf16: docs/performance.md)",
    ),  # fmt: skip
    Flag(
        "gelu-epilogue",
        "auto",
        "gen3c feed-forward GELU inside its GEMM (cuBLASLt tanh GELU; ~0.8% faster per step on an H200, "
        "deviation at the bf16 noise floor; auto: on CUDA unless --fp8; false: upstream's erf GELU)",
        choices=COMPILE_CHOICES,
    ),  # fmt: skip
    Flag(
        "gpus",
        1,
        "gen3c processes, one per GPU from --device on (NCCL; CPU processes with gloo on --device cpu); "
        "> 1 splits each chunk over them",
        metavar="N",
    ),  # fmt: skip
    Flag(
        "cfg-parallel",
        "auto",
        "with --gpus > 1: guided and unguided passes on 2 GPU groups (auto: when --gpus is even)",
        choices=CFG_PARALLEL_CHOICES,
    ),  # fmt: skip
    Flag(
        "cp-mode",
        "auto",
        "with --gpus > 1: how a group splits the tokens (auto: Ulysses where the heads divide, ring for the rest)",
        choices=CP_MODE_CHOICES,
    ),  # fmt: skip
    Flag("inpaint-radius", 3, "preview inpainting radius"),
    Flag("inpaint-max-side", 320, "preview working resolution, longest side in pixels"),
    log_level_flag("warning"),
]

cli = cfg.group(
    "objvid-diffusion", "Serve the diffusion models locally through PyTriton, or convert weights."
)


def selected_models(options: dict) -> list[str]:
    """Model names to serve; ValueError for unknown names or gen3c without weights."""
    text = options.get("models") or ("preview,gen3c" if options.get("gen3c_weights") else "preview")
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in MODEL_NAMES]
    if unknown or not names:
        raise ValueError(f"--models: unknown model(s) {unknown}; choose from {','.join(MODEL_NAMES)}")
    if "gen3c" in names and not options.get("gen3c_weights"):
        raise ValueError(
            "--models includes gen3c but --gen3c-weights (OBJVID_DIFFUSION_GEN3C_WEIGHTS) is not set"
        )
    return list(dict.fromkeys(names))


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_models(options: dict) -> list:
    """Build the selected models from the flags (ValueError / OSError / GpuMemoryError on bad setups)."""
    offload = tuple(part for part in OFFLOAD_PARTS if options.get(f"offload_{part}"))
    models = []
    for name in selected_models(options):
        settings = ModelSettings(
            weights_dir=options.get("gen3c_weights") or None,
            device=resolve_device(options["device"]) if name == "gen3c" else "cpu",
            dtype=options["dtype"],
            offload=offload,
            cfg_batch=options["cfg_batch"],
            attention_backend=options["attention_backend"],
            compile=options["compile"],
            compile_cache=options["compile_cache"] or None,
            fp8=options["fp8"],
            gelu_epilogue=options["gelu_epilogue"],
            inpaint_radius=options["inpaint_radius"],
            inpaint_max_side=options["inpaint_max_side"],
            world_size=options["gpus"] if name == "gen3c" else 1,
            cfg_parallel=options["cfg_parallel"],
            cp_mode=options["cp_mode"],
        )
        models.append(load_model(name, settings))
    return models


@cli.command("serve", help="Serve preview/gen3c over Triton (PyTriton) on this machine until SIGTERM/SIGINT.")
@cfg.options(SERVICE, FLAGS)
def serve(**options) -> int:
    from objvid.diffusion.pytriton_server import ServerConfig
    from objvid.diffusion.pytriton_server import serve as serve_models

    level = options["log_level"]
    setup_logging(level)
    if level != "debug":  # PyTriton logs a traceback for every rejected request; ours is one line
        logging.getLogger("pytriton").setLevel(max(logging.getLevelName(level.upper()), logging.ERROR))
    try:
        config = cfg.build(ServerConfig, options)
        models = load_models(options)
    except (ValueError, OSError, RuntimeError) as err:  # RuntimeError: GpuMemoryError names what to offload
        click.echo(f"objvid-diffusion serve: error: {err}", err=True)
        return 2
    if any(model.preview for model in models):
        click.echo(f"objvid-diffusion: {PREVIEW_NOTICE}", err=True)
    click.echo(
        f"objvid-diffusion: serving {','.join(m.name for m in models)} on {config.host} "
        f"(gRPC {config.grpc_port}, HTTP {config.http_port}, metrics {config.metrics_port or 'off'})",
        err=True,
    )
    try:
        return serve_models(models, config)
    finally:
        for model in models:  # a multi-GPU gen3c stops its worker processes
            close = getattr(model, "close", None)
            if close is not None:
                close()


@cli.command(
    "convert",
    help="Convert official GEN3C + tokenizer weights (see `objvid-diffusion convert --help`).",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []},
)
@click.argument("argv", nargs=-1, type=click.UNPROCESSED)
def convert_command(argv) -> int:
    return _convert(list(argv))


def _convert(argv: list[str]) -> int:
    from objvid.diffusion import convert  # torch + diffusers: only when converting

    return convert.main(argv)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "convert":  # the converter owns its flags and help
        return _convert(argv[1:])
    return cfg.run_cli(cli, argv, "objvid-diffusion")


if __name__ == "__main__":
    sys.exit(main())
