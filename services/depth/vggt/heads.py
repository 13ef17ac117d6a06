"""VGGT's camera head (iterative pose refinement on the camera tokens) and DPT dense head (depth +
confidence), with the official module names (``camera_head.*``, ``depth_head.*``, ``point_head.*``).

Pose encoding (9 numbers per view, "absT_quaR_FoV"): translation t (3), quaternion (x, y, z, w) (4) and
the vertical / horizontal field of view (2); the camera is OpenCV world-to-camera [R(q) | t].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import Block, Mlp

POSE_DIM = 9


class CameraHead(nn.Module):
    """Camera tokens (B, S, 2C) -> pose encodings (B, S, 9), refined over ``iterations`` passes of an
    adaLN-modulated trunk (the previous estimate modulates the normalised tokens)."""

    def __init__(self, dim: int = 2048, depth: int = 4, heads: int = 16, mlp_ratio: float = 4.0):
        super().__init__()
        self.trunk = nn.Sequential(*(Block(dim, heads, mlp_ratio, init_values=0.01) for _ in range(depth)))
        self.token_norm = nn.LayerNorm(dim)
        self.trunk_norm = nn.LayerNorm(dim)
        self.empty_pose_tokens = nn.Parameter(torch.zeros(1, 1, POSE_DIM))
        self.embed_pose = nn.Linear(POSE_DIM, dim)
        self.poseLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 3 * dim))
        self.adaln_norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.pose_branch = Mlp(dim, dim // 2, POSE_DIM)

    def forward(self, tokens: torch.Tensor, iterations: int = 4) -> torch.Tensor:
        """tokens (B, S, P, 2C) of the last aggregator layer -> final pose encoding (B, S, 9)."""
        cam = self.token_norm(tokens[:, :, 0])
        B, S, _ = cam.shape
        pose = None
        for _ in range(iterations):
            src = self.empty_pose_tokens.expand(B, S, -1) if pose is None else pose
            shift, scale, gate = self.poseLN_modulation(self.embed_pose(src)).chunk(3, dim=-1)
            x = gate * (self.adaln_norm(cam) * (1 + scale) + shift) + cam
            delta = self.pose_branch(self.trunk_norm(self.trunk(x)))
            pose = delta if pose is None else pose + delta
        # activation: translation and quaternion linear, fields of view ReLU
        return torch.cat([pose[..., :7], F.relu(pose[..., 7:])], dim=-1)


def pose_to_camera(pose: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pose encodings (..., 9) at an H x W input -> (w2c (..., 4, 4), K (..., 3, 3)) float32, OpenCV.
    K: fy = (H/2) / tan(fov_v/2), fx = (W/2) / tan(fov_h/2), principal point at (W/2, H/2)."""
    pose = pose.float()
    t, q, fov_v, fov_h = pose[..., :3], pose[..., 3:7], pose[..., 7], pose[..., 8]
    x, y, z, w = q.unbind(-1)
    s = 2.0 / (q * q).sum(-1)
    R = torch.stack(
        [
            1 - s * (y * y + z * z), s * (x * y - z * w), s * (x * z + y * w),
            s * (x * y + z * w), 1 - s * (x * x + z * z), s * (y * z - x * w),
            s * (x * z - y * w), s * (y * z + x * w), 1 - s * (x * x + y * y),
        ],
        dim=-1,
    ).reshape(*q.shape[:-1], 3, 3)  # fmt: skip
    w2c = torch.zeros(*q.shape[:-1], 4, 4, dtype=torch.float32, device=pose.device)
    w2c[..., :3, :3], w2c[..., :3, 3], w2c[..., 3, 3] = R, t, 1.0
    K = torch.zeros(*q.shape[:-1], 3, 3, dtype=torch.float32, device=pose.device)
    K[..., 0, 0] = (width / 2.0) / torch.tan(fov_h / 2.0)
    K[..., 1, 1] = (height / 2.0) / torch.tan(fov_v / 2.0)
    K[..., 0, 2], K[..., 1, 2], K[..., 2, 2] = width / 2.0, height / 2.0, 1.0
    return w2c, K


# ---------------------------------------------------------------------------------------------------
# DPT head


class _ResidualUnit(nn.Module):
    """DPT's residual conv unit. Upstream applies an in-place ReLU to its input first, so the skip adds
    relu(x): out = relu(x) + conv2(relu(conv1(relu(x))))."""

    def __init__(self, ch: int):
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1)
        self.conv2 = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(x)
        return x + self.conv2(F.relu(self.conv1(x)))


class _Fusion(nn.Module):
    """DPT fusion: (x [+ unit1(skip)]) -> unit2 -> bilinear resize (align_corners) -> 1x1 ``out_conv``."""

    def __init__(self, ch: int, residual: bool = True):
        super().__init__()
        self.out_conv = nn.Conv2d(ch, ch, 1)
        if residual:
            self.resConfUnit1 = _ResidualUnit(ch)
        self.resConfUnit2 = _ResidualUnit(ch)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None, size=None) -> torch.Tensor:
        if skip is not None:
            x = x + self.resConfUnit1(skip)
        x = self.resConfUnit2(x)
        if size is None:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        else:
            x = F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=True)
        return self.out_conv(x)


