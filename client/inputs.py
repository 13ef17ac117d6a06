"""Reading the user's inputs: the image, an optional depth map with its intrinsics, object files.

Depth files (z-depth along the optical axis, same size as the image):
- ``.npy`` / ``.npz`` (key ``depth`` or the only array): float or integer values in ``--depth-units``
  (m, cm or mm; default m), converted to metres;
- ``.png``: 16-bit, millimetres (value / 1000 -> metres), 0 = invalid; 8-bit PNGs are refused;
- ``.exr``: single- or three-channel float (first channel used), in ``--depth-units``; needs
  opencv-python-headless.
Non-finite and non-positive depths are invalid (mask false).

Intrinsics JSON: ``{"K": [[fx,0,cx],[0,fy,cy],[0,0,1]], "width": W, "height": H}`` (width/height optional,
default = the image size), a bare 3x3 list, or ``{"fx", "fy", "cx", "cy"[, "width", "height"]}``.

Resizing to the working resolution squashes (no crop) like GEN3C: the image bilinearly, depth and mask
by nearest neighbour (no blended depths across edges), K scaled by sx = W/w (fx, cx), sy = H/h (fy, cy).
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import numpy as np

from objvid.runtime import wire

OBJECT_EXTENSIONS = (".ply", ".obj", ".glb", ".gltf", ".stl")
DEPTH_UNITS = {"m": 1.0, "cm": 0.01, "mm": 0.001}  # factor to metres (the cache clamps at 100 units)


def read_file(path: str | Path, name: str) -> bytes:
    """File bytes, or ValueError naming the option and the problem."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{name} {path}: no such file")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ValueError(f"{name} {path}: cannot read ({exc.strerror or exc})") from None


def load_image(path: str | Path, name: str = "--image") -> np.ndarray:
    """An image file -> (H, W, 3) uint8 RGB."""
    return np.array(wire.decode_image_bytes(read_file(path, name), f"{name} {path}"))


def check_object_path(path: str | Path, name: str = "--object") -> None:
    path = Path(path)
    if path.suffix.lower() not in OBJECT_EXTENSIONS:
        raise ValueError(
            f"{name} {path}: unsupported format {path.suffix!r} (use {', '.join(OBJECT_EXTENSIONS)})"
        )
    if not path.is_file():
        raise ValueError(f"{name} {path}: no such file")


def check_object_bytes(
    data: bytes, path: str | Path, name: str = "--object", suffix: str | None = None
) -> None:
    """A cheap look at the file's framing, so a wrong or truncated file fails before any server starts
    (the cache service parses it fully, with trimesh; the client has no mesh library). ``suffix``: the
    format of ``data`` when it is not the file's own (an .obj or .gltf bundled into one GLB)."""
    path = Path(path)
    suffix = (suffix or path.suffix).lower()
    where = f"{name} {path}"
    if not data.strip():
        raise ValueError(f"{where}: empty file")
    if suffix == ".ply":
        if not data.startswith(b"ply") or b"end_header" not in data[:65536]:
            raise ValueError(f"{where}: not a PLY file (no 'ply' ... 'end_header' header)")
    elif suffix == ".glb":
        if len(data) < 12 or data[:4] != b"glTF":
            raise ValueError(f"{where}: not a binary glTF file (no 'glTF' magic)")
    elif suffix == ".gltf":
        try:
            doc = json.loads(data)
        except (UnicodeDecodeError, ValueError) as exc:
            raise ValueError(f"{where}: not a glTF JSON file ({exc})") from None
        if not isinstance(doc, dict) or "asset" not in doc:
            raise ValueError(f"{where}: not a glTF JSON file (no 'asset')")
    elif suffix == ".obj":
        if not re.search(rb"^\s*v\s", data, re.MULTILINE):
            raise ValueError(f"{where}: not an OBJ file (no 'v' vertex lines)")
    elif suffix == ".stl":
        binary = len(data) >= 84 and len(data) == 84 + 50 * int.from_bytes(data[80:84], "little")
        if not binary and not (data.lstrip().startswith(b"solid") and b"facet" in data):
            raise ValueError(f"{where}: not an STL file (neither ASCII 'solid'/'facet' nor binary size)")


def _depth_numpy(path: Path, where: str) -> np.ndarray:
    """.npy, or .npz with a ``depth`` array (or a single array): values in scene units."""
    try:
        data = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise ValueError(f"{where}: not a numpy file ({exc})") from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        return np.asarray(data)
    keys = list(data.keys())
    if "depth" in keys:
        return np.asarray(data["depth"])
    if len(keys) == 1:
        return np.asarray(data[keys[0]])
    raise ValueError(f"{where}: .npz needs a 'depth' array (found {keys})")


def _depth_png(path: Path, where: str) -> np.ndarray:
    """16-bit PNG in millimetres -> metres."""
    from PIL import Image

    with Image.open(path) as im:
        if im.mode not in ("I;16", "I;16B", "I;16L", "I"):
            raise ValueError(f"{where}: depth PNGs must be 16-bit millimetres, got mode {im.mode}")
        return np.asarray(im, dtype=np.float64) / 1000.0


