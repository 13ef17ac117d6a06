"""The GEN3C denoiser: diffusers' ``CosmosTransformer3DModel`` in GEN3C's layout, plus a fast attention path.

Input channels of the patch embedding, in upstream order (``VideoExtendGeneralDIT`` then ``GeneralDIT``):
``[noisy latent 16 | condition mask 1 | cache latents 16 * 2 * frame_buffer_max | padding mask 1]``.
The saved diffusers config says ``in_channels = 81, concat_padding_mask = True`` (diffusers' own convention:
``hidden_states`` + ``condition_mask`` + resized ``padding_mask``). At run time the model is built with
``in_channels = 82, concat_padding_mask = False`` (same weights) and :class:`Gen3cNet` concatenates all channels
itself: diffusers' padding-mask path calls ``torchvision.transforms`` (absent on CPU installs) to resize a mask
that upstream always passes as zeros at latent size.

Upstream-fidelity fix: diffusers builds the per-head q/k RMSNorm with eps 1e-5; upstream (Transformer Engine
``RMSNorm``) uses 1e-6, so :func:`set_qk_norm_eps` resets it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from objvid.diffusion.gen3c import fa4
from objvid.diffusion.gen3c.config import LATENT_CHANNELS

UPSTREAM_QK_NORM_EPS = 1e-6
SDPA_BACKENDS = ("default", "flash", "cudnn", "efficient", "math")
# "fa4": FlashAttention-4 (package flash-attn-4, CuTe DSL; Hopper/Blackwell) called directly, not through SDPA.
ATTENTION_BACKENDS = (*SDPA_BACKENDS, "fa4")


def _cosmos_classes():
    from diffusers import CosmosTransformer3DModel

    return CosmosTransformer3DModel


def runtime_config(saved: dict[str, Any]) -> dict[str, Any]:
    """Turn a saved (diffusers-convention) config into the one built at run time (padding channel explicit)."""
    cfg = {k: v for k, v in saved.items() if not k.startswith("_")}
    if cfg.get("concat_padding_mask", True):
        cfg["in_channels"] = int(cfg["in_channels"]) + 1
        cfg["concat_padding_mask"] = False
    for key in ("max_size", "patch_size", "rope_scale"):
        if key in cfg:
            cfg[key] = tuple(cfg[key])
    return cfg


def build_transformer(saved_config: dict[str, Any], device: str | torch.device = "cpu") -> nn.Module:
    """Build ``CosmosTransformer3DModel`` from a saved config on ``device`` ("meta" for loading without init)."""
    cls = _cosmos_classes()
    with torch.device(device):
        model = cls(**runtime_config(saved_config))
    set_qk_norm_eps(model, UPSTREAM_QK_NORM_EPS)
    return model


def set_qk_norm_eps(model: nn.Module, eps: float) -> None:
    """Set the eps of every attention q/k RMSNorm (diffusers default 1e-5, upstream 1e-6)."""
    for block in model.transformer_blocks:
        for attn in (block.attn1, block.attn2):
            attn.norm_q.eps = eps
            attn.norm_k.eps = eps


def _apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate-half RoPE on (B, S, H, D) with cos/sin (S, D) float32; math in float32 like diffusers/TE."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    rotated = torch.cat([-x2, x1], dim=-1)
    cos = cos[None, :, None, :]
    sin = sin[None, :, None, :]
    return (x.float() * cos + rotated.float() * sin).to(x.dtype)


class FastCosmosAttnProcessor:
    """Same math as diffusers' ``CosmosAttnProcessor2_0`` (q/k RMSNorm, rotate-half RoPE, SDPA), without its
    GQA ``repeat_interleave`` copies and layout round trips. kernel "sdpa": the SDPA backend follows the
    caller's ``torch.nn.attention.sdpa_kernel`` context (see :class:`Gen3cNet`); kernel "fa4": FlashAttention-4
    (:mod:`~objvid.diffusion.gen3c.fa4`, one opaque op inside compiled blocks) for the self-attention, SDPA
    (cuDNN first, :func:`sdpa_backend`) for the cross-attention onto 512 text tokens, where FA4 is slower."""

    def __init__(self, kernel: str = "sdpa"):
        if kernel not in ("sdpa", "fa4"):
            raise ValueError(f"attention kernel must be 'sdpa' or 'fa4', got {kernel!r}")
        self.kernel = kernel
        # (diffusers ParallelConfig, backend name) under context parallelism (objvid.diffusion.parallel.plan)
        self.parallel: tuple[Any, str] | None = None

    def __call__(
        self,
        attn,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        image_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        q = attn.to_q(hidden_states).unflatten(2, (attn.heads, -1))  # (B, S, H, D)
        k = attn.to_k(context).unflatten(2, (attn.heads, -1))
        v = attn.to_v(context).unflatten(2, (attn.heads, -1))
        q = attn.norm_q(q)
        k = attn.norm_k(k)
        if image_rotary_emb is not None:
            cos, sin = image_rotary_emb
            q = _apply_rope(q, cos, sin)
            k = _apply_rope(k, cos, sin)
        if self.parallel is not None:  # context parallel: diffusers' Ulysses / ring attention, (B, S, H, D)
            from diffusers.models.attention_dispatch import dispatch_attention_fn

            config, backend = self.parallel
            out = dispatch_attention_fn(q, k, v, backend=backend, parallel_config=config)
            out = out.flatten(2).type_as(q)
        elif self.kernel == "fa4" and attention_mask is None and encoder_hidden_states is None:
            out = fa4.fa4_attention(q, k, v).flatten(2).type_as(q)
        else:
            out = F.scaled_dot_product_attention(
                q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=attention_mask
            )
            out = out.transpose(1, 2).flatten(2).type_as(q)
        return attn.to_out[1](attn.to_out[0](out))


def resolve_attention_backend(requested: str | None, device: torch.device, dtype: torch.dtype) -> str | None:
    """The attention kernel a load uses (:data:`ATTENTION_BACKENDS` or None = PyTorch's SDPA choice).

    "auto": FlashAttention-4 where it runs (:func:`~objvid.diffusion.gen3c.fa4.unavailable_reason`: sm90 /
    sm100, bf16 / fp16, package installed; the fastest measured on the H200, docs/performance.md), else cuDNN
    SDPA on CUDA, PyTorch's choice on a CPU. A named kernel that cannot run is a ValueError naming why.
    """
    if requested == "auto":
        if device.type != "cuda":
            return None
        return "fa4" if fa4.unavailable_reason(device, dtype) is None else "cudnn"
    if requested not in (None, *ATTENTION_BACKENDS):
        raise ValueError(
            f"attention_backend must be one of {('auto', *ATTENTION_BACKENDS)}, got {requested!r}"
        )
    if requested == "fa4":
        reason = fa4.unavailable_reason(device, dtype)
        if reason is not None:
            raise ValueError(f"attention_backend fa4 {reason}")
    return requested


def use_fast_attention(model: nn.Module, enabled: bool = True, kernel: str = "sdpa") -> None:
    """Switch every attention of the transformer to :class:`FastCosmosAttnProcessor` (or back to diffusers')."""
    from diffusers.models.transformers.transformer_cosmos import CosmosAttnProcessor2_0

    for block in model.transformer_blocks:
        for attn in (block.attn1, block.attn2):
            attn.set_processor(FastCosmosAttnProcessor(kernel) if enabled else CosmosAttnProcessor2_0())


def compile_blocks(model: nn.Module, mode: str | None = None, options: dict | None = None) -> None:
    """``torch.compile`` each transformer block (regional compilation: one graph reused by all 28 blocks).

    options: Inductor options (``torch.compile(options=...)``; ``bench/diffusion_bench.py`` measures kernel
    tuning and GEMM autotuning this way); not with ``mode``, which sets its own."""
    if options and mode is not None:
        raise ValueError("compile_blocks: options and mode are exclusive")
    for block in model.transformer_blocks:
        block.compile(mode=mode, options=options, dynamic=False)


@contextlib.contextmanager
def sdpa_backend(name: str | None) -> Iterator[None]:
    """Restrict SDPA to one backend ("flash", "cudnn", "efficient", "math"); None/"default" = PyTorch's choice;
    "fa4": the SDPA calls beside FA4 (cross-attention) in the order cuDNN, flash, mem-efficient."""
    if name in (None, "default"):
        yield
        return
    from torch.nn.attention import SDPBackend, sdpa_kernel

    if name == "fa4":  # FA4 runs the self-attention; cross-attention onto the text is faster in cuDNN
        with sdpa_kernel([SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION],
                         set_priority=True):  # fmt: skip
            yield
        return

    table = {
        "flash": SDPBackend.FLASH_ATTENTION,
        "cudnn": SDPBackend.CUDNN_ATTENTION,
        "efficient": SDPBackend.EFFICIENT_ATTENTION,
        "math": SDPBackend.MATH,
    }
    if name not in table:
        raise ValueError(f"attention backend must be one of {ATTENTION_BACKENDS}, got {name!r}")
    with sdpa_kernel([table[name]]):
        yield


class Gen3cNet(nn.Module):
    """GEN3C denoiser network F(x, c_noise | conditions) (the raw net output, before EDM preconditioning).

    Args of forward:
        x: (B, 16, T', h, w) noisy latent already scaled by c_in, model dtype;
        timestep: (B,) c_noise = 0.25 log(sigma), model dtype (upstream casts it to bf16);
        text: (B, L, text_embed_dim) T5 embeddings (zeros past the prompt's tokens);
        condition_mask: (B, 1, T', h, w), 1 on condition latent frames;
        cache_latents: (B, 16 * 2 * frame_buffer_max, T', h, w) ``[warp_0, mask_0, warp_1, mask_1]``;
        fps: frames per second (RoPE time axis is scaled by 24 / fps).
    Returns (B, 16, T', h, w) in model dtype.
    """

    def __init__(self, transformer: nn.Module, attention_backend: str | None = None):
        super().__init__()
        if transformer.config.concat_padding_mask:
            raise ValueError(
                "Gen3cNet needs the runtime layout (concat_padding_mask=False); use build_transformer"
            )
        self.transformer = transformer
        self.attention_backend = attention_backend
        width = int(transformer.config.in_channels)
        self.cache_channels = width - LATENT_CHANNELS - 2
        if self.cache_channels <= 0 or self.cache_channels % (2 * LATENT_CHANNELS):
            raise ValueError(f"transformer in_channels {width} is not a GEN3C layout (16 + 1 + 32k + 1)")

    @property
    def frame_buffer_max(self) -> int:
        return self.cache_channels // (2 * LATENT_CHANNELS)

    @property
    def dtype(self) -> torch.dtype:
        return self.transformer.patch_embed.proj.weight.dtype

    @property
    def max_latent_size(self) -> tuple[int, int, int]:
        """Largest (T', h, w) the learnable positional embedding covers."""
        return tuple(int(s) for s in self.transformer.config.max_size)

    def forward(
        self,
        x: torch.Tensor,
        timestep: torch.Tensor,
        text: torch.Tensor,
        condition_mask: torch.Tensor,
        cache_latents: torch.Tensor,
        fps: float,
    ) -> torch.Tensor:
        padding = x.new_zeros((x.shape[0], 1, *x.shape[2:]))
        net_in = torch.cat([x, condition_mask.to(x.dtype), cache_latents.to(x.dtype), padding], dim=1)
        with sdpa_backend(self.attention_backend):
            out = self.transformer(
                hidden_states=net_in,
                timestep=timestep,
                encoder_hidden_states=text.to(x.dtype),
                fps=fps,
                return_dict=False,
            )[0]
        return out
