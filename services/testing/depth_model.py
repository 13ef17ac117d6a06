"""MoGe networks with random weights, for tests and benchmarks (no network access, no ``init_weights()``).

``save_checkpoint`` writes the real checkpoint format, so the service loads these exactly like model.pt.
"""

from __future__ import annotations

import os
import warnings

import torch

from objvid.depth.model import build_net

#: Shape of the published Ruicheng/moge-vitl (MoGe v1, ViT-L/14 encoder, ~314M parameters).
VITL_V1_CONFIG: dict = {
    "encoder": "dinov2_vitl14",
    "remap_output": "exp",
    "intermediate_layers": 4,
    "dim_proj": 512,
    "dim_upsample": [256, 128, 64],
    "dim_times_res_block_hidden": 2,
    "num_res_blocks": 2,
    "num_tokens_range": [1275, 2551],
    "last_conv_channels": 32,
    "last_conv_size": 1,
}

#: A small v1: ViT-S/14 encoder (the smallest DINOv2 MoGe builds) and a thin head.
SMALL_V1_CONFIG: dict = {
    "encoder": "dinov2_vits14",
    "remap_output": "exp",
    "intermediate_layers": 4,
    "dim_proj": 64,
    "dim_upsample": [32, 32, 32],
    "dim_times_res_block_hidden": 1,
    "num_res_blocks": 1,
    "num_tokens_range": [48, 96],
    "last_conv_channels": 16,
    "last_conv_size": 1,
}

_C = 32
#: A small v2: ViT-S/14 encoder, 5-level neck, points/mask heads and a metric-scale head.
SMALL_V2_CONFIG: dict = {
    "encoder": {"backbone": "dinov2_vits14", "intermediate_layers": 4, "dim_out": _C},
    "neck": {
        "dim_in": [_C + 2, 2, 2, 2, 2],
        "dim_res_blocks": [_C] * 5,
        "dim_out": [_C] * 5,
        "resamplers": ["bilinear"] * 4,
        "num_res_blocks": 1,
    },
    "points_head": {
        "dim_in": [_C] * 5,
        "dim_res_blocks": [_C] * 5,
        "dim_out": [None] * 4 + [3],
        "resamplers": ["bilinear"] * 4,
        "num_res_blocks": 0,
    },
    "mask_head": {
        "dim_in": [_C] * 5,
        "dim_res_blocks": [_C] * 5,
        "dim_out": [None] * 4 + [1],
        "resamplers": ["bilinear"] * 4,
        "num_res_blocks": 0,
    },
    "scale_head": {"dims": [384, 32, 1]},
    "remap_output": "exp",
    "num_tokens_range": [48, 96],
}


def _mask_conv(net: torch.nn.Module, version: str) -> torch.nn.Conv2d:
    """The last convolution producing the mask (v1: raw score thresholded at 0.5; v2: logit)."""
    return net.head.output_block[1][-1] if version == "v1" else net.mask_head.output_blocks[-1]


@torch.no_grad()
def build_random(config: dict, version: str, seed: int = 0, balance_mask: bool = True) -> torch.nn.Module:
    """A MoGe ``version`` network from ``config`` with seeded random weights (float32, CPU, eval mode).

    balance_mask: shift the mask bias so that about half of the pixels of a random image are valid
    (random weights otherwise give an all-valid or all-invalid mask).
    """
    torch.manual_seed(seed)
    net = build_net(config, version).eval()
    if balance_mask:
        conv = _mask_conv(net, version)
        seen: list[torch.Tensor] = []
        handle = conv.register_forward_hook(lambda _m, _i, out: seen.append(out.detach()))
        image = torch.rand(1, 3, 56, 98, generator=torch.Generator().manual_seed(seed))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # MoGe's CPU autocast(float32) notice
            net.forward(image, num_tokens=28)
        handle.remove()
        threshold = 0.5 if version == "v1" else 0.0
        conv.bias += threshold - seen[-1].median()
    return net


def save_checkpoint(net: torch.nn.Module, config: dict, path: str | os.PathLike) -> None:
    """Write MoGe's checkpoint format: ``{"model_config": config, "model": state_dict}``."""
    torch.save({"model_config": dict(config), "model": net.state_dict()}, path)
