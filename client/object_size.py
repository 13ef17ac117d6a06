"""Object size at placement: real size when scene and object are both metric, else the cache's heuristic.

- The scene is metric when its depth came from a file (``--depth``, converted to metres with
  ``--depth-units``; 16-bit PNGs are millimetres) or from a MoGe-2 model (metric point maps; the depth
  service reports the model id, matched on ``moge-2``). MoGe v1 (the default ``Ruicheng/moge-vitl``) is
  scale-ambiguous.
- The object is metric when ``--object-units`` (m | cm | mm) is given, or when it is glTF / GLB (metres by the
  glTF 2.0 specification). PLY / OBJ / STL carry no unit.
- Both metric: PlaceObject gets ``scale`` = metres per object unit, so the object keeps its real size.
  Otherwise the cache sizes it (``objvid.cache.placement``: longest side = 7.5 % of the anchor's camera
  depth, a 0.30 m shoe at 4 m). ``--object-height`` overrides both.
"""

from __future__ import annotations

from pathlib import Path

OBJECT_UNITS = {"m": 1.0, "cm": 0.01, "mm": 0.001}
METRIC_FORMATS = (".glb", ".gltf")


def check_units(units: str | None) -> None:
    if units is not None and units not in OBJECT_UNITS:
        raise ValueError(f"--object-units: expected one of {', '.join(OBJECT_UNITS)}, got {units!r}")


def metric_scene(depth_manifest: dict) -> bool:
    """True for a depth file, or depth from a MoGe-2 model (``run.manifest["depth"]``)."""
    if depth_manifest.get("source") == "file":
        return True
    return "moge-2" in str(depth_manifest.get("model", "")).lower()


def real_size_scale(filename: str, units: str | None, scene_is_metric: bool) -> float | None:
    """Scene units (metres) per object unit when both are metric, else None (the cache's heuristic)."""
    check_units(units)
    if not scene_is_metric:
        return None
    if units is None and Path(filename).suffix.lower() in METRIC_FORMATS:
        units = "m"
    return None if units is None else OBJECT_UNITS[units]
