"""VGGT (Wang et al., CVPR 2025; facebookresearch/vggt) written here so the official ``facebook/VGGT-1B``
checkpoint loads strictly: ``aggregator.*`` (DINOv2 patch embedding, 24 frame + 24 global attention
blocks with 2D RoPE and q/k norm, camera and register tokens), ``camera_head.*``, ``depth_head.*`` and
``point_head.*``. ``track_head.*`` (point tracking) is not built; its keys are dropped when loading.

Input: images (B, S, 3, H, W) in [0, 1], H and W multiples of the patch (14). Output of ``VGGT.forward``:
pose encodings (B, S, 9), depth (B, S, H, W) and its confidence (B, S, H, W) (>= 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .backbone import DinoBackbone
from .heads import CameraHead, DPTHead
from .layers import Block, Rope2D, grid_positions

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
OFFICIAL_DPT_LAYERS = (4, 11, 17, 23)  # VGGT-1B's DPT taps (24 layers)
HEAD_DIM = 64  # aggregator and backbone heads: 1024 / 16
CAMERA_HEAD_DIM = 128  # camera trunk heads: 2048 / 16


@dataclass(frozen=True)
class VGGTConfig:
    """Architecture sizes; the defaults are VGGT-1B's. ``from_state_dict`` reads them off a checkpoint."""

    img_size: int = 518
    patch: int = 14
    dim: int = 1024
    depth: int = 24
    backbone_depth: int = 24
    registers: int = 4
    mlp_ratio: float = 4.0
    camera_depth: int = 4
    dpt_features: int = 256
    dpt_channels: tuple[int, int, int, int] = (256, 512, 1024, 1024)

    @property
    def dpt_layers(self) -> tuple[int, ...]:
        """The 4 aggregator layers the DPT heads read: VGGT-1B's for 24 layers, else evenly spread."""
        if self.depth == 24:
            return OFFICIAL_DPT_LAYERS
        return tuple(max(0, round((i + 1) * self.depth / 4) - 1) for i in range(4))

    @classmethod
    def from_state_dict(cls, sd: dict) -> VGGTConfig:
        """Sizes implied by the tensor shapes of a VGGT state dict (KeyError if a key is missing)."""
        dim = sd["aggregator.camera_token"].shape[-1]
        proj = sd["aggregator.patch_embed.patch_embed.proj.weight"]
        grid = int(round((sd["aggregator.patch_embed.pos_embed"].shape[1] - 1) ** 0.5))

        def count(prefix: str) -> int:
            return len({k[len(prefix) :].split(".")[0] for k in sd if k.startswith(prefix)})

        return cls(
            img_size=grid * proj.shape[-1],
            patch=proj.shape[-1],
            dim=dim,
            depth=count("aggregator.frame_blocks."),
            backbone_depth=count("aggregator.patch_embed.blocks."),
            registers=sd["aggregator.register_token"].shape[2],
            mlp_ratio=sd["aggregator.frame_blocks.0.mlp.fc1.weight"].shape[0] / dim,
            camera_depth=count("camera_head.trunk."),
            dpt_features=sd["depth_head.scratch.layer1_rn.weight"].shape[0],
            dpt_channels=tuple(sd[f"depth_head.projects.{i}.weight"].shape[0] for i in range(4)),
        )


