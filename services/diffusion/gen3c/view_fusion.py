"""The multi-view fork's cache conditioning (dsvilarkovic/GEN3C ``model_gen3c.encode_warped_frames``,
reference 5.1), ``--view-fusion latent-max``: instead of at most 2 selected buffer slots, every source
view's render video is VAE-encoded, and per latent location (t, h, w) the view whose warp latent has the
largest L2 norm over the channels wins; its warp latent and its mask latent fill buffer slot 0, the other
slots stay zero. (The paper's pixel-space max-pooling cannot be done exactly because the Cosmos tokenizer
compresses time 8x as well; this is the fork's latent-space stand-in.)
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from .conditioning import encode_slot

MAX_FUSION_VIEWS = 8  # RENDERS grow by T x H x W x 4 bytes per view (~436 MB per view at 121 x 704 x 1280)


def vector_max(warp: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """warp, mask latents (V, C, T, h, w) -> (warp, mask) (C, T, h, w): per (t, h, w) the view with the
    largest ||warp[v, :, t, h, w]||_2 (ties: the lowest view index), both latents taken from it."""
    if warp.shape != mask.shape or warp.ndim != 5:
        raise ValueError(
            f"expected equal (V, C, T, h, w) latents, got {tuple(warp.shape)} and {tuple(mask.shape)}"
        )
    winner = warp.float().norm(dim=1).argmax(dim=0)  # (T, h, w)
    idx = winner[None, None].expand(1, warp.shape[1], *winner.shape)
    return warp.gather(0, idx)[0], mask.gather(0, idx)[0]


def encode_latent_max(
    encode: Callable[[torch.Tensor], torch.Tensor],
    renders: np.ndarray,
    masks: np.ndarray,
    frame_buffer_max: int,
    device,
    dtype,
    on_video: Callable[[], None] | None = None,
) -> torch.Tensor:
    """Cache latents ``[pooled_warp, pooled_mask, 0, ..., 0]`` (1, 2 * K * C, T', h, w) float32 from the
    renders (T, V, H, W, 3) uint8 and masks (T, V, H, W) of all V views (same layout as
    ``conditioning.encode_cache_latents``)."""
    views = renders.shape[1]
    if not 1 <= views <= MAX_FUSION_VIEWS:
        raise ValueError(
            f"RENDERS views V must be in [1, {MAX_FUSION_VIEWS}] for latent-max fusion, got {views}"
        )
    warps, mlats = [], []
    for v in range(views):
        warp, mlat = encode_slot(encode, renders, masks, v, device, dtype, on_video)
        warps.append(warp[0])
        mlats.append(mlat[0])
    warp, mask = vector_max(torch.stack(warps), torch.stack(mlats))
    zeros = torch.zeros_like(warp)
    parts = [warp, mask] + [zeros] * (2 * (frame_buffer_max - 1))
    return torch.cat(parts, dim=0)[None]
