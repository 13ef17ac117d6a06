"""Multi-view geometry (``LiftViews``): N images of one static scene -> per view depth, confidence mask,
K and w2c (OpenCV, view 0 = identity) at the working size, from VGGT (``objvid.depth.vggt``).

Steps (the multi-view fork's VGGT use, reference 5.1, with its padding quirk avoided):
1. each image is resized (squashed) to the working size W x H, then to the model size: the longer side
   = the checkpoint's ``img_size`` (518 for VGGT-1B), the other side rounded to a multiple of the patch
   (14), e.g. 1280 x 704 -> 518 x 280;
2. VGGT runs on all N views at once (bf16 autocast on CUDA, float32 on CPU);
3. pose encodings -> w2c and K at the model size; K is scaled to the working size per axis; every w2c
   is re-expressed in view 0's camera frame (view 0 = identity exactly);
4. depth and confidence are resized bilinearly to the working size; the mask keeps pixels whose
   confidence is at least the view's ``confidence_percentile``-th percentile (VGGT's demo filters by
   confidence percentile too) and whose depth is finite and > 0.

Scene units: VGGT's, normalised in training so that the mean distance of the scene points from the first
camera is about 1. ``--movement-distance`` (x center depth 1.0) is therefore a fraction of that mean
distance, not metres and not MoGe's units.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from objvid.depth.model import ModelLoadError, pick_device, resolve_checkpoint

log = logging.getLogger("objvid.depth.geometry")

DEFAULT_GEOMETRY_MODEL = "facebook/VGGT-1B"
DEFAULT_CONFIDENCE_PERCENTILE = 25.0
IGNORED_PREFIXES = ("track_head.",)  # point tracking: not built here


@dataclass
class PosedView:
    """One view at the working size: depth (H, W) float32 z in scene units, mask (H, W) bool,
    confidence (H, W) float32 (>= 1), K (3, 3) and w2c (4, 4) float64 (OpenCV, view 0 = identity),
    image (H, W, 3) uint8."""

    depth: np.ndarray
    mask: np.ndarray
    confidence: np.ndarray
    K: np.ndarray
    w2c: np.ndarray
    image: np.ndarray


def model_size(working_hw: tuple[int, int], img_size: int, patch: int) -> tuple[int, int]:
    """(h, w) of the model input: longer side ``img_size``, the other rounded to a multiple of ``patch``."""
    H, W = working_hw
    if W >= H:
        return max(patch, int(round(H * img_size / W / patch)) * patch), img_size
    return img_size, max(patch, int(round(W * img_size / H / patch)) * patch)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A VGGT state dict from ``model.pt`` (torch.save of the state dict, or {"model": state dict}) or
    ``*.safetensors``. ModelLoadError naming the file on anything unreadable."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(path))
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:
        raise ModelLoadError(
            f"geometry model: cannot read checkpoint {path}: {type(exc).__name__}: {exc}"
        ) from exc
    if isinstance(sd, dict) and isinstance(sd.get("model"), dict):
        sd = sd["model"]
    if not isinstance(sd, dict) or "aggregator.camera_token" not in sd:
        raise ModelLoadError(
            f"geometry model: {path} is not a VGGT checkpoint (no 'aggregator.camera_token'; expected the "
            "state dict of facebook/VGGT-1B model.pt)"
        )
    return sd


def build_from_state_dict(sd: dict, path: Path | str = "<state dict>"):
    """The VGGT network with ``sd`` loaded strictly (``track_head.*`` dropped). ModelLoadError on a mismatch."""
    from objvid.depth.vggt import VGGT, VGGTConfig

    sd = {k: v for k, v in sd.items() if not k.startswith(IGNORED_PREFIXES)}
    try:
        cfg = VGGTConfig.from_state_dict(sd)
        net = VGGT(cfg)
        missing, unexpected = net.load_state_dict(sd, strict=False)
    except Exception as exc:
        raise ModelLoadError(
            f"geometry model: {path} does not fit VGGT: {type(exc).__name__}: {exc}"
        ) from exc
    if missing or unexpected:
        raise ModelLoadError(
            f"geometry model: {path} does not fit VGGT: missing {missing[:3]} ({len(missing)}), "
            f"unexpected {unexpected[:3]} ({len(unexpected)})"
        )
    return net


class GeometryModel:
    """A loaded VGGT on a device; ``lift_views`` does steps 1-4 of the module docstring."""

    def __init__(self, net, name: str, device: torch.device, bf16: bool):
        self.net, self.name, self.device, self.bf16 = net, name, device, bf16

    @torch.inference_mode()
    def lift_views(self, images: Sequence[np.ndarray], working_hw: tuple[int, int],
                   confidence_percentile: float = DEFAULT_CONFIDENCE_PERCENTILE) -> list[PosedView]:  # fmt: skip
        """images: N (h, w, 3) uint8 (any sizes) -> N PosedViews at working_hw."""
        if not images:
            raise ValueError("images: at least one image")
        if not 0.0 <= confidence_percentile < 100.0:
            raise ValueError(f"confidence_percentile: must be in [0, 100), got {confidence_percentile}")
        H, W = working_hw
        cfg = self.net.cfg
        h, w = model_size(working_hw, cfg.img_size, cfg.patch)
        work = torch.stack([_resize_rgb(img, H, W) for img in images])  # (N, 3, H, W) float [0, 1]
        x = F.interpolate(work, size=(h, w), mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)
        x = x.to(self.device)[None]
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            out = self.net(x)
        from objvid.depth.vggt import pose_to_camera

        w2c, K = pose_to_camera(out["pose_enc"][0], h, w)
        w2c = w2c.double().cpu().numpy()
        w2c = w2c @ np.linalg.inv(w2c[0])  # world = view 0's camera
        w2c[0] = np.eye(4)
        K = K.double().cpu().numpy()
        K[:, 0] *= W / w
        K[:, 1] *= H / h
        depth = _resize_map(out["depth"][0].float(), H, W)
        conf = _resize_map(out["depth_conf"][0].float(), H, W)
        rgb = (work.permute(0, 2, 3, 1) * 255.0).round().to(torch.uint8).numpy()
        views = []
        for i in range(len(images)):
            d, c = depth[i], conf[i]
            valid = np.isfinite(d) & (d > 0)
            cut = np.percentile(c[valid], confidence_percentile) if valid.any() else np.inf
            views.append(PosedView(d, valid & (c >= cut), c, K[i], w2c[i], rgb[i]))
        return views


def _resize_rgb(img: np.ndarray, H: int, W: int) -> torch.Tensor:
    t = torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1).float()[None] / 255.0
    if t.shape[-2:] != (H, W):
        t = F.interpolate(t, size=(H, W), mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)
    return t[0]


def _resize_map(m: torch.Tensor, H: int, W: int) -> np.ndarray:
    """(N, h, w) -> (N, H, W) float32 numpy, bilinear."""
    return F.interpolate(m[:, None], size=(H, W), mode="bilinear", align_corners=False)[:, 0].cpu().numpy()


def load_geometry_model(spec: str = DEFAULT_GEOMETRY_MODEL, *, device: str = "auto", dtype: str = "auto",
                        model_dir: str | os.PathLike | None = None) -> GeometryModel:  # fmt: skip
    """Resolve (local path, ``<model_dir>/facebook/VGGT-1B/model.pt``, the HF cache, or a download unless
    HF_HUB_OFFLINE), read and place VGGT. ModelLoadError names the file and where to put it."""
    start = time.perf_counter()
    ckpt = resolve_checkpoint(spec, model_dir)
    sd = read_state_dict(ckpt.path)
    net = build_from_state_dict(sd, ckpt.path)
    del sd
    dev = pick_device(device)
    if dtype not in ("auto", "float32", "bfloat16"):
        raise ModelLoadError(f"geometry dtype: expected auto, float32 or bfloat16, got {dtype!r}")
    bf16 = dev.type == "cuda" and dtype != "float32"
    net = net.to(dev).eval().requires_grad_(False)
    log.info("event=geometry_model_loaded model=%s path=%s device=%s bf16=%s seconds=%.2f", spec, ckpt.path, dev,
             bf16, time.perf_counter() - start)  # fmt: skip
    return GeometryModel(net, spec, dev, bf16)


def save_checkpoint(net, path: str | os.PathLike) -> Path:
    """Write ``net``'s state dict as VGGT-1B's ``model.pt`` does (a plain state dict)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), path)
    return path
