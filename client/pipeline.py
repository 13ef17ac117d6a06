"""The pipeline's public entry points in one import (the commands live in ``objvid.client.commands``).

Layout: ``options`` (GenerateConfig, defaults, frame rules) -> ``plan`` (stage ``inputs``: every check,
files read; the input mode from ``objvid.client.sources``) -> ``stages`` (depth, cameras, scene,
placement, render) -> ``commands.generate`` / ``commands.render`` / ``commands.lift``; ``run`` holds the
progress sink, the timings, the manifest and the one failure path.
"""

from __future__ import annotations

from objvid.client.commands.generate import generate, generate_options
from objvid.client.commands.lift import lift
from objvid.client.commands.render import render
from objvid.client.options import (
    BACKENDS,
    CHUNK,
    DEFAULT_FILTER_THRESHOLD,
    DEFAULT_FRAMES,
    DEFAULT_HEIGHT,
    DEFAULT_OBJECT_RADIUS_PX,
    DEFAULT_WIDTH,
    MAX_SLOTS,
    METHODS,
    STAGES_ORDER,
    STRIDE,
    GenerateConfig,
    check_frame_count,
    chunk_ranges,
    nearest_valid_frames,
)
from objvid.client.plan import needs_depth_service
from objvid.client.run import Reporter, Run
from objvid.client.stages import inputs


def validate(config: GenerateConfig, command: str = "generate") -> None:
    """Check every option and input file without touching a service; ObjvidError('inputs', reason)."""
    inputs(Run(command, config, None, record=False))


__all__ = [
    "BACKENDS",
    "CHUNK",
    "DEFAULT_FILTER_THRESHOLD",
    "DEFAULT_FRAMES",
    "DEFAULT_HEIGHT",
    "DEFAULT_OBJECT_RADIUS_PX",
    "DEFAULT_WIDTH",
    "MAX_SLOTS",
    "METHODS",
    "STAGES_ORDER",
    "STRIDE",
    "GenerateConfig",
    "Reporter",
    "check_frame_count",
    "chunk_ranges",
    "generate",
    "generate_options",
    "lift",
    "needs_depth_service",
    "nearest_valid_frames",
    "render",
    "validate",
]
