"""The Cosmos tokenizer (``Cosmos-Tokenize1-CV8x8x8-720p``) as diffusers' ``AutoencoderKLCosmos``.

Upstream (``pretrained_vae.py`` + ``DiffusionT2WModel.encode/decode``):
``latent = (encoder(video)[0] - mean[:, :, :T']) / std[:, :, :T'] * sigma_data`` and the inverse for decoding,
with ``mean`` / ``std`` from ``mean_std.pt`` viewed as (16, -1) (per channel and latent frame) and the video
encoded in chunks of ``pixel_chunk_frames`` (121). Here ``latents_mean`` / ``latents_std`` live in the VAE's
diffusers config, as diffusers' own Cosmos conversion stores them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from objvid.diffusion.gen3c import weights

VAE_CLASS = "AutoencoderKLCosmos"


def build_vae(config: dict[str, Any]) -> nn.Module:
    """``AutoencoderKLCosmos`` from a saved config (built on CPU: it has non-persistent wavelet buffers)."""
    from diffusers import AutoencoderKLCosmos

    cfg = {k: v for k, v in config.items() if not k.startswith("_")}
    for key in ("encoder_block_out_channels", "decode_block_out_channels", "attention_resolutions"):
        if key in cfg:
            cfg[key] = tuple(cfg[key])
    return AutoencoderKLCosmos(**cfg)


def load_vae(folder: str | Path) -> nn.Module:
    """Strictly load the ``vae/`` component folder (float32 weights as stored, CPU)."""
    cfg = weights.read_config(folder, VAE_CLASS)
    model = build_vae(cfg)
    weights.load_into(model, weights.read_state_dict(folder), f"VAE ({folder})")
    return model.eval().requires_grad_(False)


class Gen3cVae(nn.Module):
    """Encode / decode whole chunks with upstream's latent normalisation.

    encode: video (B, 3, T, H, W) float in [-1, 1], T = pixel_chunk_frames -> (B, 16, T', H/8, W/8) float32;
    encode_prefix: the same for the first 1 + 8k frames of a chunk -> its first 1 + k latent frames;
    decode: the inverse -> (B, 3, T, H, W) float32, roughly [-1, 1].
    """

    def __init__(self, autoencoder: nn.Module, pixel_chunk_frames: int, sigma_data: float):
        super().__init__()
        self.autoencoder = autoencoder
        self.pixel_chunk_frames = int(pixel_chunk_frames)
        self.sigma_data = float(sigma_data)
        cfg = autoencoder.config
        self.latent_channels = int(cfg.latent_channels)
        self.temporal_compression = int(cfg.temporal_compression_ratio)
        self.spatial_compression = int(cfg.spatial_compression_ratio)
        mean = cfg.latents_mean
        std = cfg.latents_std
        if mean is None or std is None:
            raise ValueError("VAE config has no latents_mean / latents_std (upstream mean_std.pt)")
        mean = torch.tensor(mean, dtype=torch.float32).view(self.latent_channels, -1)
        std = torch.tensor(std, dtype=torch.float32).view(self.latent_channels, -1)
        if mean.shape[1] < self.latent_frames:
            raise ValueError(
                f"latents_mean covers {mean.shape[1]} latent frames, a chunk of {pixel_chunk_frames} needs "
                f"{self.latent_frames}"
            )
        shape = (1, self.latent_channels, self.latent_frames, 1, 1)
        self.register_buffer("latent_mean", mean[:, : self.latent_frames].reshape(shape), persistent=False)
        self.register_buffer("latent_std", std[:, : self.latent_frames].reshape(shape), persistent=False)

    @property
    def latent_frames(self) -> int:
        return 1 + (self.pixel_chunk_frames - 1) // self.temporal_compression

    @property
    def dtype(self) -> torch.dtype:
        return self.autoencoder.quant_conv.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.autoencoder.quant_conv.weight.device

    @torch.no_grad()
    def encode(self, video: torch.Tensor) -> torch.Tensor:
        if video.ndim != 5 or video.shape[1] != 3 or video.shape[2] != self.pixel_chunk_frames:
            raise ValueError(
                f"VAE encode needs (B, 3, {self.pixel_chunk_frames}, H, W), got {tuple(video.shape)}"
            )
        return self._encode(video)

    @torch.no_grad()
    def encode_prefix(self, video: torch.Tensor) -> torch.Tensor:
        """The first latent frames of a chunk from its first pixel frames only.

        video: (B, 3, 1 + k * temporal_compression, H, W) in [-1, 1], at most a chunk -> (B, 16, 1 + k, h, w),
        normalised like the chunk's first 1 + k latent frames. The tokenizer is causal (latent frame i sees
        pixel frames <= i * temporal_compression), so this equals the first 1 + k latent frames of the
        whole chunk's encoding: exactly in float64, within rounding in bf16.
        """
        frames = video.shape[2] if video.ndim == 5 else -1
        if (
            video.ndim != 5
            or video.shape[1] != 3
            or not 1 <= frames <= self.pixel_chunk_frames
            or (frames - 1) % self.temporal_compression
        ):
            raise ValueError(
                f"VAE prefix encode needs (B, 3, 1 + k * {self.temporal_compression}, H, W) with at most "
                f"{self.pixel_chunk_frames} frames, got {tuple(video.shape)}"
            )
        return self._encode(video)

    def _encode(self, video: torch.Tensor) -> torch.Tensor:
        raw = self.autoencoder.encode(video.to(self.device, self.dtype)).latent_dist.mode().float()
        t = raw.shape[2]
        return (raw - self.latent_mean[:, :, :t]) / self.latent_std[:, :, :t] * self.sigma_data

    @torch.no_grad()
    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        if (
            latent.ndim != 5
            or latent.shape[1] != self.latent_channels
            or latent.shape[2] != self.latent_frames
        ):
            raise ValueError(
                f"VAE decode needs (B, {self.latent_channels}, {self.latent_frames}, h, w), got {tuple(latent.shape)}"
            )
        raw = (
            latent.float().to(self.latent_mean.device) / self.sigma_data * self.latent_std + self.latent_mean
        )
        return self.autoencoder.decode(raw.to(self.dtype)).sample.float()
