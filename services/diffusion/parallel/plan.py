"""Context parallelism for the GEN3C DiT through diffusers' engine (``ContextParallelConfig`` + CP hooks).

diffusers 0.42.1 has Ulysses and ring attention and generic split/gather hooks driven by a per-model
``_cp_plan``, but ``CosmosTransformer3DModel`` (Cosmos 1, what GEN3C runs on) declares no plan. This module
declares one (:data:`GEN3C_CP_PLAN`) and applies it with diffusers' own pieces:

- ``rope``: its (cos, sin) outputs, each (S, D) float32, are computed for the whole sequence and then split
  along the token axis, so every token keeps the rotation of its true (t, h, w) position;
- ``learnable_pos_embed``: its (B, S, C) output is split the same way after the per-token normalisation;
- ``transformer_blocks.0``: the (B, S, C) patch tokens entering the first block are split into N equal,
  contiguous ranges of the flattened (t, h, w) order, the same ranges as the two embeddings above;
- ``proj_out``: the (B, S_local, p*C) output is all-gathered back to (B, S, p*C) before unpatchify.

Self-attention runs through ``dispatch_attention_fn`` with the parallel config (Ulysses all-to-all on heads,
or ring attention over key/value shards); cross-attention to the prompt is local (its keys are not split).
Everything else in a block (AdaLN, MLP, cross-attention) is per token and needs no communication.

:class:`ParallelLayout` splits a world of N ranks into ``cfg`` groups (classifier-free-guidance parallelism:
group 0 runs the conditional pass, group 1 the unconditional one) of ``ring * ulysses`` context-parallel
ranks each. Rank r sits at mesh coordinate (r // cp, (r % cp) // ulysses, r % ulysses).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

CP_MODES = ("auto", "ulysses", "ring")


def gen3c_cp_plan() -> dict:
    """The context-parallel plan of ``CosmosTransformer3DModel`` as GEN3C calls it (see module docstring)."""
    from diffusers.models._modeling_parallel import ContextParallelInput, ContextParallelOutput

    return {
        "rope": {
            0: ContextParallelInput(split_dim=0, expected_dims=2, split_output=True),
            1: ContextParallelInput(split_dim=0, expected_dims=2, split_output=True),
        },
        "learnable_pos_embed": {0: ContextParallelInput(split_dim=1, expected_dims=3, split_output=True)},
        "transformer_blocks.0": {
            "hidden_states": ContextParallelInput(split_dim=1, expected_dims=3, split_output=False)
        },
        "proj_out": ContextParallelOutput(gather_dim=1, expected_dims=3),
    }


@dataclass(frozen=True)
class ParallelLayout:
    """How N ranks share one chunk. cfg: 1 or 2 guidance groups; ring * ulysses: context-parallel degree."""

    world_size: int
    cfg: int = 1
    ring: int = 1
    ulysses: int = 1

    def __post_init__(self):
        if self.world_size < 1:
            raise ValueError(f"world_size must be >= 1, got {self.world_size}")
        if self.cfg not in (1, 2):
            raise ValueError(f"cfg parallel degree must be 1 or 2, got {self.cfg}")
        if min(self.ring, self.ulysses) < 1 or self.cfg * self.ring * self.ulysses != self.world_size:
            raise ValueError(
                f"cfg {self.cfg} x ring {self.ring} x ulysses {self.ulysses} must equal world_size {self.world_size}"
            )

    @property
    def cp(self) -> int:
        """Context-parallel degree: ranks that share one forward's tokens."""
        return self.ring * self.ulysses

    def cfg_rank(self, rank: int) -> int:
        """0 = the conditional-pass group, 1 = the unconditional one."""
        return rank // self.cp

    def describe(self) -> str:
        return f"world={self.world_size} cfg={self.cfg} ring={self.ring} ulysses={self.ulysses}"


