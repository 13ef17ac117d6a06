"""GEN3C-Cosmos-7B inference on diffusers' Cosmos components (``objvid.diffusion.gen3c``).

Public API (imported lazily; ``import objvid.diffusion.gen3c`` does not import torch or diffusers):
``Gen3cModel`` (the :class:`~objvid.diffusion.base.VideoModel`), ``GpuMemoryError``, ``Offload``,
``Gen3cConfig`` and ``OFFLOAD_PARTS``.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "Gen3cModel": "objvid.diffusion.gen3c.model",
    "GpuMemoryError": "objvid.diffusion.gen3c.memory",
    "Offload": "objvid.diffusion.gen3c.memory",
    "OFFLOAD_PARTS": "objvid.diffusion.gen3c.memory",
    "Gen3cConfig": "objvid.diffusion.gen3c.config",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
