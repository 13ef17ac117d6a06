"""``--input-video``: read and check a posed RGB-D video (GEN3C's dynamic-scene inputs, reference 2.5).

Formats (detected from the path):

* **GEN3C directory**: ``rgb.mp4``, ``depth.npz`` (``depth`` (F, H, W) or (F, 1, H, W) z-depth),
  ``mask.npz`` (``mask``, optional: all valid when absent), ``camera.npz`` (``w2c`` (F, 4, 4) OpenCV
  world-to-camera, ``intrinsics`` (F, 3, 3) pixels);
* **GEN3C ``.pt``**: ``torch.save`` of five tensors (rgb (F, 3, H, W) in [-1, 1], depth (F, 1, H, W),
  mask (F, 1, H, W), w2c (F, 4, 4), intrinsics (F, 3, 3)), as a tuple/list or a dict with those keys;
* **ViPE output directory**: ``rgb/<clip>.mp4``, ``depth/<clip>.zip`` (one ``%05d.exr`` a frame, channel
  Z), ``pose/<clip>.npz`` (``inds``, ``data``: c2w (4, 4) or 16 floats), ``intrinsics/<clip>.npz``
  (``inds``, ``data``: (3, 3) or fx fy cx cy), ``mask/<clip>.zip`` optional (``%05d.png``, > 0 valid).
  Poses are inverted to w2c; frames are resized to the working width keeping 16:9 (720x1280) and then
  centre-cropped (704x1280), K adjusted the same way (upstream ``vipe_utils``).

Every other format is resized to the working size like the single-image mode (squash: image bilinear,
depth and mask nearest, K scaled per axis). Frame counts must agree across files; the clip is trimmed to
the longest 120 N + 1 frames GEN3C can generate (shorter than 121 is refused).
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from objvid.client import inputs as io
from objvid.client.options import CHUNK, STRIDE
from objvid.runtime import geometry

PT_KEYS = ("rgb", "depth", "mask", "w2c", "intrinsics")


@dataclass
class VideoClip:
    """A posed RGB-D clip at the working size: rgb (F, H, W, 3) uint8, depth (F, H, W) float32 z-depth,
    mask (F, H, W) bool, w2c (F, 4, 4) float64, K (F, 3, 3) float64; ``format`` the detected format;
    ``frames_in`` the frame count before trimming."""

    rgb: np.ndarray
    depth: np.ndarray
    mask: np.ndarray
    w2c: np.ndarray
    K: np.ndarray
    format: str
    frames_in: int

    @property
    def num_frames(self) -> int:
        return len(self.rgb)


def valid_length(n: int, where: str = "--input-video") -> int:
    """The longest 120 N + 1 <= n; ValueError (naming the nearest valid length) when n < 121."""
    if n < CHUNK:
        raise ValueError(
            f"{where}: {n} frames; GEN3C needs 120 N + 1 frames, the nearest valid length is {CHUNK}"
        )
    return STRIDE * ((n - 1) // STRIDE) + 1


def detect_format(path: Path) -> str:
    """ "gen3c_dir" | "gen3c_pt" | "vipe" | "video" (a plain video file: depth and poses are estimated)."""
    if path.is_dir():
        if (path / "rgb.mp4").is_file():
            return "gen3c_dir"
        if (path / "rgb").is_dir() and (path / "pose").is_dir():
            return "vipe"
        raise ValueError(f"--input-video {path}: a directory needs rgb.mp4 (GEN3C) or rgb/ + pose/ (ViPE)")
    if not path.exists():
        raise ValueError(f"--input-video {path}: no such file or directory")
    return "gen3c_pt" if path.suffix.lower() == ".pt" else "video"


def _npz(path: Path, key: str) -> np.ndarray:
    if not path.is_file():
        raise ValueError(f"{path}: missing")
    try:
        with np.load(path) as data:
            if key not in data.files:
                raise ValueError(f"{path}: no field {key!r} (has {sorted(data.files)})")
            return np.asarray(data[key])
    except (OSError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path}: not a readable .npz ({exc})") from None


def _squeeze_channel(a: np.ndarray, where: str) -> np.ndarray:
    if a.ndim == 4 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 3:
        raise ValueError(f"{where}: expected (F, H, W) or (F, 1, H, W), got {tuple(a.shape)}")
    return a


def _read_rgb(path: Path) -> np.ndarray:
    from objvid.client.video import read_video

    try:
        rgb = read_video(path)
    except OSError as exc:
        raise ValueError(str(exc)) from None
    if len(rgb) == 0:
        raise ValueError(f"{path}: no frames")
    return rgb


def load_gen3c_dir(root: Path) -> tuple[np.ndarray, ...]:
    rgb = _read_rgb(root / "rgb.mp4")
    depth = _squeeze_channel(_npz(root / "depth.npz", "depth"), f"{root / 'depth.npz'}: depth")
    mask_path = root / "mask.npz"
    mask = (_squeeze_channel(_npz(mask_path, "mask"), f"{mask_path}: mask") if mask_path.exists()
            else np.ones(depth.shape, bool))  # fmt: skip
    w2c = _npz(root / "camera.npz", "w2c")
    K = _npz(root / "camera.npz", "intrinsics")
    names = {"rgb": f"{root / 'rgb.mp4'}", "depth": f"{root / 'depth.npz'}: depth",
             "mask": f"{mask_path}: mask", "w2c": f"{root / 'camera.npz'}: w2c",
             "K": f"{root / 'camera.npz'}: intrinsics"}  # fmt: skip
    return rgb, depth, mask, w2c, K, names


def load_gen3c_pt(path: Path) -> tuple[np.ndarray, ...]:
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a pickle of anything else, a truncated file
        raise ValueError(f"{path}: not a torch file of tensors ({type(exc).__name__}: {exc})") from None
    if isinstance(obj, dict):
        missing = [k for k in PT_KEYS if k not in obj]
        if missing:
            raise ValueError(f"{path}: missing tensors {missing} (expected keys {list(PT_KEYS)})")
        obj = [obj[k] for k in PT_KEYS]
    if not isinstance(obj, list | tuple) or len(obj) != 5 or not all(torch.is_tensor(t) for t in obj):
        raise ValueError(f"{path}: expected five tensors (rgb, depth, mask, w2c, intrinsics)")
    rgb_t, depth_t, mask_t, w2c_t, K_t = obj
    names = {k: f"{path}: {k}" for k in ("rgb", "depth", "mask", "w2c")} | {"K": f"{path}: intrinsics"}
    if rgb_t.ndim != 4 or rgb_t.shape[1] != 3:
        raise ValueError(f"{names['rgb']}: expected (F, 3, H, W) in [-1, 1], got {tuple(rgb_t.shape)}")
    rgb = ((rgb_t.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    depth = _squeeze_channel(depth_t.float().numpy(), names["depth"])
    mask = _squeeze_channel(mask_t.numpy(), names["mask"]) != 0
    return rgb, depth, mask, w2c_t.double().numpy(), K_t.double().numpy(), names


def _indexed(path: Path, n: int, what: str) -> np.ndarray:
    """ViPE's (inds, data) npz -> data for frames 0..n-1, in order."""
    inds, data = _npz(path, "inds"), _npz(path, "data")
    missing = sorted(set(range(n)) - {int(i) for i in inds})
    if missing:
        raise ValueError(f"{path}: no {what} for frame {missing[0]} ({len(missing)} frames missing)")
    order = {int(i): k for k, i in enumerate(inds)}
    return np.stack([data[order[i]] for i in range(n)])


