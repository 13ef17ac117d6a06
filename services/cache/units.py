"""Depth units and the depth-clamp check of the cache.

GEN3C clamps cache depth to [0, 100] scene units (sky and invalid pixels end up at 100). A depth map in the
wrong unit (millimetres instead of metres is common for RGB-D) would become a flat plane at 100 and empty
renders after any camera motion, so the cache measures how much *valid* depth (finite, > 0, inside the mask)
it clamped and warns above ``WARN_FRACTION``.
"""

from __future__ import annotations

import numpy as np

WARN_FRACTION = 0.01
DEPTH_UNITS = {"m": 1.0, "cm": 0.01, "mm": 0.001}  # factor to metres


def to_metres(depth: np.ndarray, unit: str, name: str = "depth_units") -> np.ndarray:
    """Depth in ``unit`` (m | cm | mm) -> float32 metres. ValueError naming ``name`` for other units."""
    if unit not in DEPTH_UNITS:
        raise ValueError(f"{name}: expected one of {', '.join(DEPTH_UNITS)}, got {unit!r}")
    return (np.asarray(depth, np.float64) * DEPTH_UNITS[unit]).astype(np.float32)


def clamped_fraction(depth: np.ndarray, max_depth: float, mask: np.ndarray | None = None) -> float:
    """Fraction of valid depth (finite, > 0, inside ``mask``) above ``max_depth``; 0 when none is valid."""
    d = np.asarray(depth)
    valid = np.isfinite(d) & (d > 0)
    if mask is not None:
        valid &= np.asarray(mask, bool)
    n = int(valid.sum())
    return float((d[valid] > max_depth).sum()) / n if n else 0.0


def clamp_warning(fraction: float, max_depth: float = 100.0) -> str:
    """The user-facing warning for a clamped fraction, or "" at or below ``WARN_FRACTION``."""
    if fraction <= WARN_FRACTION:
        return ""
    return (
        f"{fraction:.1%} of the valid depth is beyond {max_depth:g} scene units and was clamped "
        f"(GEN3C's limit): is the depth in the right unit? (objvid-client --depth-units m|cm|mm)"
    )
