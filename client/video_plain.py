"""Plain-video input (``--input-video clip.mp4``): a video file without depth or cameras.

Frames (read at the ``inputs`` stage, no network):

* any file PyAV opens (.mp4, .mov, .webm, ...); every frame is scaled to cover the working size keeping
  its aspect ratio and centre-cropped (for a 16:9 clip at 1280x704 that is ViPE's resize to 720x1280 and
  crop to 704x1280; portrait clips are not squashed); trimmed to the longest 120 N + 1 frames
  (:func:`objvid.client.video_input.valid_length`), shorter clips refused with the nearest valid length.

Depth and cameras (the ``depth`` stage, :func:`estimate`):

* depth: the depth service (MoGe, ``Lift``) per frame, in batches of ``LIFT_BATCH`` frames; mask = the
  pixels with valid depth;
* cameras with ``--static-camera``: every w2c is the identity and K the per-element median of the depth
  model's per-frame K; scales are fitted to frame 0's depth (``video_depth.consistent_scales``);
* cameras otherwise: the multi-view geometry model of issue 14 (VGGT, ``LiftViews``) on **every frame, in
  windows** of ``POSE_WINDOW`` frames that overlap by one frame. Each window has its own frame of reference
  and scale; window k is chained onto the previous one through the shared frame: its scale is the median
  ratio of the two windows' depths of that frame (the same image, so pixel-aligned), its poses are
  re-expressed from the shared frame's camera (:func:`chain_windows`). The chained depths are the scale
  reference of every frame; K is the median of the model's per-frame K. The choice over keyframes plus
  pose interpolation: every frame gets a real pose and a real reference depth (no interpolation error for
  a hand-held camera), the cost stays linear in the clip length (F + F / (window - 1) model frames) and no
  request exceeds the depth service's ``max_images`` (32 by default).

Scales are normalised so that frame 0 keeps the depth model's own scale (metric for MoGe-2): the posed
path multiplies every factor and every camera translation by 1 / (frame 0's factor).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from objvid.client.errors import ServiceError, service_reason
from objvid.client.video_depth import consistent_scales, scale_to_reference
from objvid.client.video_input import valid_length


def _env_int(name: str, default: int, low: int) -> int:
    raw = os.environ.get(name, "")
    try:
        value = int(raw) if raw else default
    except ValueError:
        raise ValueError(f"{name}: expected an integer, got {raw!r}") from None
    if value < low:
        raise ValueError(f"{name}: must be >= {low}, got {value}")
    return value


#: Frames per ``Lift`` request (the depth service's ``max_images`` is 32 by default).
LIFT_BATCH = 16
#: Frames per ``LiftViews`` window (consecutive windows share one frame).
POSE_WINDOW = 32


def lift_batch() -> int:
    return _env_int("OBJVID_CLIENT_VIDEO_LIFT_BATCH", LIFT_BATCH, 1)


def pose_window() -> int:
    return _env_int("OBJVID_CLIENT_VIDEO_POSE_WINDOW", POSE_WINDOW, 2)


# ---------------------------------------------------------------------------------------------------
# Frames


def fit_frame(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    """(h, w, 3) uint8 -> (height, width, 3) uint8: scaled (bilinear) to cover width x height keeping the
    aspect ratio, then centre-cropped."""
    h, w = frame.shape[:2]
    if (h, w) == (height, width):
        return frame
    from PIL import Image

    s = max(width / w, height / h)
    rw, rh = max(width, round(w * s)), max(height, round(h * s))
    img = np.asarray(Image.fromarray(frame).resize((rw, rh), Image.BILINEAR))
    top, left = (rh - height) // 2, (rw - width) // 2
    return np.ascontiguousarray(img[top : top + height, left : left + width])


def read_plain_video(path, width: int, height: int, max_frames: int | None = None) -> tuple[np.ndarray, int]:
    """Decode a video file -> (frames (F, height, width, 3) uint8 fitted by :func:`fit_frame` and trimmed
    to 120 N + 1 (at most ``max_frames``), the file's frame count). Two passes: count, then keep only the
    frames used. ValueError naming the file (not a video, no video stream, too short)."""
    from objvid.client.video import _av

    av = _av()
    where = f"--input-video {path}"
    total = 0
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ValueError(f"{where}: no video stream")
            for _ in container.decode(container.streams.video[0]):
                total += 1
    except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{where}: not a video file PyAV can read ({exc})") from None
    keep = valid_length(total, where)
    if max_frames is not None and keep > max_frames:
        keep = valid_length(max_frames, where)
    out = np.empty((keep, height, width, 3), np.uint8)
    n = 0
    try:
        with av.open(str(path)) as container:
            for frame in container.decode(container.streams.video[0]):
                out[n] = fit_frame(frame.to_ndarray(format="rgb24"), width, height)
                n += 1
                if n == keep:
                    break
    except av.FFmpegError as exc:
        raise ValueError(f"{where}: decoding failed at frame {n} ({exc})") from None
    if n != keep:
        raise ValueError(f"{where}: only {n} of {keep} frames could be decoded")
    return out, total


# ---------------------------------------------------------------------------------------------------
# Geometry


def windows(frames: int, size: int) -> list[tuple[int, int]]:
    """[(start, end)) windows of at most ``size`` frames covering 0..frames-1; each starts at the previous
    window's last frame (the shared frame)."""
    if size < 2:
        raise ValueError(f"pose window: must be >= 2 frames, got {size}")
    out = [(0, min(size, frames))]
    while out[-1][1] < frames:
        start = out[-1][1] - 1
        out.append((start, min(start + size, frames)))
    return out


def _scaled(T: np.ndarray, a: float) -> np.ndarray:
    out = np.array(T, dtype=np.float64)
    out[..., :3, 3] *= a
    return out


@dataclass
class WindowResult:
    """The geometry model's answer for one window of m frames: w2c (m, 4, 4) in the window's own frame
    of reference and scale, depth (m, H, W) float32 in that scale, mask (m, H, W) bool, K (m, 3, 3)."""

    w2c: np.ndarray
    depth: np.ndarray
    mask: np.ndarray
    K: np.ndarray


def chain_windows(parts: Sequence[WindowResult], spans: Sequence[tuple[int, int]]) -> dict:
    """Chain per-window geometry into one frame of reference (frame 0's camera) and one scale.

    Window k (frames [s, e)) shares frame s with window k - 1. Its scale factor a_k is the median of
    (chained depth of frame s) / (window k's depth of frame s); frame j of the window gets
    ``w2c_j = S(a_k) (w2c'_j inv(w2c'_s)) w2c_s`` (S scales the translation) and reference depth
    ``a_k depth'_j``. -> {"w2c" (F, 4, 4), "depth" (F, H, W) float32, "mask" (F, H, W), "K" (F, 3, 3),
    "joins": [a_k for k >= 1]}.
    """
    first = parts[0]
    F = spans[-1][1]
    H, W = first.depth.shape[1:]
    w2c = np.zeros((F, 4, 4))
    depth = np.zeros((F, H, W), np.float32)
    mask = np.zeros((F, H, W), bool)
    K = np.zeros((F, 3, 3))
    joins = []
    for k, (part, (s, e)) in enumerate(zip(parts, spans, strict=True)):
        if len(part.w2c) != e - s:
            raise ValueError(f"geometry model: window {k} (frames {s}-{e - 1}): {len(part.w2c)} views")
        if k == 0:
            a, base = 1.0, np.eye(4)
        else:
            a = scale_to_reference(part.depth[0], depth[s], part.mask[0] & mask[s],
                                   f"geometry model: frame {s} (window {k - 1} and {k})")  # fmt: skip
            if not (np.isfinite(a) and a > 0):
                raise ValueError(f"geometry model: frame {s}: windows {k - 1} and {k} disagree (scale {a})")
            joins.append(a)
            base = w2c[s]
        rel = part.w2c @ np.linalg.inv(part.w2c[0])  # window frame j from the window's first camera
        w2c[s:e] = _scaled(rel, a) @ base
        depth[s:e] = a * part.depth
        mask[s:e] = part.mask
        K[s:e] = part.K
    w2c[0] = np.eye(4)
    return {"w2c": w2c, "depth": depth, "mask": mask, "K": K, "joins": joins}


def median_K(Ks: np.ndarray) -> np.ndarray:
    """One K for the clip: the per-element median of (F, 3, 3) per-frame intrinsics."""
    K = np.median(np.asarray(Ks, np.float64), axis=0)
    K[2] = [0.0, 0.0, 1.0]
    K[0, 1] = K[1, 0] = 0.0
    return K


def fit_scales(depths: np.ndarray, masks: np.ndarray, reference: dict | None) -> tuple[np.ndarray, float]:
    """Per-frame factors (F,) normalised so frame 0's is 1, and the factor (reference units per depth-model
    unit at frame 0) by which the reference's camera translations are divided. reference: the chained
    geometry (:func:`chain_windows`) or None (static camera)."""
    if reference is None:
        return consistent_scales(depths, masks), 1.0
    raw = consistent_scales(depths, masks & reference["mask"], reference["depth"])
    return raw / raw[0], float(raw[0])


# ---------------------------------------------------------------------------------------------------
# The depth stage


def _call(fn: Callable, what: str, path, static: bool):
    """A service call with the plain-video path's words on failure."""
    try:
        return fn()
    except ServiceError as err:
        no_service = err.code == "UNAVAILABLE" or err.method == "connect"  # unreachable / no address given
        if what == "poses" and not no_service and err.code in ("FAILED_PRECONDITION", "UNIMPLEMENTED"):
            raise ValueError(
                f"--input-video {path}: camera poses of a plain video need the depth service's geometry "
                f"model (LiftViews: {err.details}); start it with --geometry-model (e.g. facebook/VGGT-1B), "
                "or give --static-camera for a video shot from a fixed camera"
            ) from None
        if no_service or err.code == "UNIMPLEMENTED":
            raise ValueError(
                f"--input-video {path}: a plain video needs the depth service for per-frame depth"
                + ("" if static else " and camera poses")
                + f" ({service_reason(err)}); give --depth-addr HOST:PORT, or let the client start one "
                "(--depth-model" + (")" if static else ", --geometry-model)")
            ) from None
        raise


@dataclass
class PlainGeometry:
    """The plain video lifted: depth (F, H, W) float32 z-depth (invalid = 0), mask (F, H, W) bool,
    w2c (F, 4, 4), K (F, 3, 3) (one K repeated), and the manifest's ``depth`` record."""

    depth: np.ndarray
    mask: np.ndarray
    w2c: np.ndarray
    K: np.ndarray
    record: dict


def estimate(rgb: np.ndarray, lift, static: bool, path, progress=None) -> PlainGeometry:
    """Depth, masks and cameras of a plain video's frames (F, H, W, 3) uint8 at the working size.

    lift: ``lift(images, width, height, omit_image=...)`` (the depth service's Lift) with ``lift.posed``
    (LiftViews); progress: ``progress(done, total, text)`` or None.
    """
    F, H, W = rgb.shape[:3]
    batch = lift_batch()
    spans = [] if static else windows(F, pose_window())
    total = -(-F // batch) + len(spans)
    report = progress or (lambda *a: None)
    reference, geometry = None, {}
    if not static:
        parts = []
        for k, (s, e) in enumerate(spans):
            posed = _call(lambda s=s, e=e: lift.posed(list(rgb[s:e]), W, H), "poses", path, static)
            if len(posed) != e - s:
                raise ValueError(f"geometry model returned {len(posed)} views for frames {s}-{e - 1}")
            parts.append(WindowResult(np.stack([p.w2c for p in posed]), np.stack([p.depth for p in posed]),
                                      np.stack([p.mask for p in posed]), np.stack([p.K for p in posed])))  # fmt: skip
            report(k + 1, total, f"poses: frames {s}-{e - 1} of {F}")
        reference = chain_windows(parts, spans)
        geometry = {"geometry_model": posed[0].model, "pose_windows": [list(w) for w in spans],
                    "window_scales": reference["joins"]}  # fmt: skip
    depths = np.zeros((F, H, W), np.float32)
    masks = np.zeros((F, H, W), bool)
    Ks = np.zeros((F, 3, 3))
    model = ""
    for b, s in enumerate(range(0, F, batch)):
        views = _call(
            lambda s=s: lift(list(rgb[s : s + batch]), W, H, omit_image=True), "depth", path, static
        )
        for i, v in enumerate(views):
            if v.depth.shape != (H, W):
                raise ValueError(
                    f"depth service returned frame {s + i} at {v.depth.shape}, expected {(H, W)}"
                )
            ok = v.mask & np.isfinite(v.depth) & (v.depth > 0)
            depths[s + i], masks[s + i], Ks[s + i] = np.where(ok, v.depth, 0.0), ok, v.K
        model = views[0].model
        report(len(spans) + b + 1, total, f"depth: frames {s}-{min(s + batch, F) - 1} of {F}")
    record = {"source": "service", "model": model, "static_camera": static, "lift_batch": batch,
              **geometry}  # fmt: skip
    scales, unit = fit_scales(depths, masks, reference)
    depths *= scales[:, None, None].astype(np.float32)
    if reference is None:
        w2c, K = np.repeat(np.eye(4)[None], F, 0), median_K(Ks)
    else:
        w2c, K = _scaled(reference["w2c"], 1.0 / unit), median_K(reference["K"])
    record.update(scales=scales.tolist(), K=K.tolist())
    return PlainGeometry(depths, masks, w2c, np.repeat(K[None], F, 0), record)


__all__ = ["PlainGeometry", "WindowResult", "chain_windows", "estimate", "fit_frame", "fit_scales",
           "read_plain_video", "windows"]  # fmt: skip
