"""VGGT's patch embedding: a DINOv2 ViT with register tokens (``aggregator.patch_embed.*`` in the official
checkpoint: ``cls_token``, ``pos_embed``, ``register_tokens``, ``mask_token``, ``patch_embed.proj``,
``blocks.{i}``, ``norm``). Only the normalised patch tokens are used.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .layers import Block

DINO_NORM_EPS = 1e-6  # DINOv2 builds its LayerNorms with eps 1e-6


class PatchProj(nn.Module):
    """Non-overlapping patches -> tokens: ``proj`` conv (C, 3, p, p), stride p. (B,3,H,W) -> (B, hw, C)."""

    def __init__(self, patch: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class DinoBackbone(nn.Module):
    """DINOv2 ViT with ``registers`` register tokens; ``img_size`` sets the stored position grid
    (518 / 14 = 37 x 37 for VGGT-1B), interpolated bicubically (antialiased) to other grids."""

    def __init__(self, img_size: int = 518, patch: int = 14, dim: int = 1024, depth: int = 24, heads: int = 16,
                 mlp_ratio: float = 4.0, registers: int = 4):  # fmt: skip
        super().__init__()
        self.patch = patch
        self.patch_embed = PatchProj(patch, dim)
        grid = img_size // patch
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + grid * grid, dim))
        self.register_tokens = nn.Parameter(torch.zeros(1, registers, dim))
        self.mask_token = nn.Parameter(torch.zeros(1, dim))  # unused at inference; kept for strict loading
        self.blocks = nn.ModuleList(
            Block(dim, heads, mlp_ratio, init_values=1.0, norm_eps=DINO_NORM_EPS) for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim, eps=DINO_NORM_EPS)
        self.registers = registers

    def _pos_embed(self, rows: int, cols: int, dtype: torch.dtype) -> torch.Tensor:
        """(1, 1 + rows*cols, C): the class position plus the patch grid resized to rows x cols."""
        pe = self.pos_embed.float()
        n = pe.shape[1] - 1
        m = int(math.isqrt(n))
        if rows == m and cols == m:
            return self.pos_embed
        grid = pe[:, 1:].reshape(1, m, m, -1).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(rows, cols), mode="bicubic", antialias=True)
        grid = grid.permute(0, 2, 3, 1).reshape(1, rows * cols, -1)
        return torch.cat([pe[:, :1], grid], dim=1).to(dtype)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 3, H, W) normalised, H and W multiples of the patch -> patch tokens (B, hw, C)."""
        B, _, H, W = images.shape
        x = self.patch_embed(images)
        x = torch.cat([self.cls_token.expand(B, -1, -1), x], dim=1)
        x = x + self._pos_embed(H // self.patch, W // self.patch, x.dtype)
        x = torch.cat([x[:, :1], self.register_tokens.expand(B, -1, -1), x[:, 1:]], dim=1)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)[:, 1 + self.registers :]
