"""GEN3C's depth-lifting conventions as a pure core (no gRPC, no model loading).

GEN3C (``_predict_moge_depth``) lifts one RGB image like this:

1. resize the uint8 image to the inference size 720x1280 (``cv2.resize``, bilinear) and scale to [0, 1];
2. run MoGe: depth (H, W) with +inf where masked, a bool validity mask, normalised intrinsics;
3. masked depth -> 1000;
4. resize to the working size 704x1280: depth bilinear (``align_corners=False``), mask nearest, image
   bilinear; scale K (fx, cx by the width ratio; fy, cy by the height ratio), in pixels;
5. NaN depth -> 1e4, then clamp to [0, 1e4].

Sizes are (height, width) tuples throughout; images are uint8 RGB.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

#: MoGe inference size GEN3C uses (H, W).
GEN3C_INFER_HW = (720, 1280)
#: GEN3C working (diffusion) resolution (H, W).
GEN3C_WORKING_HW = (704, 1280)
#: Depth given to pixels the model marks invalid (sky, undefined geometry).
MASKED_DEPTH = 1000.0
#: Depth given to NaN pixels; also the clamp maximum.
NAN_DEPTH = 1e4
MAX_DEPTH = 1e4
#: keep_aspect rounds the derived working height to this multiple.
ASPECT_MULTIPLE = 16


@dataclass(frozen=True)
class Prediction:
    """A model's raw output for a batch at the inference size (h, w).

    depth: (B, h, w) float32, +inf/NaN allowed; mask: (B, h, w) bool, True = valid;
    intrinsics: (B, 3, 3) float32, normalised (fx in units of w, fy of h, cx = cy = 0.5).
    """

    depth: torch.Tensor
    mask: torch.Tensor
    intrinsics: torch.Tensor


#: Anything that maps (B, 3, h, w) float32 in [0, 1] on its device to a Prediction.
Predictor = Callable[[torch.Tensor], Prediction]


@dataclass(frozen=True)
class LiftedView:
    """One image lifted at the working size (H, W).

    depth: (H, W) float32, cleaned (masked -> 1000, NaN -> 1e4, clamp [0, 1e4]); mask: (H, W) bool, the
    model's validity mask (nearest resize); intrinsics: (3, 3) float64 K in pixels at (H, W);
    image: (H, W, 3) uint8, the input resized to (H, W) (bilinear).
    """

    depth: np.ndarray
    mask: np.ndarray
    intrinsics: np.ndarray
    image: np.ndarray

    @property
    def height(self) -> int:
        return int(self.depth.shape[0])

    @property
    def width(self) -> int:
        return int(self.depth.shape[1])


# ---------------------------------------------------------------------------------------------------
# Sizes


def round_to_multiple(value: float, multiple: int = ASPECT_MULTIPLE) -> int:
    """Nearest positive multiple of ``multiple`` (halves round up)."""
    return max(multiple, int(math.floor(value / multiple + 0.5)) * multiple)


def working_size(
    image_hw: tuple[int, int], width: int, height: int, keep_aspect: bool, default_hw: tuple[int, int]
) -> tuple[int, int]:
    """Working (H, W) for one image.

    width/height 0 means ``default_hw``. With ``keep_aspect`` the width is kept and the height follows the
    image's aspect ratio, rounded to a multiple of 16; ``height`` must then be 0. Raises ValueError.
    """
    if width < 0 or height < 0:
        raise ValueError(f"width/height: must be >= 0, got {width}x{height}")
    if keep_aspect:
        if height:
            raise ValueError(
                "height: must be 0 with keep_aspect (the height follows the image's aspect ratio)"
            )
        w = width or default_hw[1]
        ih, iw = image_hw
        return round_to_multiple(w * ih / iw), w
    if bool(width) != bool(height):
        raise ValueError(f"width/height: set both or neither (0 = server default), got {width}x{height}")
    return (height, width) if width else tuple(default_hw)


def inference_size(
    image_hw: tuple[int, int], keep_aspect: bool, infer_hw: tuple[int, int]
) -> tuple[int, int]:
    """Size (h, w) the model sees: ``infer_hw`` (GEN3C squashes every image to it), or with ``keep_aspect``
    the image's aspect ratio at the same pixel area (16:9 inputs give exactly ``infer_hw``)."""
    if not keep_aspect:
        return tuple(infer_hw)
    area = infer_hw[0] * infer_hw[1]
    ratio = image_hw[0] / image_hw[1]
    return max(1, round(math.sqrt(area * ratio))), max(1, round(math.sqrt(area / ratio)))


