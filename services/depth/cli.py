"""``objvid-depth serve``: run the depth service. Every flag falls back to ``OBJVID_DEPTH_<FLAG>``
(``objvid.runtime.config``); ``objvid-depth serve --help`` lists them with their defaults.

Exit codes: 0 after a clean stop (SIGTERM/SIGINT, also while loading), 1 when the model cannot be loaded or
the ports cannot be bound (one line says why; for a hub id offline it names the file and where to place
it), 2 on bad flags.
"""

from __future__ import annotations

import sys

from objvid.depth.server import DepthServer, ServerConfig
from objvid.runtime import config as cfg
from objvid.runtime.config import Flag
from objvid.serving import cli as serving_cli
from objvid.serving.config import serving_flags

SERVICE = "depth"
_D = ServerConfig()

FLAGS: list[Flag] = [
    Flag(
        "model",
        _D.model,
        "MoGe checkpoint path (model.pt) or Hugging Face hub id (v1: Ruicheng/moge-vitl)",
        metavar="PATH|ID",
    ),  # fmt: skip
    Flag(
        "geometry-model",
        _D.geometry_model,
        "multi-view geometry model for LiftViews: VGGT checkpoint path or hub id (facebook/VGGT-1B); "
        "empty = LiftViews off",
        metavar="PATH|ID",
    ),
    Flag(
        "model-version",
        _D.model_version,
        "auto (from the checkpoint config), v1 or v2",
        choices=("auto", "v1", "v2"),
    ),
    Flag(
        "model-dir",
        _D.model_dir,
        "hub ids are first looked up as <model-dir>/<org>/<name>/model.pt",
        metavar="DIR",
    ),
    Flag("device", _D.device, "auto (cuda if available), cpu, cuda, cuda:N", metavar="DEVICE"),
    Flag(
        "dtype",
        _D.dtype,
        "auto (float16 on CUDA, float32 on CPU), float16 (CUDA only), float32",
        choices=("auto", "float16", "float32"),
    ),  # fmt: skip
    Flag("num-tokens", _D.num_tokens, "ViT tokens per image; 0 = from --resolution-level"),
    Flag("resolution-level", _D.resolution_level, "0..9 over the checkpoint's token range (MoGe default 9)"),
    *serving_flags(
        port=_D.port, metrics_port=_D.metrics_port, host=_D.host, workers=_D.workers, grace=_D.grace
    ),
    Flag("width", _D.width, "default working width (GEN3C 1280)"),
    Flag("height", _D.height, "default working height (GEN3C 704)"),
    Flag("infer-width", _D.infer_width, "MoGe inference width (GEN3C 1280)"),
    Flag("infer-height", _D.infer_height, "MoGe inference height (GEN3C 720)"),
    Flag(
        "max-pixels",
        _D.max_pixels,
        "largest input image and working size, in pixels (RESOURCE_EXHAUSTED above)",
    ),
    Flag("max-images", _D.max_images, "most images per request (RESOURCE_EXHAUSTED above)"),
    Flag(
        "max-request-pixels",
        _D.max_request_pixels,
        "most pixels of all images of one request together, read from their headers before decoding",
    ),
    Flag(
        "host-memory-budget",
        "auto",
        "host memory the process may use; requests beyond it get RESOURCE_EXHAUSTED before decoding "
        "(bytes, 16G, auto = 80% of the cgroup limit or RAM, off)",
        metavar="SIZE",
    ),
    Flag("micro-batch", _D.micro_batch, "images per model call"),
    Flag("decode-threads", _D.decode_threads, "threads decoding the images of a batch"),
    Flag("torch-threads", _D.torch_threads, "torch CPU threads; 0 = auto (CUDA: 4, CPU: torch's default)"),
    Flag(
        "warmup",
        _D.warmup,
        "lift gray images once per micro-batch size (CUDA; once on CPU) on the inference "
        "thread before reporting SERVING",
    ),  # fmt: skip
    Flag(
        "fast-kernels",
        _D.fast_kernels,
        "CUDA: parallel GroupNorm statistics and a cached position embedding in MoGe (same math)",
    ),  # fmt: skip
]

cli = cfg.group("objvid-depth", "MoGe depth lifting service (GEN3C conventions).")


def config_from_options(options: dict) -> ServerConfig:
    """The ServerConfig of parsed ``serve`` options; ValueError naming a bad setting."""
    from objvid.runtime.memguard import parse_budget

    budget = parse_budget(options["host_memory_budget"], "--host-memory-budget")
    config = cfg.build(ServerConfig, options, host_memory_budget=budget)
    config.validate()
    return config


@cli.command("serve", help="Serve objvid.v1.DepthService until SIGTERM/SIGINT.")
@cfg.options(SERVICE, FLAGS)
def serve(**options) -> int:
    def build(config):
        server = DepthServer(config)
        return server.grpc, server.load, server.servicer.close

    return serving_cli.serve(options, config_from_options, build)


def main(argv: list[str] | None = None) -> int:
    """Entry point (``objvid-depth``); returns 2 for bad flags."""
    return cfg.run_cli(cli, argv, "objvid-depth")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