def _zip_frames(path: Path, n: int, ext: str, decode) -> np.ndarray:
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            out = []
            for i in range(n):
                name = f"{i:05d}.{ext}"
                if name not in names:
                    raise ValueError(f"{path}: no {name} (frame {i})")
                out.append(decode(zf.read(name), f"{path}: {name}"))
    except zipfile.BadZipFile as exc:
        raise ValueError(f"{path}: not a zip ({exc})") from None
    return np.stack(out)


def _cv2_decode(data: bytes, where: str, flags: int | None = None) -> np.ndarray:
    os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")
    import cv2

    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED if flags is None else flags)
    if img is None:
        raise ValueError(f"{where}: OpenCV could not decode it")
    return img[..., 0] if img.ndim == 3 else img


def load_vipe(root: Path, width: int, height: int) -> tuple[np.ndarray, ...]:
    clips = sorted((root / "rgb").glob("*.mp4"))
    if not clips:
        raise ValueError(f"{root / 'rgb'}: no .mp4 clip")
    base = clips[0].stem
    rgb = _read_rgb(clips[0])
    n = len(rgb)
    c2w = _indexed(root / "pose" / f"{base}.npz", n, "pose").astype(np.float64)
    if c2w.shape[1:] == (16,):
        c2w = c2w.reshape(n, 4, 4)
    geometry.check_transform(c2w, f"{root / 'pose' / base}.npz: data")
    w2c = np.linalg.inv(c2w)
    Kraw = _indexed(root / "intrinsics" / f"{base}.npz", n, "intrinsics").astype(np.float64)
    if Kraw.shape[1:] == (4,):
        K = np.zeros((n, 3, 3))
        K[:, 0, 0], K[:, 1, 1], K[:, 0, 2], K[:, 1, 2], K[:, 2, 2] = *Kraw.T, 1.0
    elif Kraw.shape[1:] == (3, 3):
        K = Kraw
    else:
        raise ValueError(
            f"{root / 'intrinsics' / base}.npz: data must be (3, 3) or fx fy cx cy, got {Kraw.shape[1:]}"
        )
    depth = _zip_frames(root / "depth" / f"{base}.zip", n, "exr", _cv2_decode).astype(np.float32)
    mask_zip = root / "mask" / f"{base}.zip"
    mask = (_zip_frames(mask_zip, n, "png", _cv2_decode) > 0 if mask_zip.exists()
            else np.ones(depth.shape, bool))  # fmt: skip
    names = {"rgb": str(clips[0]), "depth": f"{root / 'depth' / base}.zip", "mask": str(mask_zip),
             "w2c": f"{root / 'pose' / base}.npz: data", "K": f"{root / 'intrinsics' / base}.npz: data"}  # fmt: skip
    rgb, depth, mask, K = _resize_crop(rgb, depth, mask, K, names, width, height)
    return rgb, depth, mask, w2c, K, names