# ---------------------------------------------------------------------------------------------------
# Conventions


def resize_for_inference(rgb: np.ndarray, infer_hw: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) uint8 -> (h, w, 3) uint8 with ``cv2.resize`` bilinear, as GEN3C; no copy if already (h, w)."""
    if rgb.shape[:2] == tuple(infer_hw):
        return rgb
    return cv2.resize(rgb, (infer_hw[1], infer_hw[0]), interpolation=cv2.INTER_LINEAR)


def clean_depth(depth, mask, out_hw: tuple[int, int] | None = None) -> torch.Tensor:
    """GEN3C's depth cleaning: masked -> 1000, optional bilinear resize, NaN -> 1e4, clamp [0, 1e4].

    depth: (B, h, w) or (h, w) float (numpy or torch; +inf/NaN allowed); mask: same shape, bool (True =
    valid). out_hw: resize to (H, W) between the two steps (``align_corners=False``), as upstream does.
    Returns float32 torch, (B, H, W) or (H, W) like the input. +inf (unmasked) ends at 1e4, -inf at 0.
    """
    depth = torch.as_tensor(depth)
    mask = torch.as_tensor(mask, device=depth.device)
    if depth.shape != mask.shape:
        raise ValueError(f"mask: shape {list(mask.shape)} does not match depth {list(depth.shape)}")
    squeeze = depth.dim() == 2
    d = depth.float().unsqueeze(0) if squeeze else depth.float()
    m = mask.bool().unsqueeze(0) if squeeze else mask.bool()
    d = d.masked_fill(~m, MASKED_DEPTH)  # upstream: torch.where(mask == 0, 1000, depth)
    if out_hw is not None and tuple(out_hw) != tuple(d.shape[-2:]):
        d = F.interpolate(d.unsqueeze(1), size=tuple(out_hw), mode="bilinear", align_corners=False).squeeze(1)
    d = torch.nan_to_num(d, nan=NAN_DEPTH).clamp_(0.0, MAX_DEPTH)
    return d.squeeze(0) if squeeze else d


def resize_mask(mask: torch.Tensor, out_hw: tuple[int, int]) -> torch.Tensor:
    """(B, h, w) bool -> (B, H, W) bool, nearest (PyTorch's 'nearest', as GEN3C)."""
    if tuple(mask.shape[-2:]) == tuple(out_hw):
        return mask
    m = F.interpolate(mask.unsqueeze(1).float(), size=tuple(out_hw), mode="nearest")
    return m.squeeze(1).bool()


def resize_image(images: torch.Tensor, out_hw: tuple[int, int]) -> torch.Tensor:
    """(B, 3, h, w) float in [0, 1] -> (B, H, W, 3) uint8, bilinear (``align_corners=False``), rounded."""
    x = images
    if tuple(x.shape[-2:]) != tuple(out_hw):
        x = F.interpolate(x, size=tuple(out_hw), mode="bilinear", align_corners=False)
    return x.mul(255.0).round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1)


def scale_intrinsics(k_norm, infer_hw: tuple[int, int], out_hw: tuple[int, int]) -> np.ndarray:
    """Normalised K (B, 3, 3) or (3, 3) -> pixel K at ``out_hw``, float64 numpy.

    As GEN3C: to pixels at the inference size (fx, cx x w; fy, cy x h), then fx, cx x (W / w) and
    fy, cy x (H / h). With MoGe's cx = cy = 0.5 this gives cx = W / 2, cy = H / 2.
    """
    k = torch.as_tensor(k_norm).detach().to("cpu", torch.float64).numpy().copy()
    (h, w), (H, W) = infer_hw, out_hw
    for (row, col), size, ratio in (
        ((0, 0), w, W / w),
        ((0, 2), w, W / w),
        ((1, 1), h, H / h),
        ((1, 2), h, H / h),
    ):
        k[..., row, col] *= size  # normalised -> pixels at the inference size
        k[..., row, col] *= ratio  # -> pixels at the working size
    return k