def choose_layout(
    world_size: int, heads: int, cfg_parallel: str | int = "auto", cp_mode: str = "auto"
) -> ParallelLayout:
    """Pick the degrees for ``world_size`` ranks and a DiT with ``heads`` attention heads.

    cfg_parallel: "auto" (2 when the world size is even, else 1), 1 or 2. cp_mode: "ulysses" (all-to-all on
    heads; the context-parallel degree must divide ``heads``), "ring" (key/value shards passed around; needs a
    kernel that returns the log-sum-exp: cuDNN or flash on CUDA) or "auto" (the largest Ulysses degree that
    divides both, ring for the rest). Raises ValueError naming the setting.
    """
    if cp_mode not in CP_MODES:
        raise ValueError(f"cp_mode must be one of {list(CP_MODES)}, got {cp_mode!r}")
    if str(cfg_parallel) == "auto":
        cfg = 2 if world_size >= 2 and world_size % 2 == 0 else 1
    else:
        try:
            cfg = int(cfg_parallel)
        except ValueError:
            raise ValueError(f"cfg_parallel must be auto, 1 or 2, got {cfg_parallel!r}") from None
        if cfg not in (1, 2):
            raise ValueError(f"cfg_parallel must be auto, 1 or 2, got {cfg_parallel!r}")
        if world_size % cfg:
            raise ValueError(f"cfg_parallel {cfg} needs an even world_size, got {world_size}")
    cp = world_size // cfg
    if cp_mode == "ring":
        ulysses = 1
    elif cp_mode == "ulysses":
        if heads % cp:
            raise ValueError(
                f"cp_mode ulysses needs the context-parallel degree ({cp}) to divide the {heads} attention heads"
            )
        ulysses = cp
    else:
        ulysses = math.gcd(cp, heads)
    return ParallelLayout(world_size, cfg=cfg, ring=cp // ulysses, ulysses=ulysses)


def build_mesh(layout: ParallelLayout, device_type: str):
    """The (cfg, ring, ulysses) ``DeviceMesh`` over the default process group."""
    from torch.distributed.device_mesh import init_device_mesh

    return init_device_mesh(
        device_type, (layout.cfg, layout.ring, layout.ulysses), mesh_dim_names=("cfg", "ring", "ulysses")
    )


def rank_attention_backend(
    attention_backend: str | None, automatic: bool, layout: ParallelLayout
) -> str | None:
    """The attention kernel a rank keeps: an automatic ``fa4`` becomes ``cudnn`` under context parallelism
    (FA4 has no context-parallel path); anything else is kept (a named ``fa4`` fails in :func:`cp_attention_backend`)."""
    if layout.cp > 1 and attention_backend == "fa4" and automatic:
        return "cudnn"
    return attention_backend


def cp_attention_backend(attention_backend: str | None, layout: ParallelLayout) -> str:
    """diffusers attention backend for the parallel self-attention.

    Ulysses only: ``native`` (PyTorch SDPA, which still follows :func:`~objvid.diffusion.gen3c.transformer.sdpa_backend`,
    so the kernel is the single-GPU one). With ring attention the kernel must return the log-sum-exp:
    ``_native_cudnn`` (cudnn / auto) or ``_native_flash`` (flash).
    """
    if attention_backend == "fa4":
        raise ValueError(
            "attention_backend fa4 has no context-parallel path; use auto (falls back to cudnn), cudnn or flash"
        )
    if layout.ring == 1:
        return "native"
    table = {"cudnn": "_native_cudnn", "flash": "_native_flash"}
    if attention_backend not in table:
        raise ValueError(
            f"ring attention (ring degree {layout.ring}) needs attention_backend cudnn or flash, got "
            f"{attention_backend!r}; use a context-parallel degree that divides the head count for Ulysses"
        )
    return table[attention_backend]


def enable_context_parallel(transformer: torch.nn.Module, layout: ParallelLayout, mesh, backend: str) -> None:
    """Attach diffusers' context-parallel hooks to a ``CosmosTransformer3DModel`` (no-op when cp == 1).

    The steps of ``ModelMixin.enable_parallelism`` without its device lookup (which divides by the accelerator
    count and so fails on CPU-only PyTorch): a ``ParallelConfig`` set up on our (cfg, ring, ulysses) mesh, the
    config handed to every attention processor that can take it, and the split/gather hooks of the plan.
    The processors must be :class:`~objvid.diffusion.gen3c.transformer.FastCosmosAttnProcessor`.
    """
    if layout.cp == 1:
        return
    import torch.distributed as dist
    from diffusers.hooks.context_parallel import apply_context_parallel
    from diffusers.models._modeling_parallel import ContextParallelConfig, ParallelConfig

    from objvid.diffusion.gen3c.transformer import FastCosmosAttnProcessor

    cp_config = ContextParallelConfig(ring_degree=layout.ring, ulysses_degree=layout.ulysses, mesh=mesh)
    config = ParallelConfig(context_parallel_config=cp_config)
    device = next(transformer.parameters()).device
    config.setup(dist.get_rank(), dist.get_world_size(), device, mesh=mesh)
    for block in transformer.transformer_blocks:
        for attn in (block.attn1, block.attn2):
            if not isinstance(attn.processor, FastCosmosAttnProcessor):
                raise TypeError(
                    "context parallelism needs FastCosmosAttnProcessor (use_fast_attention first)"
                )
        block.attn1.processor.parallel = (
            config,
            backend,
        )  # self-attention only: cross-attention keys are local
    transformer._parallel_config = config
    apply_context_parallel(transformer, cp_config, gen3c_cp_plan())
