"""Random-weight VGGT networks in the official checkpoint layout (tests, bench/multiview_bench.py); save
them with ``objvid.depth.geometry.save_checkpoint`` and load them through the real path."""

from __future__ import annotations

from objvid.depth.vggt import VGGT, VGGTConfig


def tiny_config() -> VGGTConfig:
    """A few-layer VGGT with the official layout (tests and CPU benchmarks; random weights)."""
    return VGGTConfig(img_size=56, patch=14, dim=64, depth=4, backbone_depth=2, registers=4, camera_depth=1,
                      dpt_features=16, dpt_channels=(8, 16, 32, 32))  # fmt: skip


def random_vggt(cfg: VGGTConfig | None = None, seed: int = 0) -> VGGT:
    """Random weights in the official layout, with the camera head's last layer set so poses are sane
    (near-identity rotation, fields of view ~1 rad after 4 refinements) and depths start near 1."""
    import torch

    torch.manual_seed(seed)
    net = VGGT(cfg or tiny_config())
    with torch.no_grad():
        for p in net.parameters():
            if p.dim() > 1:
                torch.nn.init.normal_(p, std=0.02)
        fc2 = net.camera_head.pose_branch.fc2
        fc2.weight.mul_(0.05)
        fc2.bias.copy_(torch.tensor([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.25, 0.25, 0.25]))
        net.camera_head.pose_branch.fc2.bias[:3].normal_(std=0.02)
    return net
