"""Object fidelity: how faithfully an output frame still shows an inserted object (pure numpy / OpenCV).

Inputs per frame, all at the video size: the cache's render of buffer slot 0 ``render (H, W, 3) uint8``
(objects fused in, so at an object's pixels it is the object's own render), its hole mask
``scene_mask (H, W)`` (1 = rendered), the object id map ``object_ids (H, W) int16`` (-1 = no object; the
object's visibility mask is ``object_ids == id``) and the generated frame ``output (H, W, 3) uint8``.

Per object and frame (definitions; docs/client.md has the user-facing version):

- ``gain`` (3,): per-channel colour match of the render to the output, the median of
  ``(output + 1) / (render + 1)`` over the scene ring around the object (pixels 3..10 px outside its
  silhouette, rendered, not an object), clipped to [0.5, 2]; 1 when the ring has fewer than 32 pixels. It carries the model's global
  lighting / white balance change, so a relit scene does not count as a changed object.
- ``color_error``: mean CIE76 delta E (Lab, L in 0..100) between the output and ``gain * render`` over the
  visible region eroded by 2 px (5x5 square), so anti-aliased and codec-smeared edges do not dominate.
  The output is first moved back by the estimated ``shift`` so that look and place are judged apart
  (a moved but intact object has a low colour error and a ``shift`` flag).
- ``ssim``: structural similarity (Wang et al. 2004: Gaussian window sigma 1.5, C1 = (0.01 * 255)^2,
  C2 = (0.03 * 255)^2) of the luma of the output and of ``gain * render``, with the local statistics
  taken only over the eroded region (normalised convolution), averaged over it (after the shift, as
  ``color_error``). Windows never mix in the background, which the model is free to repaint.
- ``silhouette``: the share of the object's silhouette (eroded by 1 px) that the output still shows as
  the object. A colour model decides it: a 16^3-bin RGB histogram of the object (``gain * render`` on
  its silhouette) against one of the local background (the output on the ring 3..12 px outside),
  smoothed over neighbouring bins; a pixel no longer shows the object when its output colour is
  background-like, P(background | colour) >= 0.5. Pixels whose own rendered colour is background-like
  (the object looks like its surroundings there) cannot be judged and are left out; ``judged`` is the
  share that was judged. None when under 20% could be judged. Recolouring or blur do not lower it (the
  object is still there); colour_error and ssim judge them.
- ``shift_px``: where the object is in the output: the offset (pixels, Euclidean, searched up to
  ``MAX_SHIFT`` px) at which the edge map of the render's object patch (visible region grown by 2 px, so
  the silhouette's edges count) best correlates with the output's (masked normalised cross-correlation);
  0 unless another offset beats the zero offset by more than 0.02. Edge maps ignore recolouring. None
  when under half the silhouette is shown (an erased object has no place).

An object with fewer than ``Thresholds.min_pixels`` pixels in its eroded region is not evaluated in that
frame (``None`` metrics, no flags).

Why not scikit-image: its ``structural_similarity`` has no mask (its windows straddle the silhouette and
score the repainted background), and the masked version is five Gaussian filters with cv2.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

COLOR_ERODE_PX = 2
SILHOUETTE_ERODE_PX = 1
RING_GAP_PX = 3
GAIN_RING_PX = 10
BACKGROUND_RING_PX = 12
MIN_RING_PIXELS = 32
GAIN_RANGE = (0.5, 2.0)
MAX_SHIFT = 8
MIN_JUDGED = 0.2
MIN_SHOWN_FOR_SHIFT = 0.5
SSIM_SIGMA = 1.5
_C1 = (0.01 * 255) ** 2
_C2 = (0.03 * 255) ** 2
METRICS = ("color_error", "ssim", "silhouette", "shift_px")


@dataclass(frozen=True)
class Thresholds:
    """A frame is flagged for an object when any metric is past its threshold (documented defaults).

    color_error: mean delta E above this ("color"); ~2.3 is a just-noticeable difference, H.264 at the
    client's quality costs 2.8 on the demo sneaker at 1280x704 (6.9 at 320x176), a 60 degree hue
    rotation ~40 (bench/object_fidelity_bench.py).
    ssim: below this ("structure"): the object's texture or shape changed (H.264 keeps > 0.9).
    silhouette: below this ("silhouette"): over 20% of the object is no longer shown.
    shift_px: above this ("shift"): the object moved more than 3 px from where the cache put it.
    min_pixels: eroded visible pixels below which the object is not evaluated in that frame.
    """

    color_error: float = 10.0
    ssim: float = 0.5
    silhouette: float = 0.8
    shift_px: float = 3.0
    min_pixels: int = 64

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class ObjectFrame:
    """One object's fidelity in one frame (None = not evaluated: too few visible pixels)."""

    object_id: int
    visible_px: int
    color_error: float | None = None
    ssim: float | None = None
    silhouette: float | None = None
    judged: float | None = None
    shift_px: float | None = None
    gain: tuple[float, float, float] | None = None
    flags: tuple[str, ...] = ()

    @property
    def evaluated(self) -> bool:
        return self.color_error is not None


