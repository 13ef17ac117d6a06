"""FP8 (e4m3) linear layers for the GEN3C DiT: an opt-in speed-up, off by default (issue 18).

``quantize_linears_(module)`` swaps the ``nn.Linear`` layers inside ``module`` (the transformer blocks)
for :class:`Fp8Linear`: the weight is stored once as float8_e4m3 with one scale per output channel;
each call scales the activations per row (token) to float8 and multiplies with ``torch._scaled_mm``
(rowwise scales, bf16 output; Hopper / Ada GPUs), the same arithmetic as torchao's
``float8_dynamic_activation_float8_weight`` with rowwise granularity. Why not torchao itself: it is not
on the GPU image, and its rowwise float8 path ends in this very ``torch._scaled_mm`` call.

On a CPU (tests) or a GPU without FP8 matmuls, ``Fp8Linear`` computes the same quantized product in
float32 (``reference=True``): x_q * s_x @ (w_q * s_w)^T + b, which is what ``_scaled_mm`` computes up to
accumulation order. The deviation from bf16 is measured by ``bench/diffusion_chunk.py`` on the same inputs.
"""

from __future__ import annotations

import torch
from torch import nn

FP8 = torch.float8_e4m3fn
FP8_MAX = float(torch.finfo(FP8).max)  # 448
#: Linears narrower than this stay in bf16 (the quantization overhead outweighs the matmul there).
MIN_FEATURES = 256


def quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(M, K) -> (float8 (M, K), float32 (M, 1) scale) with x ~= q * scale, per row absmax -> 448."""
    amax = x.abs().amax(dim=-1, keepdim=True).float().clamp(min=1e-12)
    scale = amax / FP8_MAX
    q = (x.float() / scale).clamp(-FP8_MAX, FP8_MAX).to(FP8)
    return q, scale


class Fp8Linear(nn.Module):
    """``nn.Linear`` with an fp8 weight (per-output-channel scale) and fp8 per-token activations."""

    def __init__(self, linear: nn.Linear, reference: bool | None = None):
        super().__init__()
        w = linear.weight.detach()
        q, scale = quantize_rows(w)  # (N, K), (N, 1)
        self.register_buffer("weight_fp8", q)
        self.register_buffer("weight_scale", scale)
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach(), requires_grad=False)
        self.out_dtype = w.dtype
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.reference = (not fp8_matmul_available(w.device)) if reference is None else reference

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x2 = x.reshape(-1, shape[-1])
        xq, xs = quantize_rows(x2)
        if self.reference:
            y = (xq.float() * xs) @ (self.weight_fp8.float() * self.weight_scale).t()
            if self.bias is not None:
                y = y + self.bias.float()
            y = y.to(self.out_dtype)
        else:
            y = torch._scaled_mm(xq, self.weight_fp8.t(), scale_a=xs, scale_b=self.weight_scale.t(),
                                 bias=self.bias, out_dtype=self.out_dtype)  # fmt: skip
        return y.reshape(*shape[:-1], self.out_features)


def fp8_matmul_available(device: torch.device) -> bool:
    """True on CUDA devices with FP8 tensor cores (compute capability >= 8.9)."""
    if device.type != "cuda" or not torch.cuda.is_available():
        return False
    return torch.cuda.get_device_capability(device) >= (8, 9)


def quantize_linears_(
    module: nn.Module, min_features: int | None = None, reference: bool | None = None
) -> int:
    """Replace every ``nn.Linear`` in ``module`` with both dimensions >= ``min_features`` (and multiples
    of 16, as ``_scaled_mm`` needs) by :class:`Fp8Linear`, in place; returns how many were replaced.
    min_features None = :data:`MIN_FEATURES`."""
    min_features = MIN_FEATURES if min_features is None else min_features
    count = 0
    for name, child in list(module.named_children()):
        if isinstance(child, nn.Linear):
            k, n = child.in_features, child.out_features
            if k >= min_features and n >= min_features and k % 16 == 0 and n % 16 == 0:
                setattr(module, name, Fp8Linear(child, reference))
                count += 1
        else:
            count += quantize_linears_(child, min_features, reference)
    return count
