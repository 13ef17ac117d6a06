"""``objvid-client studio``: check the options, start or connect the services as ``generate`` does, serve.

Kept apart from ``objvid.client.cli`` so the CLI only declares the flags; ``connect`` (the CLI's
local-stack / remote-services context manager) is passed in.
"""

from __future__ import annotations

import math
from pathlib import Path

from objvid.client import pipeline
from objvid.client.errors import ObjvidError
from objvid.client.studio.session import StudioConfig


def check_options(cfg: StudioConfig) -> None:
    """ObjvidError('inputs', ...) naming the flag, before any server starts."""

    def bad(text: str):
        raise ObjvidError("inputs", text)

    if cfg.backend not in pipeline.BACKENDS:
        bad(f"--backend must be one of {', '.join(pipeline.BACKENDS)}, got {cfg.backend!r}")
    if cfg.method not in pipeline.METHODS:
        bad(f"--method must be one of {', '.join(pipeline.METHODS)}, got {cfg.method!r}")
    if cfg.width % 16 or cfg.height % 16 or cfg.width < 16 or cfg.height < 16:
        bad(f"--width and --height must be positive multiples of 16, got {cfg.width}x{cfg.height}")
    if cfg.frames < 2:
        bad(f"--frames must be >= 2, got {cfg.frames}")
    if not (math.isfinite(cfg.fps) and 0 < cfg.fps <= 240):
        bad(f"--fps must be in (0, 240], got {cfg.fps}")
    if cfg.preview_width < 16:
        bad(f"--preview-width must be >= 16, got {cfg.preview_width}")
    if not (math.isfinite(cfg.object_radius) and 0.0 <= cfg.object_radius <= 7.0):
        bad(f"--object-radius must be in [0, 7] pixels, got {cfg.object_radius}")
    if not Path(cfg.image).is_file():
        bad(f"--image {cfg.image}: no such file")
    for p in cfg.objects:
        if not Path(p).is_file():
            bad(f"--object {p}: no such file")
    if cfg.depth is not None and cfg.intrinsics is None:
        bad("--depth needs --intrinsics (a K JSON file)")


def run_studio(opts: dict, host: str, port: int, output, connect) -> None:
    """Start the services (or connect to them) and serve the studio until Ctrl-C / SIGTERM.

    connect(reporter, need_depth=, need_cache=, backend=, log_dir=): the CLI's context manager that yields
    (ObjvidClient, services record), starting missing servers as a local stack.
    """
    from objvid.client.studio.server import serve

    cfg = StudioConfig(**opts)
    check_options(cfg)
    if not 0 <= port <= 65535:
        raise ObjvidError("inputs", f"--port must be in [0, 65535], got {port}")
    reporter = output.make_reporter()
    need_depth = cfg.depth is None or len(pipeline.chunk_ranges(cfg.frames)) > 1
    notes = [
        f"backend **{cfg.backend}**" + (" (hole filling, NOT GEN3C)" if cfg.backend == "preview" else "")
    ]
    with connect(reporter, need_depth=need_depth, need_cache=True, backend=cfg.backend,
                 log_dir=Path(cfg.workdir) / "logs") as (client, _services):  # fmt: skip
        reporter.start("scene", None, "building the scene")

        def on_url(url: str) -> None:
            reporter.finish("scene")
            output.close()
            print(f"objvid studio: {url}", flush=True)
            output.info("open it in a browser; Ctrl-C stops the studio")

        serve(cfg, client, host, port, notes, lambda text: reporter.update("scene", text=text), on_url)