def images_to_tensor(images: Sequence[np.ndarray], device: torch.device) -> torch.Tensor:
    """Same-size (h, w, 3) uint8 arrays -> (B, 3, h, w) float32 in [0, 1] on ``device`` (one upload)."""
    device = torch.device(device)
    pinned = device.type == "cuda"
    batch = torch.empty((len(images), *images[0].shape), dtype=torch.uint8, pin_memory=pinned)
    for i, im in enumerate(images):
        batch[i].numpy()[...] = im  # one host copy, straight into (pinned) staging memory
    batch = batch.to(device, non_blocking=pinned)
    return batch.permute(0, 3, 1, 2).float().div_(255.0)


@dataclass
class HostCopies:
    """Device -> host copies in flight: ``host`` tensors (pinned on CUDA) valid once ``wait()`` returns.

    ``start`` queues the copies on the current stream and records an event after them, so the thread that
    queued them can move on (the inference thread starts the next batch) while another one waits.
    """

    host: list[torch.Tensor]
    done: torch.cuda.Event | None

    @classmethod
    def start(cls, tensors: Sequence[torch.Tensor]) -> HostCopies:
        cuda = [t.device for t in tensors if t.device.type == "cuda"]
        if not cuda:
            return cls(list(tensors), None)
        host = [torch.empty(t.shape, dtype=t.dtype, pin_memory=True) for t in tensors]
        for h, t in zip(host, tensors, strict=True):
            h.copy_(t, non_blocking=True)
        done = torch.cuda.Event()
        done.record(torch.cuda.current_stream(cuda[0]))
        return cls(host, done)

    def wait(self) -> list[torch.Tensor]:
        """Block until the copies landed (releases the GIL while waiting); returns ``host``."""
        if self.done is not None:
            self.done.synchronize()
        return self.host


@dataclass
class PendingLift:
    """A lifted batch whose outputs are still being copied to the host; ``result()`` waits for them.

    copies: depth (B, H, W) float32, mask (B, H, W) bool, image (B, H, W, 3) uint8, normalised
    intrinsics (B, 3, 3) float32; infer_hw / out_hw: (h, w) the model saw and (H, W) of the outputs.
    """

    copies: HostCopies
    infer_hw: tuple[int, int]
    out_hw: tuple[int, int]

    def result(self) -> list[LiftedView]:
        depth, mask, rgb, k_norm = self.copies.wait()
        depth, mask, rgb = depth.numpy(), mask.numpy(), rgb.numpy()
        ks = scale_intrinsics(k_norm, self.infer_hw, self.out_hw)
        return [LiftedView(depth[i], mask[i], ks[i], rgb[i]) for i in range(len(ks))]


def start_lift(
    predictor: Predictor, images: Sequence[np.ndarray], out_hw: tuple[int, int], device
) -> PendingLift:
    """Upload, model call and GEN3C post-processing on the device; the downloads are left in flight.

    images: B arrays (h, w, 3) uint8 already at the inference size (see ``resize_for_inference``): one
    upload, one model call. ``PendingLift.result()`` gives B views at ``out_hw`` (H, W); it may run on
    another thread, so the caller can start the next batch while this one downloads.
    """
    if not images:
        raise ValueError("images: empty batch")
    infer_hw = tuple(images[0].shape[:2])
    if any(im.shape != images[0].shape for im in images):
        raise ValueError("images: a batch must share one inference size")
    x = images_to_tensor(images, device)
    pred = predictor(x)
    depth = clean_depth(pred.depth, pred.mask, out_hw)
    mask = resize_mask(pred.mask.bool(), out_hw)
    rgb = resize_image(x, out_hw).contiguous()
    k_norm = pred.intrinsics.float().contiguous()
    return PendingLift(HostCopies.start([depth, mask, rgb, k_norm]), infer_hw, tuple(out_hw))


def lift_batch(
    predictor: Predictor, images: Sequence[np.ndarray], out_hw: tuple[int, int], device
) -> list[LiftedView]:
    """Lift same-size images already at the inference size (see ``resize_for_inference``).

    images: B arrays (h, w, 3) uint8. Returns B views at ``out_hw`` (H, W). One model call, one upload,
    one download per output (``start_lift`` then ``result()``).
    """
    return start_lift(predictor, images, out_hw, device).result()
