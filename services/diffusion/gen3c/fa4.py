"""FlashAttention-4 (package ``flash-attn-4``, CuTe DSL kernels for Hopper sm90 and Blackwell sm100) as one
opaque torch op, so ``torch.compile``'d transformer blocks call it as a single extern kernel.

FA4's Python entry point builds and caches its kernels at call time and cannot be traced by dynamo; a
``torch.library.custom_op`` with a shape-only fake implementation can. The plain reference is
``F.scaled_dot_product_attention`` (same scale 1/sqrt(D), no mask); ``tests/test_cuda_paths.py`` compares them.
"""

from __future__ import annotations

import warnings

import torch

# CuTe DSL and FA4 warn about their own internals (argument adapters, deprecated aliases) on every new kernel
warnings.filterwarnings("ignore", module=r"(cutlass|flash_attn)(\.|$)")

SUPPORTED_CAPABILITY_MAJOR = (9, 10)  # sm90 (H100/H200), sm100 (B200); others use SDPA
SUPPORTED_DTYPES = (torch.bfloat16, torch.float16)


def unavailable_reason(device: torch.device | str, dtype: torch.dtype) -> str | None:
    """Why FA4 cannot run on ``device`` at ``dtype`` (None when it can): package, GPU generation, dtype."""
    device = torch.device(device)
    if device.type != "cuda" or not torch.cuda.is_available():
        return "needs a CUDA device"
    major, minor = torch.cuda.get_device_capability(device)
    if major not in SUPPORTED_CAPABILITY_MAJOR:
        return f"needs compute capability 9.x or 10.x, {device} has {major}.{minor}"
    if dtype not in SUPPORTED_DTYPES:
        return f"needs bfloat16 or float16, the model runs in {dtype}"
    try:
        from flash_attn.cute import flash_attn_func  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - ImportError, or cutlass's RuntimeError for a partial install
        return f"needs the flash-attn-4 package and its CUDA libraries ({type(exc).__name__}: {exc})"
    return None


@torch.library.custom_op("objvid::fa4_attention", mutates_args=())
def fa4_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Softmax attention, scale 1/sqrt(D): q (B, Sq, H, D), k/v (B, Sk, H, D), contiguous, bf16/fp16, CUDA.
    Returns (B, Sq, H, D) in q's dtype."""
    from flash_attn.cute import flash_attn_func

    out = flash_attn_func(q.contiguous(), k.contiguous(), v.contiguous())
    return out[0] if isinstance(out, tuple) else out


@fa4_attention.register_fake
def _fa4_attention_shape(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return q.new_empty((*q.shape[:-1], v.shape[-1]))