# ---------------------------------------------------------------------------------------------------
# Masks


def erode(mask: np.ndarray, px: int) -> np.ndarray:
    """(H, W) bool eroded by ``px`` pixels (square (2 px + 1) kernel); the image border counts as outside."""
    if px <= 0:
        return mask.copy()
    k = np.ones((2 * px + 1, 2 * px + 1), np.uint8)
    return cv2.erode(mask.view(np.uint8), k, borderType=cv2.BORDER_CONSTANT, borderValue=0).astype(bool)


def dilate(mask: np.ndarray, px: int) -> np.ndarray:
    """(H, W) bool dilated by ``px`` pixels (square kernel)."""
    if px <= 0:
        return mask.copy()
    k = np.ones((2 * px + 1, 2 * px + 1), np.uint8)
    return cv2.dilate(mask.view(np.uint8), k).astype(bool)


def ring(mask: np.ndarray, inner_px: int, outer_px: int) -> np.ndarray:
    """Pixels more than ``inner_px`` and at most ``outer_px`` (square metric) outside ``mask``."""
    return dilate(mask, outer_px) & ~dilate(mask, inner_px)


def bbox(mask: np.ndarray, margin: int) -> tuple[slice, slice] | None:
    """The mask's bounding box grown by ``margin`` and clipped to the image; None for an empty mask."""
    ys, xs = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    if ys.size == 0:
        return None
    h, w = mask.shape
    return (slice(max(0, ys[0] - margin), min(h, ys[-1] + 1 + margin)),
            slice(max(0, xs[0] - margin), min(w, xs[-1] + 1 + margin)))  # fmt: skip


# ---------------------------------------------------------------------------------------------------
# Metrics (each on crops: (h, w, 3) uint8 / float32 images, (h, w) bool masks)


def ring_gain(render: np.ndarray, output: np.ndarray, ring_mask: np.ndarray) -> np.ndarray:
    """(3,) float64 per-channel median of ``(output + 1) / (render + 1)`` over ``ring_mask``, clipped to
    GAIN_RANGE; ones when the ring has too few pixels. The median ignores a minority of ring pixels that
    changed (the object moved into the ring, the model painted something new there)."""
    if int(ring_mask.sum()) < MIN_RING_PIXELS:
        return np.ones(3)
    ratio = (output[ring_mask].astype(np.float64) + 1.0) / (render[ring_mask].astype(np.float64) + 1.0)
    return np.clip(np.median(ratio, axis=0), *GAIN_RANGE)


def apply_gain(image: np.ndarray, gain: np.ndarray) -> np.ndarray:
    """(h, w, 3) uint8 * (3,) gain -> float32 in [0, 255]."""
    return np.clip(image.astype(np.float32) * gain.astype(np.float32), 0, 255)


def delta_e(a: np.ndarray, b: np.ndarray, region: np.ndarray) -> float:
    """Mean CIE76 delta E over ``region`` between RGB images ``a`` and ``b`` (uint8 or float in 0..255)."""

    def lab(img: np.ndarray) -> np.ndarray:  # only the region's pixels, as one (1, N, 3) row
        return cv2.cvtColor(np.asarray(img)[region].astype(np.float32)[None] / 255.0, cv2.COLOR_RGB2Lab)[0]

    la, lb = lab(a), lab(b)
    return float(np.sqrt(((la - lb) ** 2).sum(axis=1)).mean())


def _luma(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.asarray(image, np.float32), cv2.COLOR_RGB2GRAY)


