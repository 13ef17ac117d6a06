"""The feed-forward's first linear and its GELU as one GEMM with a GELU epilogue (cuBLASLt); CUDA default.

GEN3C's feed-forward is ``Linear(4096 -> 16384) -> GELU (erf) -> Linear(16384 -> 4096)``. Unfused, the GELU
is its own kernel: one read and one write of the (tokens, 16384) activations, ~1.6 ms per block on an H200
at 56,320 tokens (44 ms of a 3.4 s DiT forward). ``torch._addmm_activation(..., use_gelu=True)`` runs the
GELU inside the GEMM's epilogue on the accumulator instead. That epilogue is cuBLASLt's tanh approximation
``0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))``, not upstream's erf GELU: |difference| <= 4.7e-4 (the
bf16 step near 1 is 8e-3). Its effect on a chunk is measured by ``bench/diffusion_chunk.py`` (``-gelu``).

``fuse_ffn_gelu_(blocks)`` swaps each block's ``ff.net[0]`` (diffusers' ``GELU``: ``proj`` + erf) for
:class:`LinearGeluTanh`; :func:`reference_linear_gelu_tanh` is the plain PyTorch arithmetic it must match.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


@torch.library.custom_op("objvid::linear_gelu_tanh", mutates_args=())
def linear_gelu_tanh(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """gelu_tanh(x @ weight^T + bias): x (..., K), weight (N, K), bias (N,) -> (..., N) in x's dtype.

    On CUDA one cuBLASLt GEMM with the GELU epilogue; elsewhere the linear, then the tanh GELU. One opaque
    op for ``torch.compile`` (Inductor would otherwise split it back into a GEMM and a GELU kernel)."""
    if x.device.type != "cuda":  # the CPU kernel of _addmm_activation applies the erf GELU: keep tanh
        return F.gelu(F.linear(x, weight, bias), approximate="tanh")
    flat = x.reshape(-1, x.shape[-1])
    out = torch._addmm_activation(bias, flat, weight.t(), use_gelu=True)
    return out.reshape(*x.shape[:-1], weight.shape[0])


@linear_gelu_tanh.register_fake
def _linear_gelu_tanh_fake(x, weight, bias):
    return x.new_empty((*x.shape[:-1], weight.shape[0]))


def reference_linear_gelu_tanh(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    """The same arithmetic in float64: the linear, then the tanh-approximated GELU written out."""
    y = x.double() @ weight.double().t()
    if bias is not None:
        y = y + bias.double()
    inner = (2.0 / torch.pi) ** 0.5 * (y + 0.044715 * y**3)
    return 0.5 * y * (1.0 + torch.tanh(inner))


class LinearGeluTanh(nn.Module):
    """A diffusers ``GELU`` activation module (``proj`` linear + GELU) as one fused GEMM; same weights."""

    def __init__(self, gelu_module: nn.Module):
        super().__init__()
        self.proj = gelu_module.proj
        out = self.proj.out_features
        bias = self.proj.bias
        if bias is None:  # the epilogue path needs a bias vector: zeros add nothing
            bias = torch.zeros(out, dtype=self.proj.weight.dtype, device=self.proj.weight.device)
        self.register_buffer("epilogue_bias", bias.detach(), persistent=False)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        w = self.proj.weight
        if hidden_states.dtype != w.dtype:
            hidden_states = hidden_states.to(w.dtype)
        return linear_gelu_tanh(hidden_states, w, self.epilogue_bias.to(w.dtype))


def fuse_ffn_gelu_(blocks: nn.Module) -> int:
    """Swap every diffusers ``GELU`` module (an ``nn.Linear`` ``proj``, erf) inside ``blocks`` for
    :class:`LinearGeluTanh`; returns how many. Run before ``torch.compile``; not with FP8 linears."""
    from diffusers.models.activations import GELU

    swaps = []
    for parent in blocks.modules():
        for name, child in parent.named_children():
            if isinstance(child, GELU) and type(child.proj) is nn.Linear and child.approximate == "none":
                swaps.append((parent, name, child))
    for parent, name, child in swaps:
        setattr(parent, name, LinearGeluTanh(child))
    return len(swaps)
