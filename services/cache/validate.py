"""Input checks for the cache library.

Every helper raises ``ValueError`` whose message starts with the argument name, e.g.
``"K: singular intrinsics (det=0)"``. Helpers return float64 numpy arrays (cameras) or contiguous
numpy arrays of the documented dtype so callers never see a half-checked value.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from objvid.runtime import geometry


def to_numpy(x: Any, name: str) -> np.ndarray:
    """Any array-like (numpy, torch on any device, nested lists) -> numpy array (copy for torch)."""
    if x is None:
        raise ValueError(f"{name}: required, got None")
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    try:
        return np.asarray(x)
    except Exception as exc:  # ragged lists etc.
        raise ValueError(f"{name}: not an array ({exc})") from exc


def _finite(a: np.ndarray, name: str) -> None:
    if a.dtype.kind not in "fiub":
        raise ValueError(f"{name}: expected numbers, got dtype {a.dtype}")
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        raise ValueError(f"{name}: contains non-finite values (NaN or inf)")


def intrinsics(K: Any, name: str = "K", batch: bool = False) -> np.ndarray:
    """Check pixel intrinsics. Returns (3,3) float64, or (T,3,3) float64 when ``batch``.

    A valid K is finite, has last row (0,0,1), positive focal lengths and is invertible
    (``objvid.runtime.geometry.check_intrinsics``, the same rules as the gRPC service and the client).
    With ``batch`` a single (3,3) is accepted and returned as (1,3,3).
    """
    a = to_numpy(K, name)
    _finite(a, name)
    a = a.astype(np.float64)
    if batch and a.shape == (3, 3):
        a = a[None]
    want = "(T,3,3) or (3,3)" if batch else "(3,3)"
    if (batch and (a.ndim != 3 or a.shape[1:] != (3, 3))) or (not batch and a.shape != (3, 3)):
        raise ValueError(f"{name}: expected shape {want}, got {tuple(a.shape)}")
    if batch and a.shape[0] == 0:
        raise ValueError(f"{name}: no cameras (T=0)")
    geometry.check_intrinsics(a if batch else a.reshape(3, 3), name)  # the rules: objvid.runtime.geometry
    return a


def rigid(T: Any, name: str = "w2c", batch: bool = False, allow_scale: bool = False) -> np.ndarray:
    """Check a 4x4 rigid transform (rotation + translation, optionally uniform scale > 0); the rules are
    ``objvid.runtime.geometry.check_transform`` (the same as the gRPC service and the client).

    Returns (4,4) float64, or (T,4,4) float64 when ``batch`` (a single (4,4) becomes (1,4,4)).
    """
    a = to_numpy(T, name)
    _finite(a, name)
    a = a.astype(np.float64)
    if batch and a.shape == (4, 4):
        a = a[None]
    want = "(T,4,4) or (4,4)" if batch else "(4,4)"
    if (batch and (a.ndim != 3 or a.shape[1:] != (4, 4))) or (not batch and a.shape != (4, 4)):
        raise ValueError(f"{name}: expected shape {want}, got {tuple(a.shape)}")
    if batch and a.shape[0] == 0:
        raise ValueError(f"{name}: no cameras (T=0)")
    geometry.check_transform(a, name, allow_scale=allow_scale)  # the rules: objvid.runtime.geometry
    return a


def image(img: Any, name: str = "image") -> np.ndarray:
    """(H,W,3) uint8 image. Float images in [0,1] are accepted and rounded to uint8."""
    a = to_numpy(img, name)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"{name}: expected shape (H,W,3), got {tuple(a.shape)}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"{name}: zero-size image {tuple(a.shape)}")
    return colors(a.reshape(-1, 3), name).reshape(a.shape)


def depth(d: Any, shape: tuple[int, int], name: str = "depth") -> np.ndarray:
    """(H,W) depth (z along the optical axis). Non-finite values are allowed here (cleaned later)."""
    a = to_numpy(d, name)
    if a.ndim == 3 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 2:
        raise ValueError(f"{name}: expected shape (H,W), got {tuple(a.shape)}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"{name}: zero-size depth map {tuple(a.shape)}")
    if tuple(a.shape) != tuple(shape):
        raise ValueError(f"{name}: shape {tuple(a.shape)} does not match image {tuple(shape)}")
    if a.dtype.kind not in "fiu":
        raise ValueError(f"{name}: expected a numeric array, got dtype {a.dtype}")
    return a.astype(np.float32)


def mask(m: Any, shape: tuple[int, int], name: str = "mask") -> np.ndarray:
    """(H,W) bool (or 0/1 numbers) -> bool array."""
    a = to_numpy(m, name)
    if a.ndim == 3 and a.shape[0] == 1:
        a = a[0]
    if tuple(a.shape) != tuple(shape):
        raise ValueError(f"{name}: shape {tuple(a.shape)} does not match image {tuple(shape)}")
    if a.dtype == bool:
        return a
    _finite(a, name)
    return a != 0


def points(p: Any, name: str = "points", allow_empty: bool = False) -> np.ndarray:
    """(N,3) finite coordinates -> float32 array."""
    a = to_numpy(p, name)
    if a.ndim != 2 or a.shape[1] != 3:
        raise ValueError(f"{name}: expected shape (N,3), got {tuple(a.shape)}")
    if a.shape[0] == 0 and not allow_empty:
        raise ValueError(f"{name}: empty point cloud (N=0)")
    _finite(a, name)
    a32 = a.astype(np.float32)
    if not np.isfinite(a32).all():
        raise ValueError(f"{name}: coordinates overflow float32")
    return np.ascontiguousarray(a32)


def colors(c: Any, name: str = "colors", n: int | None = None) -> np.ndarray:
    """(N,3) colours: uint8, integers in 0..255 or floats in [0,1] -> uint8."""
    a = to_numpy(c, name)
    if a.ndim != 2 or a.shape[1] != 3:
        raise ValueError(f"{name}: expected shape (N,3), got {tuple(a.shape)}")
    if n is not None and a.shape[0] != n:
        raise ValueError(f"{name}: {a.shape[0]} colours for {n} points")
    if a.dtype == np.uint8:
        return np.ascontiguousarray(a)
    _finite(a, name)
    if a.dtype.kind in "iu":
        if a.size and (a.min() < 0 or a.max() > 255):
            raise ValueError(f"{name}: integer colours must be in 0..255")
        return a.astype(np.uint8)
    if a.dtype.kind == "f":
        if a.size and (a.min() < 0 or a.max() > 1):
            raise ValueError(f"{name}: float colours must be in [0, 1]")
        return np.rint(a.astype(np.float64) * 255.0).astype(np.uint8)
    raise ValueError(f"{name}: unsupported dtype {a.dtype}")


def image_size(height: Any, width: Any) -> tuple[int, int]:
    """Positive integer render size."""
    for name, v in (("height", height), ("width", width)):
        if isinstance(v, bool) or not isinstance(v, int | np.integer):
            raise ValueError(f"{name}: expected a positive int, got {v!r}")
        if v <= 0:
            raise ValueError(f"{name}: zero-size image ({name}={v})")
        if v > 16384:
            raise ValueError(f"{name}: {v} exceeds the 16384-pixel limit")
    return int(height), int(width)


def positive(v: Any, name: str) -> float:
    """Finite number > 0."""
    try:
        f = float(v)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: expected a number, got {v!r}") from exc
    if not np.isfinite(f) or f <= 0:
        raise ValueError(f"{name}: must be finite and > 0, got {v!r}")
    return f