def masked_ssim(a: np.ndarray, b: np.ndarray, region: np.ndarray, sigma: float = SSIM_SIGMA) -> float:
    """SSIM of the lumas of RGB ``a`` and ``b`` (0..255) with window statistics restricted to ``region``."""
    # float32: the variances' cancellation error (~1e-7 x 255^2) is far below C2 (58.5)
    x, y = _luma(a), _luma(b)
    w = region.astype(np.float32)

    def blur(v: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(v, (0, 0), sigma, borderType=cv2.BORDER_CONSTANT)

    norm = np.maximum(blur(w), 1e-6)
    mx, my = blur(w * x) / norm, blur(w * y) / norm
    vx = np.maximum(blur(w * x * x) / norm - mx * mx, 0)
    vy = np.maximum(blur(w * y * y) / norm - my * my, 0)
    cxy = blur(w * x * y) / norm - mx * my
    s = ((2 * mx * my + _C1) * (2 * cxy + _C2)) / ((mx * mx + my * my + _C1) * (vx + vy + _C2))
    return float(s[region].mean())


def _colour_index(image: np.ndarray) -> np.ndarray:
    q = (np.asarray(image).astype(np.int32) >> 4).clip(0, 15)  # 16 levels per channel
    return (q[..., 0] << 8) | (q[..., 1] << 4) | q[..., 2]


def _histogram(index: np.ndarray) -> np.ndarray:
    """Normalised 16^3 histogram, smoothed with a 3x3x3 box (tolerates ~16-level colour shifts)."""
    h = np.bincount(index, minlength=4096).astype(np.float64).reshape(16, 16, 16)
    p = np.pad(h, 1)
    s = sum(p[i : i + 16, j : j + 16, k : k + 16] for i in range(3) for j in range(3) for k in range(3))
    return (s / max(s.sum(), 1.0)).reshape(-1)


def silhouette_share(render: np.ndarray, output: np.ndarray, silhouette: np.ndarray,
                     background: np.ndarray) -> tuple[float | None, float]:  # fmt: skip
    """(share of the judged silhouette pixels that the output still shows as the object or None, share
    judged).

    render: the (colour-matched) render; silhouette: the object's pixels; background: where the output's
    local background is sampled. A colour c is background-like when P(background | c) =
    h_bg(c) / (h_obj(c) + h_bg(c)) >= 0.5 (colours in neither histogram are not). A silhouette pixel is
    judged when its rendered colour is not background-like, and still shown when its output colour is not
    either: an object that dissolved into its surroundings is gone, a recoloured or blurred one is still
    there (``color_error`` and ``ssim`` judge its look).
    """
    n = int(silhouette.sum())
    if n == 0:
        return None, 0.0
    rendered = _colour_index(render[silhouette])
    obj = _histogram(rendered)
    bg = _histogram(_colour_index(output[background])) if background.any() else np.zeros(4096)
    bg_like = bg / np.maximum(obj + bg, 1e-12) >= 0.5
    bg_like &= bg > 0
    judged = ~bg_like[rendered]
    share_judged = float(judged.mean())
    if share_judged < MIN_JUDGED:
        return None, share_judged
    shown = ~bg_like[_colour_index(output[silhouette])]
    return float(shown[judged].mean()), share_judged


def edge_map(image: np.ndarray) -> np.ndarray:
    """(h, w, 3) -> (h, w) float32: sum over channels of |d/dx| + |d/dy| (Sobel) after a sigma-1 blur.

    Edges sit where they sit whatever the colours: a recoloured object keeps its edge map, a moved one
    moves it.
    """
    img = cv2.GaussianBlur(np.asarray(image, np.float32), (0, 0), 1.0)
    gx = cv2.Sobel(img, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(img, cv2.CV_32F, 0, 1, ksize=3)
    return (np.abs(gx) + np.abs(gy)).sum(axis=2)


def estimate_shift(render: np.ndarray, output: np.ndarray, template_mask: np.ndarray,
                   max_shift: int = MAX_SHIFT) -> tuple[int, int]:  # fmt: skip
    """Offset (dy, dx) pixels of the render's masked patch in the output: the argmax of the masked
    normalised cross-correlation of their edge maps over offsets up to ``max_shift``; (0, 0) unless that
    maximum beats the zero offset's correlation by more than 0.02. Offsets are limited by the crop's border.
    """
    box = bbox(template_mask, 0)
    if box is None:
        return 0, 0
    ys, xs = box
    h, w = output.shape[:2]
    my = min(max_shift, ys.start, h - ys.stop)
    mx = min(max_shift, xs.start, w - xs.stop)
    er, eo = edge_map(render), edge_map(output)
    tpl = np.ascontiguousarray(er[ys, xs])
    m = np.ascontiguousarray(template_mask[ys, xs], np.float32)
    search = np.ascontiguousarray(eo[ys.start - my : ys.stop + my, xs.start - mx : xs.stop + mx])
    score = np.nan_to_num(cv2.matchTemplate(search, tpl, cv2.TM_CCORR_NORMED, mask=m), nan=-1.0)
    dy, dx = np.unravel_index(int(np.argmax(score)), score.shape)
    if not score[dy, dx] > score[my, mx] + 0.02:
        return 0, 0
    return int(dy - my), int(dx - mx)


# ---------------------------------------------------------------------------------------------------
# One frame


def measure_frame(render: np.ndarray, scene_mask: np.ndarray | None, object_ids: np.ndarray, output: np.ndarray,
                  object_list: list[int], thresholds: Thresholds = Thresholds()) -> list[ObjectFrame]:  # fmt: skip
    """Fidelity of each object in ``object_list`` in one frame (shapes in the module docstring)."""
    if render.shape != output.shape or render.shape[:2] != object_ids.shape:
        raise ValueError(
            f"render {render.shape}, output {output.shape} and object ids {object_ids.shape} differ"
        )
    scene_ok = object_ids < 0
    if scene_mask is not None:
        scene_ok &= scene_mask.astype(bool)
    margin = max(BACKGROUND_RING_PX, GAIN_RING_PX) + MAX_SHIFT + 8
    out = []
    for oid in object_list:
        visible = object_ids == oid
        box = bbox(visible, margin)
        if box is None:
            out.append(ObjectFrame(oid, 0))
            continue
        v, r, y, ok = visible[box], render[box], output[box], scene_ok[box]
        core = erode(v, COLOR_ERODE_PX)
        res = ObjectFrame(oid, int(v.sum()))
        if int(core.sum()) < thresholds.min_pixels:
            out.append(res)
            continue
        gain = ring_gain(r, y, ring(v, RING_GAP_PX, GAIN_RING_PX) & ok)
        matched = apply_gain(r, gain)
        res.gain = tuple(round(float(g), 4) for g in gain)
        res.silhouette, res.judged = silhouette_share(
            matched, y, erode(v, SILHOUETTE_ERODE_PX), ring(v, RING_GAP_PX, BACKGROUND_RING_PX)
        )
        dy, dx = estimate_shift(matched, y, dilate(v, 2) & (v | ok))
        if res.silhouette is None or res.silhouette >= MIN_SHOWN_FOR_SHIFT:
            res.shift_px = float(np.hypot(dy, dx))
        else:
            dy = dx = 0
        # The look is compared where the object is: the output moved back by the estimated offset.
        aligned = np.roll(y, (-dy, -dx), axis=(0, 1))
        res.color_error = delta_e(aligned, matched, core)
        res.ssim = masked_ssim(aligned, matched, core)
        res.flags = flags_for(res, thresholds)
        out.append(res)
    return out


def flags_for(m: ObjectFrame, t: Thresholds) -> tuple[str, ...]:
    """Names of the thresholds ``m`` is past: color, structure, silhouette, shift."""
    flags = []
    if m.color_error is not None and m.color_error > t.color_error:
        flags.append("color")
    if m.ssim is not None and m.ssim < t.ssim:
        flags.append("structure")
    if m.silhouette is not None and m.silhouette < t.silhouette:
        flags.append("silhouette")
    if m.shift_px is not None and m.shift_px > t.shift_px:
        flags.append("shift")
    return tuple(flags)


# ---------------------------------------------------------------------------------------------------
# Per video


def summarize(frames: list[int], per_frame: list[ObjectFrame]) -> dict:
    """Per-object summary over a video: evaluated and flagged frame counts, flag counts, and per metric the
    median and the worst value with its frame (``frames[i]`` is the global index of ``per_frame[i]``)."""
    worst_is_max = {"color_error": True, "ssim": False, "silhouette": False, "shift_px": True}
    evaluated = [(f, m) for f, m in zip(frames, per_frame, strict=True) if m.evaluated]
    flagged = [f for f, m in evaluated if m.flags]
    out: dict = {"frames": len(per_frame), "evaluated": len(evaluated), "flagged": len(flagged),
                 "flagged_frames": flagged, "flag_counts": {}}  # fmt: skip
    for _, m in evaluated:
        for name in m.flags:
            out["flag_counts"][name] = out["flag_counts"].get(name, 0) + 1
    for name in METRICS:
        vals = [(getattr(m, name), f) for f, m in evaluated if getattr(m, name) is not None]
        if not vals:
            out[name] = None
            continue
        arr = np.array([v for v, _ in vals])
        k = int(np.argmax(arr) if worst_is_max[name] else np.argmin(arr))
        out[name] = {"median": round(float(np.median(arr)), 4), "worst": round(float(arr[k]), 4),
                     "worst_frame": int(vals[k][1])}  # fmt: skip
    return out


def columns(frames: list[int], per_frame: list[ObjectFrame]) -> dict:
    """Per-frame values as columns (JSON-friendly; None where not evaluated)."""

    def r(v):
        return None if v is None else round(float(v), 4)

    return {
        "frame": list(frames),
        "visible_px": [m.visible_px for m in per_frame],
        **{name: [r(getattr(m, name)) for m in per_frame] for name in (*METRICS, "judged")},
        "gain": [None if m.gain is None else list(m.gain) for m in per_frame],
        "flags": [list(m.flags) for m in per_frame],
    }