def _resize_crop(rgb, depth, mask, K, names, width, height):
    """ViPE's rule: resize to (width * 9 / 16, width) (720x1280), then centre-crop to (height, width)."""
    _check_sizes(rgb, depth, mask, names)
    h0, w0 = rgb.shape[1:3]
    rh = max(height, round(width * 9 / 16))
    rgb = np.stack([io.resize_image(f, width, rh) for f in rgb])
    depth = _bilinear(depth, width, rh)
    mask = np.stack([io.resize_nearest(m, width, rh) for m in mask])
    top = (rh - height) // 2
    K = np.stack([io.scale_intrinsics(k, (w0, h0), (width, rh)) for k in K])
    K[:, 1, 2] -= top
    return rgb[:, top : top + height], depth[:, top : top + height], mask[:, top : top + height], K


def _bilinear(depth: np.ndarray, width: int, height: int) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    if depth.shape[1:] == (height, width):
        return depth
    t = torch.from_numpy(np.ascontiguousarray(depth, np.float32))[:, None]
    return F.interpolate(t, size=(height, width), mode="bilinear", align_corners=False)[:, 0].numpy()


def _check_sizes(rgb, depth, mask, names) -> None:
    n, h, w = rgb.shape[:3]
    for key, arr in (("depth", depth), ("mask", mask)):
        if len(arr) != n:
            raise ValueError(f"{names[key]}: {len(arr)} frames, {names['rgb']} has {n}")
        if arr.shape[1:] != (h, w):
            raise ValueError(
                f"{names[key]}: frame size {arr.shape[1:]} differs from {names['rgb']}'s {(h, w)}"
            )


