"""Transformer building blocks of VGGT (facebookresearch/vggt), written here with the same module names so
the official ``facebook/VGGT-1B`` state dict loads strictly: ``norm1``, ``attn.qkv``, ``attn.q_norm``,
``attn.k_norm``, ``attn.proj``, ``ls1.gamma``, ``norm2``, ``mlp.fc1``, ``mlp.fc2``, ``ls2.gamma``.

Shapes: tokens (B, N, C); positions (B, N, 2) int64 (row, column) for the 2D rotary embedding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Mlp(nn.Module):
    """fc1 -> GELU -> fc2."""

    def __init__(self, dim: int, hidden: int, out: int | None = None, bias: bool = True):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden, bias=bias)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, out or dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class LayerScale(nn.Module):
    """Per-channel scale ``gamma`` (C,)."""

    def __init__(self, dim: int, init: float):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Rope2D(nn.Module):
    """2D rotary position embedding: the first half of each head's channels rotates with the row, the
    second half with the column; each half uses the rotate-half form with inverse frequencies
    ``base ** (-2i / d)`` for d = half the head size. No parameters."""

    def __init__(self, base: float = 100.0):
        super().__init__()
        self.base = float(base)

    def _rotate(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        d = x.shape[-1]
        inv = 1.0 / (self.base ** (torch.arange(0, d, 2, device=x.device).float() / d))
        ang = pos.to(torch.float32)[..., None] * inv  # (B, N, d/2)
        ang = torch.cat([ang, ang], dim=-1).to(x.dtype)[:, None]  # (B, 1, N, d)
        x1, x2 = x[..., : d // 2], x[..., d // 2 :]
        return x * ang.cos() + torch.cat([-x2, x1], dim=-1) * ang.sin()

    def forward(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """x (B, heads, N, D), pos (B, N, 2) -> rotated x."""
        rows, cols = x.chunk(2, dim=-1)
        return torch.cat([self._rotate(rows, pos[..., 0]), self._rotate(cols, pos[..., 1])], dim=-1)


def grid_positions(batch: int, h: int, w: int, device) -> torch.Tensor:
    """(batch, h*w, 2) int64 (row, column) of a patch grid in row-major order."""
    rows = torch.arange(h, device=device).repeat_interleave(w)
    cols = torch.arange(w, device=device).repeat(h)
    return torch.stack([rows, cols], dim=-1)[None].expand(batch, -1, -1)


class Attention(nn.Module):
    """Multi-head self-attention with optional per-head LayerNorm on q/k and 2D RoPE."""

    def __init__(self, dim: int, heads: int, qk_norm: bool = False, rope: Rope2D | None = None,
                 norm_eps: float = 1e-5):  # fmt: skip
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3)
        head_dim = dim // heads
        self.q_norm = nn.LayerNorm(head_dim, eps=norm_eps) if qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(head_dim, eps=norm_eps) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim)
        self.rope = rope

    def forward(self, x: torch.Tensor, pos: torch.Tensor | None = None) -> torch.Tensor:
        B, N, C = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        if self.rope is not None and pos is not None:
            q, k = self.rope(q, pos), self.rope(k, pos)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(B, N, C))


class Block(nn.Module):
    """Pre-norm transformer block: x + ls1(attn(norm1 x)); x + ls2(mlp(norm2 x))."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0, init_values: float = 0.01,
                 qk_norm: bool = False, rope: Rope2D | None = None, norm_eps: float = 1e-5):  # fmt: skip
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, heads, qk_norm=qk_norm, rope=rope)
        self.ls1 = LayerScale(dim, init_values)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.ls2 = LayerScale(dim, init_values)

    def forward(self, x: torch.Tensor, pos: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x), pos))
        return x + self.ls2(self.mlp(self.norm2(x)))
