"""Shared by the depth tests: small random-weight MoGe checkpoints (built once per test process) and
in-process servers with small sizes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch

from objvid.depth.server import DepthServer, ServerConfig
from objvid.testing.depth_model import SMALL_V1_CONFIG, SMALL_V2_CONFIG, build_random, save_checkpoint

_BUILT: dict[str, Path] = {}

#: Small-server sizes: MoGe sees 72x128, the default working size is 64x128.
SMALL = {"infer_height": 72, "infer_width": 128, "height": 64, "width": 128, "num_tokens": 64}


def small_checkpoint(version: str, root: Path) -> Path:
    """Path of a random-weight MoGe ``version`` checkpoint in the real format (written once per process)."""
    if version not in _BUILT:
        config = SMALL_V1_CONFIG if version == "v1" else SMALL_V2_CONFIG
        path = Path(root) / f"moge-small-{version}.pt"
        save_checkpoint(build_random(config, version, seed=1), config, path)
        _BUILT[version] = path
    return _BUILT[version]


def start_small_server(checkpoint: Path, **overrides) -> DepthServer:
    """A started in-process depth server on 127.0.0.1 with ephemeral gRPC and metrics ports."""
    options = {"model": str(checkpoint), "host": "127.0.0.1", "port": 0, "metrics_host": "127.0.0.1"}
    options.update(metrics_port=0, grace=0.5, workers=4, decode_threads=2, **SMALL)
    options.update(overrides)
    return DepthServer(ServerConfig(**options)).start()


def one_torch_thread() -> Iterator[None]:
    """Run torch single-threaded for a test module, then restore: on a shared, oversubscribed CPU,
    OpenMP teams spinning at barriers make a small MoGe call 10-50x slower than one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
