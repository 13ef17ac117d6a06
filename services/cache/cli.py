"""``objvid-cache serve``: run the cache gRPC service (also ``python -m objvid.cache serve``).

Every flag falls back to an environment variable ``OBJVID_CACHE_<FLAG>`` (``objvid.runtime.config``),
e.g. ``OBJVID_CACHE_MEMORY_BUDGET=8G``; the flag wins when both are given; ``--help`` lists them with their
defaults. SIGTERM / SIGINT stop the server gracefully (``objvid.serving.server.run``): health turns
NOT_SERVING, in-flight calls get ``--grace`` seconds, queued snapshots are written, the process exits 0.
"""

from __future__ import annotations

import gc
import re
import sys

import click

from objvid.runtime import config as cfg
from objvid.runtime.config import Flag
from objvid.serving import cli as serving_cli
from objvid.serving.config import serving_flags

SERVICE = "cache"
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
    """'auto' -> 'cuda' when available else 'cpu'; other names are checked (ValueError)."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name}: CUDA is not available on this machine")
    if not (name == "cpu" or name.startswith("cuda")):
        raise ValueError(f"device {name}: expected auto, cpu, cuda or cuda:N")
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


FLAGS: list[Flag] = [
    *serving_flags(port=50052, metrics_port=9102, host="0.0.0.0", workers=32, grace=10.0),
    Flag("device", "auto", "auto, cpu, cuda or cuda:N", metavar="DEVICE"),
    Flag(
        "memory-budget",
        "auto",
        "device bytes all resident scenes may hold: bytes, 8G, 512MiB, 80% or auto "
        "(80% of the GPU, 4 GiB on CPU)",
        metavar="SIZE",
    ),  # fmt: skip
    Flag(
        "snapshot-dir",
        "",
        "write scenes here and serve them again after a restart (empty = off)",
        metavar="DIR",
    ),
    Flag(
        "max-image-pixels", 4096 * 4096, "largest width*height of an image or render", kind=click.IntRange(1)
    ),
    Flag("max-points", 20_000_000, "largest point cloud (scene or object) in points", kind=click.IntRange(1)),
    Flag("max-objects", 256, "most objects per scene", kind=click.IntRange(1)),
    Flag("max-cameras", 4096, "most cameras per RenderTrajectory", kind=click.IntRange(1)),
    # Hostile-input bounds (docs/security.md).
    Flag("max-object-bytes", "256M", "largest object file (AddObject.file)", metavar="SIZE"),
    Flag("max-sample-points", 2_000_000, "most points sampled from a mesh file", kind=click.IntRange(1)),
    Flag(
        "max-mesh-elements",
        20_000_000,
        "most vertices + indices of a file's meshes, counted after glTF node instancing",
        kind=click.IntRange(1),
    ),
    Flag(
        "max-texture-pixels",
        32 << 20,
        "most decoded pixels of all textures of a file",
        kind=click.IntRange(1),
    ),
    Flag("parse-workers", 2, "object files parsed at once, each in its own process", kind=click.IntRange(1)),
    Flag(
        "parse-timeout",
        60.0,
        "seconds one object file may take to parse (its process is killed beyond)",
        kind=click.FloatRange(min=0.001),
    ),  # fmt: skip
    Flag("parse-memory", "4G", "address space a parser process may add", metavar="SIZE"),
    Flag(
        "host-memory-budget",
        "auto",
        "host memory the process may use; requests beyond it get RESOURCE_EXHAUSTED before allocating "
        "(bytes, 16G, auto = 80% of the cgroup limit or RAM, off)",
        metavar="SIZE",
    ),
    Flag(
        "snapshot-disk-budget",
        "0",
        "bytes the snapshot directory may hold (LRU scenes deleted beyond; 0 = none)",
        metavar="SIZE",
    ),  # fmt: skip
]

cli = cfg.group("objvid-cache", "objvid cache renderer gRPC service.")


def config_from_options(options: dict):
    """The ServerConfig of parsed ``serve`` options; ValueError naming a bad setting."""
    from objvid.runtime import memguard

    from .io_limits import LoadLimits
    from .requests import Limits
    from .server import ServerConfig

    device = resolve_device(options["device"])
    try:
        budget = resolve_budget(options["memory_budget"], device)
    except ValueError as exc:
        raise ValueError(f"--memory-budget: {exc}") from None
    limits = Limits(
        options["max_image_pixels"], options["max_points"], options["max_objects"], options["max_cameras"]
    )
    load_limits = LoadLimits(
        max_object_bytes=memguard.parse_bytes(options["max_object_bytes"], "--max-object-bytes"),
        max_sample_points=options["max_sample_points"],
        max_points=options["max_points"],
        max_mesh_elements=options["max_mesh_elements"],
        max_texture_pixels=options["max_texture_pixels"],
    )
    config = cfg.build(
        ServerConfig, options, device=device, memory_budget=budget, snapshot_dir=options["snapshot_dir"] or None,
        limits=limits, load_limits=load_limits,
        parse_memory=memguard.parse_bytes(options["parse_memory"], "--parse-memory"),
        host_memory_budget=memguard.parse_budget(options["host_memory_budget"], "--host-memory-budget"),
        snapshot_disk_budget=memguard.parse_bytes(options["snapshot_disk_budget"], "--snapshot-disk-budget"),
    )  # fmt: skip
    config.check_serving()
    return config


@cli.command("serve", help="Serve objvid.v1.CacheService until SIGTERM/SIGINT.")
@cfg.options(SERVICE, FLAGS)
def serve(**options) -> int:
    def build(config):
        from .server import CacheServer

        server = CacheServer(config, start=False)
        server.servicer.parse_pool.warm()  # parser processes start in the background, before the first file
        # Startup objects (torch, numpy, protobuf, grpc modules) never become garbage: keep them out of the
        # collector's full passes, which otherwise walk them all (tens of ms) in the middle of some request.
        gc.freeze()
        return server.grpc, None, server.close

    return serving_cli.serve(options, config_from_options, build)


def main(argv: list[str] | None = None) -> int:
    """Entry point (``objvid-cache``); returns 2 for bad flags."""
    return cfg.run_cli(cli, argv, "objvid-cache")


if __name__ == "__main__":
    sys.exit(main())
