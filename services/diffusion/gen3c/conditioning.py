"""GEN3C conditioning tensors, as upstream builds them (``model_gen3c.py``, ``model_v2w.py``, ``inference_utils``).

- Condition latent: the first frame followed by T - 1 zero frames (zero = mid grey in [-1, 1]), VAE-encoded;
  its first ``num_condition_latents`` latent frames are the condition region and the sampler multiplies the
  rest by zero. The tokenizer is causal, so objvid encodes only the pixel frames the condition region sees
  (1 of 121) and leaves the other latent frames zero: the sampler's input is unchanged (exact in float64).
- Cache latents: for each buffer slot n, the renders (holes are black = -1) and the masks mapped to {-1, 1}
  and repeated to 3 channels, each VAE-encoded as a video; concatenated ``[warp_0, mask_0, warp_1, mask_1]``
  with zero latents for empty slots up to ``frame_buffer_max``.
- Condition mask (network input channel): 1 on the condition latent frames, 0 elsewhere.

Pixels map to [-1, 1] as x / 127.5 - 1 everywhere (upstream's autoregressive chunks and cache renders do the
same; only its very first chunk, read from an image file, uses x / 128 - 1).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch


def uint8_to_unit(
    frames: np.ndarray | torch.Tensor, device: torch.device | str, dtype: torch.dtype
) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (1, 3, T, H, W) in [-1, 1] (x / 127.5 - 1) on ``device`` in ``dtype``."""
    t = torch.as_tensor(frames).to(device)
    if t.dtype != torch.uint8 or t.ndim != 4 or t.shape[-1] != 3:
        raise ValueError(f"expected (T, H, W, 3) uint8 frames, got {tuple(t.shape)} {t.dtype}")
    return (t.float() / 127.5 - 1.0).to(dtype).permute(3, 0, 1, 2).unsqueeze(0)


def first_frame_video(first_frame: np.ndarray, num_frames: int, device, dtype) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, num_frames, H, W): the frame in [-1, 1], then ``num_frames - 1`` zero frames."""
    frame = uint8_to_unit(first_frame[None], device, dtype)
    pad = frame.new_zeros((1, 3, num_frames - 1, *frame.shape[-2:]))
    return torch.cat([frame, pad], dim=2)


def condition_pixel_frames(num_condition_latents: int, temporal_compression: int) -> int:
    """Pixel frames that the first ``num_condition_latents`` latent frames of the causal tokenizer see (at
    least 1): 1 + (n - 1) * temporal_compression."""
    return 1 + max(num_condition_latents - 1, 0) * temporal_compression


def encode_condition_latent(
    encode_prefix: Callable[[torch.Tensor], torch.Tensor],
    first_frame: np.ndarray,
    num_condition_latents: int,
    temporal_compression: int,
    latent_frames: int,
    device,
    dtype,
) -> torch.Tensor:
    """Condition latent (1, C, latent_frames, h, w) float32 of the zero-padded first-frame video.

    encode_prefix: the first 1 + 8k frames of a chunk -> its first 1 + k latent frames (causal tokenizer);
    first_frame: (H, W, 3) uint8. Latent frames from ``num_condition_latents`` on are zero: upstream encodes
    the padded frames there, but the sampler uses only the condition frames of this latent.
    """
    if not 0 <= num_condition_latents <= latent_frames:
        raise ValueError(
            f"num_condition_latents must be in [0, {latent_frames}], got {num_condition_latents}"
        )
    frames = condition_pixel_frames(num_condition_latents, temporal_compression)
    head = encode_prefix(first_frame_video(first_frame, frames, device, dtype)).float()
    out = head.new_zeros((*head.shape[:2], latent_frames, *head.shape[3:]))
    out[:, :, :num_condition_latents] = head[:, :, :num_condition_latents]
    return out


def mask_video(masks: np.ndarray, device, dtype) -> torch.Tensor:
    """(T, H, W) uint8 {0, 1} -> (1, 3, T, H, W) in {-1, 1} (upstream ``mask * 2 - 1`` repeated to RGB)."""
    m = torch.as_tensor(masks).to(device)
    if m.ndim != 3:
        raise ValueError(f"expected (T, H, W) masks, got {tuple(m.shape)}")
    m = m.to(dtype) * 2 - 1
    return m[None, None].expand(1, 3, *m.shape).contiguous()


def encode_slot(
    encode, renders, masks, n: int, device, dtype, on_video=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Latents (1, C, T', h, w) float32 of slot ``n``'s warp and mask videos (arguments as
    :func:`encode_cache_latents`); ``on_video`` after each of the two."""
    out = []
    for video in (uint8_to_unit(renders[:, n], device, dtype), mask_video(masks[:, n], device, dtype)):
        out.append(encode(video).float())
        if on_video is not None:
            on_video()
    return out[0], out[1]


def encode_cache_latents(
    encode: Callable[[torch.Tensor], torch.Tensor],
    renders: np.ndarray,
    masks: np.ndarray,
    frame_buffer_max: int,
    device,
    dtype,
    on_video: Callable[[], None] | None = None,
) -> torch.Tensor:
    """Cache-buffer latents ``[warp_0, mask_0, ..., warp_{K-1}, mask_{K-1}]`` (K = frame_buffer_max).

    encode: video (1, 3, T, H, W) [-1, 1] -> latent (1, C, T', h, w); renders: (T, N, H, W, 3) uint8;
    masks: (T, N, H, W) uint8, 1 = rendered. Returns (1, 2 * K * C, T', h, w) float32; slots N..K-1 are zeros.
    on_video: called after each encoded video (progress).
    """
    slots = renders.shape[1]
    if not 1 <= slots <= frame_buffer_max:
        raise ValueError(f"RENDERS buffer slots N must be in [1, {frame_buffer_max}], got {slots}")
    parts: list[torch.Tensor] = []
    for n in range(slots):
        parts.extend(encode_slot(encode, renders, masks, n, device, dtype, on_video))
    zeros = torch.zeros_like(parts[0])
    parts.extend([zeros] * (2 * (frame_buffer_max - slots)))
    return torch.cat(parts, dim=1)


def condition_indicator(latent_frames: int, num_condition_latents: int, device=None) -> torch.Tensor:
    """(1, 1, T', 1, 1) float32: 1 on the first ``num_condition_latents`` latent frames."""
    if not 0 <= num_condition_latents <= latent_frames:
        raise ValueError(
            f"num_condition_latents must be in [0, {latent_frames}], got {num_condition_latents}"
        )
    ind = torch.zeros((1, 1, latent_frames, 1, 1), device=device)
    ind[:, :, :num_condition_latents] = 1.0
    return ind


def condition_mask(indicator: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(1, 1, T', h, w) network input channel from the (1, 1, T', 1, 1) indicator."""
    return indicator.expand(-1, -1, -1, height, width).contiguous()