class Aggregator(nn.Module):
    """Alternating frame (per view) and global (all views) attention over camera, register and patch
    tokens. Returns the 2C-wide concatenation [frame_i, global_i] of every layer i: (B, S, P, 2C) each."""

    def __init__(self, cfg: VGGTConfig):
        super().__init__()
        heads = max(1, cfg.dim // HEAD_DIM)
        self.patch = cfg.patch
        self.patch_embed = DinoBackbone(cfg.img_size, cfg.patch, cfg.dim, cfg.backbone_depth, heads,
                                        cfg.mlp_ratio, cfg.registers)  # fmt: skip
        self.rope = Rope2D(100.0)
        self.frame_blocks = nn.ModuleList(
            Block(cfg.dim, heads, cfg.mlp_ratio, 0.01, qk_norm=True, rope=self.rope) for _ in range(cfg.depth)
        )
        self.global_blocks = nn.ModuleList(
            Block(cfg.dim, heads, cfg.mlp_ratio, 0.01, qk_norm=True, rope=self.rope) for _ in range(cfg.depth)
        )
        # index 0: the first (reference) view, index 1: every other view
        self.camera_token = nn.Parameter(torch.zeros(1, 2, 1, cfg.dim))
        self.register_token = nn.Parameter(torch.zeros(1, 2, cfg.registers, cfg.dim))
        self.start = 1 + cfg.registers
        self.register_buffer("_mean", torch.tensor(IMAGENET_MEAN).view(1, 1, 3, 1, 1), persistent=False)
        self.register_buffer("_std", torch.tensor(IMAGENET_STD).view(1, 1, 3, 1, 1), persistent=False)

    @staticmethod
    def _per_view(tok: torch.Tensor, B: int, S: int) -> torch.Tensor:
        """(1, 2, X, C) -> (B*S, X, C): variant 0 for the first view, variant 1 for the rest."""
        first = tok[:, :1].expand(B, 1, *tok.shape[2:])
        rest = tok[:, 1:].expand(B, S - 1, *tok.shape[2:])
        return torch.cat([first, rest], dim=1).reshape(B * S, *tok.shape[2:])

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        B, S, _, H, W = images.shape
        x = ((images - self._mean) / self._std).reshape(B * S, 3, H, W)
        patches = self.patch_embed(x)
        tokens = torch.cat(
            [self._per_view(self.camera_token, B, S), self._per_view(self.register_token, B, S), patches],
            dim=1,
        )
        P, C = tokens.shape[1:]
        pos = grid_positions(B * S, H // self.patch, W // self.patch, images.device) + 1
        pos = torch.cat([torch.zeros(B * S, self.start, 2, dtype=pos.dtype, device=pos.device), pos], dim=1)
        out = []
        for frame, glob in zip(self.frame_blocks, self.global_blocks, strict=True):
            tokens = frame(tokens.reshape(B * S, P, C), pos)
            f = tokens.reshape(B, S, P, C)
            tokens = glob(tokens.reshape(B, S * P, C), pos.reshape(B, S * P, 2))
            out.append(torch.cat([f, tokens.reshape(B, S, P, C)], dim=-1))
        return out


class VGGT(nn.Module):
    """Aggregator + camera head + depth head (+ point head, built for strict loading; not run)."""

    def __init__(self, cfg: VGGTConfig | None = None):
        super().__init__()
        cfg = cfg or VGGTConfig()
        self.cfg = cfg
        self.aggregator = Aggregator(cfg)
        wide = 2 * cfg.dim
        self.camera_head = CameraHead(wide, cfg.camera_depth, max(1, wide // CAMERA_HEAD_DIM), cfg.mlp_ratio)
        dpt = dict(
            patch=cfg.patch, features=cfg.dpt_features, channels=cfg.dpt_channels, layers=cfg.dpt_layers
        )
        self.point_head = DPTHead(wide, out_dim=4, activation="inv_log", **dpt)
        self.depth_head = DPTHead(wide, out_dim=2, activation="exp", **dpt)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """images (B, S, 3, H, W) in [0, 1] -> pose_enc (B, S, 9), depth (B, S, H, W), depth_conf (B, S, H, W)."""
        H, W = images.shape[-2:]
        tokens = self.aggregator(images)
        pose = self.camera_head(tokens[-1].float())
        depth, conf = self.depth_head(tokens, H, W, self.aggregator.start)
        return {"pose_enc": pose, "depth": depth[..., 0], "depth_conf": conf}