def _depth_exr(path: Path, where: str) -> np.ndarray:
    """Single- or three-channel float EXR (first channel), through OpenCV."""
    os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")
    try:
        import cv2
    except ImportError:
        raise ValueError(f"{where}: reading .exr needs opencv-python-headless (pip install it)") from None
    depth = cv2.imread(str(path), cv2.IMREAD_ANYDEPTH | cv2.IMREAD_UNCHANGED)
    if depth is None:
        raise ValueError(f"{where}: OpenCV could not read this EXR")
    return depth[..., 0] if depth.ndim == 3 else depth


_DEPTH_READERS = {".npy": _depth_numpy, ".npz": _depth_numpy, ".png": _depth_png, ".exr": _depth_exr}


def load_depth(path: str | Path, name: str = "--depth", units: str = "m") -> tuple[np.ndarray, np.ndarray]:
    """A depth file -> (depth (H, W) float32 metres with invalid pixels 0, valid mask (H, W) bool).

    ``units`` (m | cm | mm, option ``--depth-units``) is the unit of .npy/.npz/.exr values; 16-bit PNGs are
    always millimetres."""
    if units not in DEPTH_UNITS:
        raise ValueError(f"--depth-units: expected one of {', '.join(DEPTH_UNITS)}, got {units!r}")
    path = Path(path)
    where = f"{name} {path}"
    reader = _DEPTH_READERS.get(path.suffix.lower())
    if reader is None:
        raise ValueError(
            f"{where}: unsupported depth format {path.suffix.lower()!r} (use .npy, .npz, .png or .exr)"
        )
    read_file(path, name)  # exists and is readable
    depth = reader(path, where)
    if depth.ndim == 3 and depth.shape[0] == 1:
        depth = depth[0]
    if depth.ndim != 2:
        raise ValueError(f"{where}: expected a (H, W) array, got shape {depth.shape}")
    if depth.dtype.kind not in "fiu":
        raise ValueError(f"{where}: expected numbers, got dtype {depth.dtype}")
    scale = 1.0 if path.suffix.lower() == ".png" else DEPTH_UNITS[units]  # the PNG reader made metres
    depth = (depth.astype(np.float64) * scale).astype(np.float32)
    valid = np.isfinite(depth) & (depth > 0)
    if not valid.any():
        raise ValueError(f"{where}: no valid (finite, > 0) depth values")
    return np.where(valid, depth, 0.0).astype(np.float32), valid


def load_intrinsics(path: str | Path, image_size: tuple[int, int], name: str = "--intrinsics") -> np.ndarray:
    """Intrinsics JSON -> K (3, 3) float64 in pixels of the image (width, height) = image_size.

    A K given for another size (its width/height) is scaled to the image's size.
    """
    path = Path(path)
    where = f"{name} {path}"
    try:
        data = json.loads(read_file(path, name))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    width, height = image_size
    if isinstance(data, dict) and "K" in data:
        K, w, h = data["K"], data.get("width", width), data.get("height", height)
    elif isinstance(data, dict) and {"fx", "fy", "cx", "cy"} <= data.keys():
        K = [[data["fx"], 0, data["cx"]], [0, data["fy"], data["cy"]], [0, 0, 1]]
        w, h = data.get("width", width), data.get("height", height)
    elif isinstance(data, list):
        K, w, h = data, width, height
    else:
        raise ValueError(f"{where}: expected {{'K': 3x3, 'width', 'height'}}, a 3x3 list or fx/fy/cx/cy")
    try:
        K = np.asarray(K, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: K must hold numbers only") from None
    if K.shape != (3, 3) or not np.isfinite(K).all():
        raise ValueError(f"{where}: K must be a finite 3x3 matrix, got shape {K.shape}")
    if not np.allclose(K[2], [0, 0, 1]) or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise ValueError(f"{where}: K must be pixel intrinsics (fx, fy > 0, last row 0 0 1)")
    for key, v in (("width", w), ("height", h)):
        if isinstance(v, bool) or not isinstance(v, int | float) or not v > 0 or not math.isfinite(v):
            raise ValueError(f"{where}: {key} must be a positive number, got {v!r}")
    return scale_intrinsics(K, (w, h), (width, height))


def scale_intrinsics(K: np.ndarray, src: tuple[float, float], dst: tuple[float, float]) -> np.ndarray:
    """K at size src = (w, h) -> K at dst = (W, H): fx, cx times W/w; fy, cy times H/h (GEN3C's rule)."""
    K = np.array(K, dtype=np.float64)
    sx, sy = dst[0] / src[0], dst[1] / src[1]
    K[0, :] *= sx
    K[1, :] *= sy
    K[2] = [0, 0, 1]
    return K


def resize_image(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """(h, w, 3) uint8 -> (height, width, 3) uint8, bilinear (squash, no crop)."""
    if image.shape[:2] == (height, width):
        return image
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR))


def resize_nearest(array: np.ndarray, width: int, height: int) -> np.ndarray:
    """(h, w) array -> (height, width) by nearest neighbour (pixel centres aligned)."""
    h, w = array.shape[:2]
    if (h, w) == (height, width):
        return array
    rows = np.minimum(((np.arange(height) + 0.5) * h / height).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(width) + 0.5) * w / width).astype(np.int64), w - 1)
    return array[rows[:, None], cols[None, :]]
