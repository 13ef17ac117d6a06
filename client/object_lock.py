"""Object lock: blend the objects' cache render back over a generated frame (pure numpy / OpenCV).

``out = (1 - w) * output + w * gain * render`` per pixel, where

- ``w = alpha * min(1, d / (feather + 1))`` and ``d`` is the Euclidean distance (pixels) from the pixel
  to the nearest pixel that shows no object in the render (``cv2.distanceTransform``; pixels outside
  every object have d = 0). The weight ramps up over the ``feather`` pixels inside the silhouette and is
  exactly ``alpha`` deeper inside; pixels that show no object are never changed (bit-exact).
- ``gain`` is the object's colour match (:func:`objvid.client.fidelity.ring_gain`): the per-channel ratio
  of the output to the render on the scene ring around that object, so the model's lighting and white
  balance carry over to the locked object. One gain per object and frame.

At ``alpha = 1`` the pixels deeper than ``feather`` px inside an object equal ``round(gain * render)``.
The lock works on any (T, H, W, 3) chunk with its slot-0 renders and object ids, whatever produced the
renders (single image, posed views, video input): callers pass only arrays.
"""

from __future__ import annotations

import cv2
import numpy as np

from objvid.client import fidelity as fd

DEFAULT_FEATHER_PX = 2.0


def check_alpha(alpha: float) -> float:
    """ValueError unless 0 <= alpha <= 1 (the ``--object-lock`` value)."""
    if (
        isinstance(alpha, bool)
        or not isinstance(alpha, int | float)
        or not np.isfinite(alpha)
        or not 0 <= alpha <= 1
    ):
        raise ValueError(f"--object-lock must be a number in [0, 1] (0 = off), got {alpha!r}")
    return float(alpha)


def check_feather(feather: float) -> float:
    """ValueError unless 0 <= feather <= 64 pixels (``--object-lock-feather``)."""
    if isinstance(feather, bool) or not isinstance(feather, int | float) or not np.isfinite(feather) \
            or not 0 <= feather <= 64:  # fmt: skip
        raise ValueError(f"--object-lock-feather must be in [0, 64] pixels, got {feather!r}")
    return float(feather)


def lock_weights(objects: np.ndarray, alpha: float, feather: float = DEFAULT_FEATHER_PX) -> np.ndarray:
    """(H, W) bool object pixels -> (H, W) float32 blend weights in [0, alpha] (module docstring)."""
    d = cv2.distanceTransform(objects.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return (alpha * np.minimum(1.0, d / (feather + 1.0))).astype(np.float32)


def lock_frame(output: np.ndarray, render: np.ndarray, object_ids: np.ndarray, scene_mask: np.ndarray | None,
               alpha: float, feather: float = DEFAULT_FEATHER_PX) -> tuple[np.ndarray, dict[int, list[float]]]:  # fmt: skip
    """One frame: output, render (H, W, 3) uint8, object_ids (H, W) int (-1 = none), scene_mask (H, W)
    (1 = rendered; None = all) -> (locked (H, W, 3) uint8, {object id: [gain r, g, b]})."""
    if output.shape != render.shape or output.shape[:2] != object_ids.shape:
        raise ValueError(
            f"output {output.shape}, render {render.shape}, object ids {object_ids.shape} differ"
        )
    objects = object_ids >= 0
    if alpha <= 0 or not objects.any():
        return output, {}
    # Work on the objects' bounding box (grown by the colour ring); nothing outside it changes.
    box = fd.bbox(objects, fd.GAIN_RING_PX + 1)
    ids, obj, out, ren = object_ids[box], objects[box], output[box], render[box]
    scene_ok = ~obj if scene_mask is None else ~obj & scene_mask[box].astype(bool)
    gains = np.ones(ids.shape + (3,), np.float32)
    used: dict[int, list[float]] = {}
    for oid in np.unique(ids[obj]).tolist():
        visible = ids == oid
        g = fd.ring_gain(ren, out, fd.ring(visible, fd.RING_GAP_PX, fd.GAIN_RING_PX) & scene_ok)
        gains[visible] = g.astype(np.float32)
        used[int(oid)] = [round(float(x), 4) for x in g]
    w = lock_weights(obj, alpha, feather)
    inside = w > 0
    target = np.clip(ren[inside].astype(np.float32) * gains[inside], 0, 255)
    ww = w[inside][:, None]
    locked = output.copy()
    crop = locked[box]
    crop[inside] = np.rint((1 - ww) * out[inside].astype(np.float32) + ww * target).astype(np.uint8)
    return locked, used


def lock_chunk(video: np.ndarray, renders: np.ndarray, object_ids: np.ndarray, scene_masks: np.ndarray | None,
               alpha: float, feather: float = DEFAULT_FEATHER_PX) -> tuple[np.ndarray, list[dict[int, list[float]]]]:  # fmt: skip
    """A chunk: video, renders (T, H, W, 3) uint8 (buffer slot 0), object_ids (T, H, W), scene_masks
    (T, H, W) or None -> (locked video (T, H, W, 3) uint8, per-frame gains)."""
    if alpha <= 0:
        return video, [{} for _ in range(len(video))]
    out = np.array(video, copy=True)  # one copy of the chunk; frames are replaced one at a time
    gains = []
    for t in range(len(video)):
        mask = None if scene_masks is None else scene_masks[t]
        out[t], g = lock_frame(video[t], renders[t], object_ids[t], mask, alpha, feather)
        gains.append(g)
    return out, gains
