"""objvid.cache: GPU-resident GEN3C-style 3D cache with objects, and its renderers (core library).

Public API: ``Scene``, ``RenderOutput``, ``ObjectNotFoundError``; loaders in ``objvid.cache.io``
(``load_object``); placement in ``objvid.cache.placement``; checks in ``objvid.cache.validate``.
See docs/renderer.md.

The names are imported on first use (PEP 562), so the object-file parser workers (``parse_pool``), which
import only ``objvid.cache.io``, start without importing torch.
"""

__all__ = ["Scene", "RenderOutput", "ObjectNotFoundError"]


def __getattr__(name: str):
    if name == "RenderOutput":
        from .render_common import RenderOutput

        return RenderOutput
    if name in ("Scene", "ObjectNotFoundError"):
        from . import scene

        return getattr(scene, name)
    raise AttributeError(f"module 'objvid.cache' has no attribute {name!r}")