def _uv_embedding(h: int, w: int, channels: int, aspect: float, device, dtype) -> torch.Tensor:
    """(channels, h, w) sin/cos embedding of a centred uv grid spanning the image diagonal (omega_0 100)."""
    diag = (aspect**2 + 1.0) ** 0.5
    sx, sy = aspect / diag, 1.0 / diag
    xs = torch.linspace(-sx * (w - 1) / w, sx * (w - 1) / w, w, device=device, dtype=torch.float64)
    ys = torch.linspace(-sy * (h - 1) / h, sy * (h - 1) / h, h, device=device, dtype=torch.float64)
    uu, vv = xs[None, :].expand(h, w), ys[:, None].expand(h, w)
    half = channels // 2
    omega = 1.0 / 100.0 ** (torch.arange(half // 2, device=device, dtype=torch.float64) / (half / 2.0))

    def sincos(p):
        a = p.reshape(-1, 1) * omega
        return torch.cat([a.sin(), a.cos()], dim=1)

    emb = torch.cat([sincos(uu), sincos(vv)], dim=1).float().reshape(h, w, channels)
    return emb.permute(2, 0, 1).to(dtype)


class DPTHead(nn.Module):
    """Dense head over 4 aggregator layers (``layers``) -> per-pixel outputs at the input size.

    ``out_dim`` - 1 prediction channels (activation exp for depth, inv_log for points) + 1 confidence
    (1 + exp). Input tokens (B, S, P, 2C) per layer; output (B, S, H, W, out_dim-1) and (B, S, H, W).
    """

    def __init__(self, dim: int = 2048, patch: int = 14, out_dim: int = 2, activation: str = "exp",
                 features: int = 256, channels=(256, 512, 1024, 1024), layers=(4, 11, 17, 23)):  # fmt: skip
        super().__init__()
        self.patch, self.activation, self.layers = patch, activation, tuple(layers)
        self.norm = nn.LayerNorm(dim)
        self.projects = nn.ModuleList(nn.Conv2d(dim, c, 1) for c in channels)
        self.resize_layers = nn.ModuleList([
            nn.ConvTranspose2d(channels[0], channels[0], kernel_size=4, stride=4),
            nn.ConvTranspose2d(channels[1], channels[1], kernel_size=2, stride=2),
            nn.Identity(),
            nn.Conv2d(channels[3], channels[3], kernel_size=3, stride=2, padding=1),
        ])  # fmt: skip
        self.scratch = nn.Module()
        for i, c in enumerate(channels):
            setattr(self.scratch, f"layer{i + 1}_rn", nn.Conv2d(c, features, 3, padding=1, bias=False))
        for i in range(1, 5):
            setattr(self.scratch, f"refinenet{i}", _Fusion(features, residual=i != 4))
        self.scratch.output_conv1 = nn.Conv2d(features, features // 2, 3, padding=1)
        self.scratch.output_conv2 = nn.Sequential(
            nn.Conv2d(features // 2, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, out_dim, 1)
        )

    def _with_uv(self, x: torch.Tensor, aspect: float) -> torch.Tensor:
        return x + 0.1 * _uv_embedding(x.shape[-2], x.shape[-1], x.shape[1], aspect, x.device, x.dtype)[None]

    def forward(
        self, tokens: list[torch.Tensor], H: int, W: int, start: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        B, S = tokens[0].shape[:2]
        ph, pw = H // self.patch, W // self.patch
        feats = []
        for i, layer in enumerate(self.layers):
            x = self.norm(tokens[layer][:, :, start:].float().reshape(B * S, ph * pw, -1))
            x = x.permute(0, 2, 1).reshape(B * S, -1, ph, pw)
            x = self._with_uv(self.projects[i](x), W / H)
            feats.append(self.resize_layers[i](x))
        sc = self.scratch
        l1, l2, l3, l4 = (getattr(sc, f"layer{i + 1}_rn")(f) for i, f in enumerate(feats))
        out = sc.refinenet4(l4, size=l3.shape[2:])
        out = sc.refinenet3(out, l3, size=l2.shape[2:])
        out = sc.refinenet2(out, l2, size=l1.shape[2:])
        out = sc.output_conv1(sc.refinenet1(out, l1))
        out = F.interpolate(out, size=(ph * self.patch, pw * self.patch), mode="bilinear", align_corners=True)
        out = sc.output_conv2(self._with_uv(out, W / H)).permute(0, 2, 3, 1)  # (BS, H, W, out_dim)
        pred, conf = out[..., :-1], 1.0 + out[..., -1].exp()
        if self.activation == "exp":
            pred = pred.exp()
        else:  # inv_log
            pred = pred.sign() * torch.expm1(pred.abs())
        return pred.reshape(B, S, *pred.shape[1:]), conf.reshape(B, S, *conf.shape[1:])
