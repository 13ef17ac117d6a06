"""``ParallelGen3cModel``: one rank of a GEN3C worker group (runs inside every worker process).

Every rank runs :meth:`Gen3cModel.generate` on the same request with the same seed; the stages that differ
from one process are overridden here:

- prompt embeddings: computed on rank 0 (the only rank that loads T5) and broadcast;
- VAE encoding: the 1 + 2 N videos (first frame, then warp and mask of each buffer slot) are dealt out round
  robin, each rank encodes its own, and every latent is broadcast from its owner (each video is encoded
  exactly as in one process, so the latents are the same);
- denoising: the DiT is context parallel inside each CFG group (diffusers' hooks, ``plan.py``); with two CFG
  groups, group 0 runs the conditional pass and group 1 the unconditional one and they all-gather the two
  outputs, so every rank applies ``F = F_cond + g (F_cond - F_uncond)`` and the same Euler step to the same
  float32 state (the sampler state stays identical on every rank);
- VAE decoding on rank 0 only (the Cosmos decoder is causal in time: splitting it by frames would change it);
  other ranks return ``None``.

Progress is emitted by rank 0 only; at every progress point rank 0 broadcasts whether the request was
cancelled, so all ranks stop at the same step (:class:`ChunkCancelled`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.distributed as dist

from objvid.diffusion.base import ChunkInputs, Progress, ProgressFn
from objvid.diffusion.gen3c import conditioning, memory, sampler, transformer
from objvid.diffusion.gen3c.model import Gen3cModel
from objvid.diffusion.parallel import plan


class ChunkCancelled(Exception):
    """The request was cancelled; raised on every rank at the same progress point."""


class ParallelGen3cModel(Gen3cModel):
    """A :class:`Gen3cModel` that is rank ``rank`` of ``layout``; call :meth:`attach` after loading."""

    rank = 0
    layout = plan.ParallelLayout(1)
    mesh = None
    #: rank 0: the final latent (1, 16, T', h, w) float32 of the last request (CPU), for checks and benchmarks
    last_latent: torch.Tensor | None = None
    #: rank 0: True when the client cancelled (polled at every progress point)
    cancelled: Callable[[], bool] = staticmethod(lambda: False)

    def attach(self, layout: plan.ParallelLayout, mesh) -> None:
        """Join the initialised default process group: context-parallel hooks on the DiT, CFG groups."""
        self.rank = dist.get_rank()
        self.layout = layout
        self.mesh = mesh
        self.token_split = layout.cp
        kept = plan.rank_attention_backend(
            self.net.attention_backend, getattr(self.net, "attention_auto", False), layout
        )
        if kept != self.net.attention_backend:  # the SDPA processors (the compiled blocks recompile once)
            self.net.attention_backend = kept
            transformer.use_fast_attention(self.net.transformer)
        backend = plan.cp_attention_backend(self.net.attention_backend, layout)
        plan.enable_context_parallel(self.net.transformer, layout, mesh, backend)

    # -- collectives --------------------------------------------------------------------------------------------

    def _broadcast(self, tensor: torch.Tensor, src: int) -> torch.Tensor:
        if self.layout.world_size > 1:
            dist.broadcast(tensor, src=src)
        return tensor

    def _emitter(self, progress: ProgressFn | None) -> ProgressFn:
        def emit(event: Progress) -> None:
            cancel = False
            if self.rank == 0:
                if progress is not None:
                    progress(event)
                cancel = bool(self.cancelled())
            if self.layout.world_size == 1:  # nothing to agree on: no device round trip
                if cancel:
                    raise ChunkCancelled("client cancelled the request")
                return
            flag = self._broadcast(torch.tensor([int(cancel)], device=self.device), src=0)
            if int(flag.item()):
                raise ChunkCancelled("client cancelled the request")

        return emit

    # -- stages -------------------------------------------------------------------------------------------------

    def _prompt_pair(self, prompt: str, negative: str) -> tuple[torch.Tensor, torch.Tensor]:
        if self.rank == 0:
            cond, uncond = super()._prompt_pair(prompt, negative)
        else:
            shape = (1, self.config.text_max_length, self.config.text_embed_dim)
            cond = torch.empty(shape, device=self.device, dtype=self.dtype)
            uncond = torch.empty_like(cond)
        return self._broadcast(cond.contiguous(), 0), self._broadcast(uncond.contiguous(), 0)

    def _encode_inputs(self, chunk: ChunkInputs, emit: ProgressFn,
                       view_fusion: str = "select") -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        if view_fusion != "select":  # the multi-view fork's latent-max: every rank encodes every view itself
            return super()._encode_inputs(chunk, emit, view_fusion)
        world = self.layout.world_size
        dev, vae_dtype = self.device, self.vae.dtype
        makers: list[tuple[str, Callable[[], torch.Tensor]]] = []
        for n in range(chunk.num_slots):
            makers.append(
                ("cache buffer", lambda n=n: conditioning.uint8_to_unit(chunk.renders[:, n], dev, vae_dtype))
            )
            makers.append(
                ("cache buffer", lambda n=n: conditioning.mask_video(chunk.masks[:, n], dev, vae_dtype))
            )
        total = 1 + len(makers)
        s = self.config.spatial_compression
        shape = (
            1,
            self.config.latent_channels,
            self.config.latent_frames,
            chunk.height // s,
            chunk.width // s,
        )
        parts: list[torch.Tensor] = []
        emit(Progress("encode", 0, total, "encoding first frame and cache buffers"))
        with memory.on_device(self.vae, dev, self.offload.vae):
            # One frame (cheap): rank 0 encodes it while the others start on the cache videos' first round.
            cond = (
                self._condition_latent(chunk).contiguous()
                if self.rank == 0
                else torch.empty(shape, device=dev)
            )
            emit(Progress("encode", 1, total, "first frame"))
            for start in range(0, len(makers), world):  # one round: video start + r on rank r
                mine = start + self.rank
                own = self.vae.encode(makers[mine][1]()).float().contiguous() if mine < len(makers) else None
                for index in range(start, min(start + world, len(makers))):
                    owner = index - start
                    latent = own if owner == self.rank else torch.empty(shape, device=dev)
                    parts.append(self._broadcast(latent, owner))
                    emit(Progress("encode", index + 2, total, makers[index][0]))
            cond_latent = self._broadcast(cond, 0)
        parts.extend([torch.zeros_like(cond_latent)] * (2 * (self.config.frame_buffer_max - chunk.num_slots)))
        return cond_latent, torch.cat(parts, dim=1)

    def _denoise_fn(
        self, cmask, cache, text_cond, text_uncond, fps: float, guidance: float
    ) -> sampler.DenoiseFn:
        if (
            self.layout.cfg == 1 or guidance == 0
        ):  # every group runs the same passes (context parallel inside)
            return super()._denoise_fn(cmask, cache, text_cond, text_uncond, fps, guidance)
        dev, dt, net = self.device, self.dtype, self.net
        unconditional = self.layout.cfg_rank(self.rank) == 1
        text = text_uncond if unconditional else text_cond
        branch_cache = torch.zeros_like(cache) if unconditional else cache
        group = self.mesh.get_group("cfg")

        def denoise(x_scaled: torch.Tensor, c_noise: float, with_uncond: bool):
            x = x_scaled.to(dev, dt)
            t = torch.full((1,), c_noise, device=dev, dtype=dt)
            out = net(x, t, text, cmask, branch_cache, fps).float().contiguous()
            # guidance != 0 here, so the sampler always asks for both passes (with_uncond is True)
            both = [torch.empty_like(out) for _ in range(2)]
            dist.all_gather(both, out, group=group)
            return both[0], both[1]

        return denoise

    def _decode(self, latent: torch.Tensor, emit: ProgressFn) -> np.ndarray | None:
        if self.rank == 0:
            self.last_latent = latent.float().cpu()
            return super()._decode(latent, emit)
        emit(Progress("decode", 0, 1, "decoding latent"))  # the same progress points as rank 0
        emit(Progress("decode", 1, 1, "decoded"))
        return None