def _check_cameras(w2c, K, n, names) -> tuple[np.ndarray, np.ndarray]:
    w2c, K = np.asarray(w2c, np.float64), np.asarray(K, np.float64)
    if w2c.ndim != 3 or w2c.shape[1:] != (4, 4):
        raise ValueError(f"{names['w2c']}: expected (F, 4, 4), got {tuple(w2c.shape)}")
    if K.ndim != 3 or K.shape[1:] != (3, 3):
        raise ValueError(f"{names['K']}: expected (F, 3, 3), got {tuple(K.shape)}")
    for key, arr in (("w2c", w2c), ("K", K)):
        if len(arr) != n:
            raise ValueError(f"{names[key]}: {len(arr)} cameras, {names['rgb']} has {n} frames")
    geometry.check_transform(w2c, names["w2c"])
    geometry.check_intrinsics(K, names["K"])
    return w2c, K


def load_video_input(path: str | Path, width: int, height: int) -> VideoClip:
    """Read, check, resize and trim a posed RGB-D video (see the module docstring). A plain video file
    (format "video") has no depth or cameras: use :func:`detect_format` first."""
    path = Path(path)
    fmt = detect_format(path)
    if fmt == "video":
        raise ValueError(f"--input-video {path}: a plain video has no depth or cameras")
    if fmt == "gen3c_dir":
        rgb, depth, mask, w2c, K, names = load_gen3c_dir(path)
    elif fmt == "gen3c_pt":
        rgb, depth, mask, w2c, K, names = load_gen3c_pt(path)
    else:
        rgb, depth, mask, w2c, K, names = load_vipe(path, width, height)
    _check_sizes(rgb, depth, mask, names)
    n = len(rgb)
    w2c, K = _check_cameras(w2c, K, n, names)
    keep = valid_length(n, f"--input-video {path}")
    rgb, depth, mask, w2c, K = rgb[:keep], depth[:keep], mask[:keep], w2c[:keep], K[:keep]
    h0, w0 = rgb.shape[1:3]
    if (h0, w0) != (height, width):
        rgb = np.stack([io.resize_image(f, width, height) for f in rgb])
        depth = np.stack([io.resize_nearest(d, width, height) for d in depth])
        mask = np.stack([io.resize_nearest(m, width, height) for m in mask])
        K = np.stack([io.scale_intrinsics(k, (w0, h0), (width, height)) for k in K])
    depth = depth.astype(np.float32)
    return VideoClip(rgb, depth, mask.astype(bool) & np.isfinite(depth), w2c, K, fmt, n)


def load_object_track(path: str | Path, frames: int) -> np.ndarray:
    """``--object-track FILE.json``: {"poses": [...]} or a bare list, one 4x4 (nested or 16 numbers,
    row-major) object-to-world pose per input frame (rigid + uniform scale) -> (frames, 4, 4) float64.
    A track longer than the (trimmed) clip is trimmed the same way."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"--object-track {path}: not readable JSON ({exc})") from None
    poses = data.get("poses") if isinstance(data, dict) else data
    if not isinstance(poses, list):
        raise ValueError(f'--object-track {path}: expected a list of 4x4 poses or {{"poses": [...]}}')
    try:
        a = np.asarray(poses, dtype=np.float64).reshape(len(poses), 4, 4)
    except (TypeError, ValueError):
        raise ValueError(f"--object-track {path}: poses: each pose must be 4x4 (or 16 numbers)") from None
    if len(a) < frames:
        raise ValueError(f"--object-track {path}: poses: {len(a)} poses for {frames} frames")
    geometry.check_transform(a, f"--object-track {path}: poses", allow_scale=True)
    return a[:frames]


__all__ = ["VideoClip", "detect_format", "load_object_track", "load_video_input", "valid_length"]
