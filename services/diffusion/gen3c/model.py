"""``Gen3cModel``: GEN3C-Cosmos-7B behind the :class:`~objvid.diffusion.base.VideoModel` contract.

One call generates one chunk of ``chunk_frames`` frames (121 for the released model):
1. prompt embeddings (T5, or zeros when the weights have no text encoder), cached per prompt;
2. VAE: condition latent of the first frame padded to the chunk, cache latents of every buffer slot;
3. EDM Euler sampling with condition replacement and classifier-free guidance (``sampler.py``);
4. VAE decode and ``uint8`` conversion as upstream: ``(1 + x).clamp(0, 2) / 2 * 255`` truncated.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

from objvid.diffusion.base import ChunkInputs, GenerateOptions, Progress, ProgressFn, VideoModel
from objvid.diffusion.gen3c import conditioning, memory, sampler, transformer, weights
from objvid.diffusion.gen3c.compile_cache import use_compile_cache
from objvid.diffusion.gen3c.config import TRANSFORMER_DIR, VAE_DIR, Gen3cConfig
from objvid.diffusion.gen3c.fp8 import fp8_matmul_available, quantize_linears_
from objvid.diffusion.gen3c.gelu_epilogue import fuse_ffn_gelu_
from objvid.diffusion.gen3c.memory import GpuMemoryError, Offload
from objvid.diffusion.gen3c.text import load_prompt_encoder
from objvid.diffusion.gen3c.vae import Gen3cVae, load_vae

log = logging.getLogger("objvid.diffusion.gen3c")
TRANSFORMER_CLASS = "CosmosTransformer3DModel"
PROMPT_CACHE_SIZE = 8


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def default_dtype(device: torch.device) -> torch.dtype:
    """bf16 on GPU (upstream precision), float32 on CPU."""
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def load_net(folder: Path, dtype: torch.dtype, device: torch.device) -> transformer.Gen3cNet:
    """Strictly load the ``transformer/`` folder into a :class:`Gen3cNet` (built on meta, weights assigned)."""
    saved = weights.read_config(folder, TRANSFORMER_CLASS)
    model = transformer.build_transformer(saved, device="meta")
    state = weights.read_state_dict(folder, device=device)
    for key in state:  # cast in place: each stored tensor is freed as soon as its cast copy exists
        state[key] = state[key].to(dtype)
    weights.load_into(model, state, f"transformer ({folder})")
    return transformer.Gen3cNet(model.eval().requires_grad_(False))


def video_to_uint8(video: torch.Tensor) -> np.ndarray:
    """(1, 3, T, H, W) float ~[-1, 1] -> (T, H, W, 3) uint8 as upstream: ((1 + x).clamp(0, 2) / 2 * 255) truncated."""
    frames = ((1.0 + video[0].float()).clamp(0, 2) / 2 * 255).to(torch.uint8)
    return frames.permute(1, 2, 3, 0).contiguous().cpu().numpy()


def bf16_round(value: float) -> float:
    """Upstream passes fps to the net as a bf16 tensor; round the same way."""
    return float(torch.tensor(value, dtype=torch.bfloat16))


def check_frame_count(config: Gen3cConfig, num_frames: int) -> None:
    """Raise ValueError unless ``num_frames`` is one GEN3C chunk (``config.chunk_frames``)."""
    if num_frames != config.chunk_frames:
        raise ValueError(
            f"RENDERS frame count T must be {config.chunk_frames} (one GEN3C chunk), got {num_frames}"
        )


def check_chunk_size(
    config: Gen3cConfig, max_latent_size: tuple[int, int, int], height: int, width: int, token_split: int = 1
) -> None:
    """Raise ValueError when (H, W) is outside what the positional embedding covers, or when the chunk's
    token count does not split evenly over ``token_split`` context-parallel ranks."""
    s = config.spatial_compression
    _, max_h, max_w = max_latent_size
    if height % (2 * s) or width % (2 * s):
        raise ValueError(f"RENDERS height and width must be multiples of {2 * s}, got {height}x{width}")
    if height // s > max_h or width // s > max_w:
        raise ValueError(
            f"RENDERS {height}x{width} exceeds GEN3C's maximum of {max_h * s}x{max_w * s} pixels"
        )
    tokens = config.latent_frames * (height // s // 2) * (width // s // 2)
    if tokens % token_split:
        raise ValueError(
            f"RENDERS {height}x{width} gives {tokens} tokens, which do not split evenly over {token_split} "
            "context-parallel ranks"
        )


class Gen3cModel(VideoModel):
    """GEN3C (nv-tlabs, Cosmos-7B) chunk generator. Thread-safe: one ``generate`` at a time.

    net: the denoiser; vae: tokenizer wrapper; prompt_encoder: T5 or zeros; device/dtype: compute placement;
    offload: parts kept in CPU memory between uses; cfg_batch: run the conditional and unconditional passes as
    one batch of 2 (more memory) instead of two passes.
    """

    name = "gen3c"
    preview = False

    def __init__(
        self,
        net: transformer.Gen3cNet,
        vae: Gen3cVae,
        prompt_encoder,
        config: Gen3cConfig,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        offload: Offload | str | None = None,
        cfg_batch: bool = False,
    ):
        self.device = torch.device(device) if device is not None else default_device()
        self.dtype = dtype or default_dtype(self.device)
        self.offload = Offload.parse(offload)
        self.config = config
        self.cfg_batch = bool(cfg_batch)
        self.schedule = sampler.EdmSchedule(config.sigma_min, config.sigma_max, config.sigma_data, config.rho)
        if net.frame_buffer_max != config.frame_buffer_max:
            raise ValueError(
                f"transformer has {net.frame_buffer_max} cache slots, gen3c.json says {config.frame_buffer_max}"
            )
        if int(net.transformer.config.text_embed_dim) != prompt_encoder.embed_dim:
            raise ValueError("transformer text_embed_dim does not match the prompt encoder width")
        if vae.pixel_chunk_frames != config.chunk_frames:
            raise ValueError("VAE chunk length does not match gen3c.json chunk_frames")
        self.net = net.to(dtype=self.dtype)
        self.vae = vae
        # nn.Module.to: diffusers' ModelMixin.to warns about fp32 modules that this VAE does not have.
        torch.nn.Module.to(self.vae.autoencoder, dtype=self.dtype)
        self.prompt_encoder = prompt_encoder
        self.sizes = {
            "transformer": memory.module_bytes(self.net),
            "vae": memory.module_bytes(self.vae),
            "text_encoder": int(prompt_encoder.nbytes),
        }
        memory.check_fits(self.device, self.offload, self.sizes, {}, "weights")
        self._place()
        self._lock = threading.Lock()
        self._prompt_cache: OrderedDict[str, torch.Tensor] = OrderedDict()

    def _place(self) -> None:
        try:
            self.net.to(self.device if not self.offload.transformer else "cpu")
            self.vae.to(self.device if not self.offload.vae else "cpu")
            self.prompt_encoder.to(self.device if not self.offload.text_encoder else "cpu")
        except Exception as exc:
            if memory.is_oom(exc):
                raise memory.oom_error(exc, "loading the weights", self.offload, self.sizes) from exc
            raise

    @classmethod
    def from_pretrained(
        cls,
        weights_dir: str | Path,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        offload: Offload | str | None = None,
        attention_backend: str | None = "auto",
        fast_attention: bool = True,
        compile_blocks: bool | None = None,
        cfg_batch: bool = False,
        load_text_encoder: bool = True,
        fp8: bool = False,
        compile_cache: str | None = None,
        gelu_epilogue: bool | None = None,
    ) -> Gen3cModel:
        """Load a weights directory written by ``objvid-diffusion convert``.

        attention_backend: SDPA backend ("flash", "cudnn", "efficient", "math", None = PyTorch's choice),
        "fa4" (FlashAttention-4, package flash-attn-4), or "auto"
        (:func:`~objvid.diffusion.gen3c.transformer.resolve_attention_backend`: fa4 where it runs, else cudnn
        on CUDA, None on CPU);
        fast_attention: use :class:`~objvid.diffusion.gen3c.transformer.FastCosmosAttnProcessor`;
        compile_blocks: ``torch.compile`` each transformer block (first call is slow); None = on CUDA only;
        load_text_encoder: False = zero prompt encoder even when the weights have T5 (worker ranks > 0 of a
        multi-GPU group receive the embeddings from rank 0);
        fp8: opt-in FP8 (e4m3) linear layers in the transformer blocks (:mod:`~objvid.diffusion.gen3c.fp8`;
        needs FP8 tensor cores on CUDA; on a CPU the same quantized arithmetic in float32, for tests);
        compile_cache: directory for ``torch.compile``'s caches (:mod:`~objvid.diffusion.gen3c.compile_cache`);
        gelu_epilogue: the feed-forward's GELU inside its first GEMM (:mod:`~objvid.diffusion.gen3c.gelu_epilogue`:
        cuBLASLt's tanh GELU, 0.8 % faster per step on an H200, deviation at the bf16 noise floor); None = on
        CUDA unless fp8 (whose linears it would replace); not with fp8.
        Defaults follow docs/performance.md: cuDNN attention + compiled blocks reach 78% of the bf16 matmul
        ceiling per DiT forward (3.60 s, H100) against 65% (4.35 s) for diffusers' default; FlashAttention-4
        makes the forward 6 % faster again (3.42 s vs 3.65 s, H200, 2026-12-02).
        """
        weights_dir = Path(weights_dir)
        if not weights_dir.is_dir():
            raise FileNotFoundError(f"GEN3C weights directory {weights_dir} does not exist")
        device = torch.device(device) if device is not None else default_device()
        dtype = dtype or default_dtype(device)
        offload = Offload.parse(offload)
        config = Gen3cConfig.load(weights_dir)
        t0 = time.perf_counter()
        load_device = device if (device.type == "cuda" and not offload.transformer) else torch.device("cpu")
        # A bad cache path is a configuration error even when nothing compiles; set before FA4 is imported.
        if compile_cache:
            use_compile_cache(compile_cache)
        attention_auto = attention_backend == "auto"
        attention_backend = transformer.resolve_attention_backend(attention_backend, device, dtype)
        if compile_blocks is None:
            compile_blocks = device.type == "cuda"
        if gelu_epilogue is None:
            gelu_epilogue = device.type == "cuda" and not fp8
        if gelu_epilogue and fp8:
            raise ValueError("gelu_epilogue and fp8 are exclusive: FP8 replaces the feed-forward's linear")
        if fp8 and device.type == "cuda" and not fp8_matmul_available(device):
            raise ValueError(f"fp8 needs FP8 tensor cores (compute capability >= 8.9); {device} has none")
        try:
            net = load_net(weights_dir / TRANSFORMER_DIR, dtype, load_device)
        except Exception as exc:
            if memory.is_oom(exc):
                sizes = {"transformer": 0}
                raise memory.oom_error(exc, "loading the transformer", offload, sizes) from exc
            raise
        net.attention_backend = attention_backend
        net.attention_auto = attention_auto  # a multi-GPU group may swap an automatic fa4 for cuDNN
        if attention_backend == "fa4":
            transformer.use_fast_attention(net.transformer, kernel="fa4")
        elif fast_attention:
            transformer.use_fast_attention(net.transformer)
        if fp8:  # before compiling, so the compiled graph has the FP8 matmuls
            count = quantize_linears_(net.transformer.transformer_blocks)
            log.info("event=gen3c_fp8 linears=%d", count)
        if gelu_epilogue:  # before compiling, so the compiled graph has the fused GEMM
            count = fuse_ffn_gelu_(net.transformer.transformer_blocks)
            log.info("event=gen3c_gelu_epilogue feed_forwards=%d", count)
        if compile_blocks:
            transformer.compile_blocks(net.transformer)
        vae = Gen3cVae(load_vae(weights_dir / VAE_DIR), config.chunk_frames, config.sigma_data)
        prompt_encoder = load_prompt_encoder(  # float32 as upstream; embeddings are cast to `dtype` on use
            weights_dir,
            config.has_text_encoder and load_text_encoder,
            config.text_max_length,
            config.text_embed_dim,
            torch.float32,
        )
        model = cls(
            net, vae, prompt_encoder, config, device=device, dtype=dtype, offload=offload, cfg_batch=cfg_batch
        )
        log.info(
            "event=gen3c_loaded dir=%s device=%s dtype=%s offload=%s seconds=%.1f",
            weights_dir,
            device,
            str(dtype).replace("torch.", ""),
            ",".join(offload.names()) or "none",
            time.perf_counter() - t0,
        )
        return model

    # -- contract ---------------------------------------------------------------------------------------------

    @property
    def chunk_frames(self) -> int:
        return self.config.chunk_frames

    def check_frames(self, num_frames: int) -> None:
        check_frame_count(self.config, num_frames)

    def check_size(self, height: int, width: int) -> None:
        """Raise ValueError when (H, W) is outside what the positional embedding covers."""
        check_chunk_size(self.config, self.net.max_latent_size, height, width, self.token_split)

    def generate(
        self, chunk: ChunkInputs, options: GenerateOptions, progress: ProgressFn | None = None
    ) -> np.ndarray:
        """Generate one chunk -> (T, H, W, 3) uint8; frame 0 reproduces the first frame (through the VAE)."""
        options.validate()
        self.check_frames(chunk.num_frames)
        self.check_size(chunk.height, chunk.width)
        if chunk.num_slots > self.config.frame_buffer_max and options.view_fusion != "latent-max":
            raise ValueError(
                f"RENDERS buffer slots N must be <= {self.config.frame_buffer_max}, got {chunk.num_slots}"
            )
        emit = self._emitter(progress)
        with self._lock, torch.inference_mode():
            self._check_working_memory(chunk, options)
            t0 = time.perf_counter()
            stage = "text encoding"
            try:
                text_cond, text_uncond = self._prompt_pair(options.prompt, options.negative_prompt)
                stage = "VAE encoding"
                cond_latent, cache_latents = self._encode_inputs(chunk, emit, options.view_fusion)
                stage = "denoising"
                latent = self._denoise(cond_latent, cache_latents, text_cond, text_uncond, options, emit)
                stage = "VAE decoding"
                frames = self._decode(latent, emit)
            except GpuMemoryError:
                raise
            except Exception as exc:
                if memory.is_oom(exc):
                    raise memory.oom_error(exc, stage, self.offload, self.sizes) from exc
                raise
        log.info(
            "event=gen3c_chunk frames=%d size=%dx%d slots=%d steps=%d guidance=%g seconds=%.1f",
            chunk.num_frames,
            chunk.height,
            chunk.width,
            chunk.num_slots,
            options.num_steps,
            options.guidance,
            time.perf_counter() - t0,
        )
        return frames

    # -- stages (each a method: objvid.diffusion.parallel.model overrides them for multi-GPU) ---------------

    #: ranks that share one forward's tokens (context parallelism); 1 in a single process
    token_split = 1

    def _emitter(self, progress: ProgressFn | None) -> ProgressFn:
        return progress or (lambda _p: None)

    def _decode(self, latent: torch.Tensor, emit: ProgressFn) -> np.ndarray:
        """(1, 16, T', h, w) latent -> (T, H, W, 3) uint8."""
        emit(Progress("decode", 0, 1, "decoding latent"))
        with memory.on_device(self.vae, self.device, self.offload.vae):
            video = self.vae.decode(latent.to(self.device))
        frames = video_to_uint8(video)
        emit(Progress("decode", 1, 1, "decoded"))
        return frames

    def _check_working_memory(self, chunk: ChunkInputs, options: GenerateOptions) -> None:
        s = self.config.spatial_compression
        tokens = (
            self.config.latent_frames * (chunk.height // s // 2) * (chunk.width // s // 2) // self.token_split
        )
        batch = 2 if (self.cfg_batch and options.guidance != 0) else 1
        hidden = int(
            self.net.transformer.config.num_attention_heads * self.net.transformer.config.attention_head_dim
        )
        working = {
            "transformer": memory.dit_activation_bytes(tokens, hidden, batch),
            "vae": memory.vae_working_bytes(chunk.num_frames, chunk.height, chunk.width),
        }
        memory.check_fits(self.device, self.offload, self.sizes, working, f"at {chunk.height}x{chunk.width}")

    def _prompt_pair(self, prompt: str, negative: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(1, L, D) embeddings of the prompt and of the unconditional branch (negative prompt, or the prompt
        itself when empty: upstream passes no negative embedding and the uncond branch reuses the prompt's)."""
        wanted = [prompt, negative] if negative else [prompt]
        missing = [p for p in dict.fromkeys(wanted) if p not in self._prompt_cache]
        if missing:
            with memory.on_device(self.prompt_encoder, self.device, self.offload.text_encoder):
                embeds = self.prompt_encoder.encode(missing)
            for text, emb in zip(missing, embeds, strict=True):
                self._prompt_cache[text] = emb[None]
                while len(self._prompt_cache) > PROMPT_CACHE_SIZE:
                    self._prompt_cache.popitem(last=False)
        cond = self._prompt_cache[prompt]
        uncond = self._prompt_cache[negative] if negative else cond
        return cond.to(self.device, self.dtype), uncond.to(self.device, self.dtype)

    def _encode_inputs(self, chunk: ChunkInputs, emit: ProgressFn,
                       view_fusion: str = "select") -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        total = 1 + 2 * chunk.num_slots
        done = [0]

        def tick(message: str) -> None:
            done[0] += 1
            emit(Progress("encode", done[0], total, message))

        emit(Progress("encode", 0, total, "encoding first frame and cache buffers"))
        vae_dtype = self.vae.dtype
        with memory.on_device(self.vae, self.device, self.offload.vae):
            cond_latent = self._condition_latent(chunk)
            tick("first frame")
            encode_cache = conditioning.encode_cache_latents
            if view_fusion == "latent-max":  # the multi-view fork's vector-max over all views
                from .view_fusion import encode_latent_max as encode_cache
            cache_latents = encode_cache(
                self.vae.encode,
                chunk.renders,
                chunk.masks,
                self.config.frame_buffer_max,
                self.device,
                vae_dtype,
                on_video=lambda: tick("cache buffer"),
            )
        return cond_latent, cache_latents

    def _condition_latent(self, chunk: ChunkInputs) -> torch.Tensor:
        """(1, 16, T', h, w) float32 condition latent of the first frame (one frame encoded, the rest zero)."""
        cfg = self.config
        return conditioning.encode_condition_latent(
            self.vae.encode_prefix,
            chunk.first_frame,
            cfg.num_condition_latents,
            cfg.temporal_compression,
            cfg.latent_frames,
            self.device,
            self.vae.dtype,
        )

    def _denoise(
        self,
        cond_latent: torch.Tensor,
        cache_latents: torch.Tensor,
        text_cond: torch.Tensor,
        text_uncond: torch.Tensor,
        options: GenerateOptions,
        emit: ProgressFn,
    ) -> torch.Tensor:
        dev, dt = self.device, self.dtype
        _, _, t_lat, h, w = cond_latent.shape
        indicator = conditioning.condition_indicator(t_lat, self.config.num_condition_latents, dev)
        cmask = conditioning.condition_mask(indicator, h, w).to(dt)
        cache = cache_latents.to(dev, dt)
        fps = bf16_round(options.fps)
        denoise = self._denoise_fn(cmask, cache, text_cond, text_uncond, fps, options.guidance)
        shape = tuple(cond_latent.shape)
        emit(Progress("denoise", 0, options.num_steps, "sampling"))
        with memory.on_device(self.net, dev, self.offload.transformer):
            return sampler.sample(
                denoise,
                noise=sampler.initial_noise(shape, options.seed, options.chunk_index).to(dev),
                gt_latent=cond_latent.to(dev),
                indicator=indicator,
                schedule=self.schedule,
                num_steps=options.num_steps,
                guidance=options.guidance,
                condition_augment_sigma=self.config.condition_augment_sigma,
                augment=sampler.augment_noise(shape, options.seed).to(dev),
                on_step=lambda i, n: emit(Progress("denoise", i, n, f"step {i}/{n}")),
            )

    def _denoise_fn(
        self,
        cmask: torch.Tensor,
        cache: torch.Tensor,
        text_cond: torch.Tensor,
        text_uncond: torch.Tensor,
        fps: float,
        guidance: float,
    ) -> sampler.DenoiseFn:
        """The sampler's net call: (F_cond, F_uncond or None) float32 for a scaled latent and c_noise."""
        dev, dt = self.device, self.dtype
        net = self.net
        no_cache = torch.zeros_like(cache)
        if self.cfg_batch and guidance != 0:  # the batch-of-2 conditions are the same every step
            text2 = torch.cat([text_cond, text_uncond])
            cmask2 = torch.cat([cmask, cmask])
            cache2 = torch.cat([cache, no_cache])

        def denoise(x_scaled: torch.Tensor, c_noise: float, with_uncond: bool):
            x = x_scaled.to(dev, dt)
            t = torch.full((1,), c_noise, device=dev, dtype=dt)
            if not with_uncond:
                return net(x, t, text_cond, cmask, cache, fps).float(), None
            if self.cfg_batch:
                out = net(torch.cat([x, x]), t.expand(2), text2, cmask2, cache2, fps).float()
                return out[:1], out[1:]
            f_cond = net(x, t, text_cond, cmask, cache, fps).float()
            f_uncond = net(x, t, text_uncond, cmask, no_cache, fps).float()
            return f_cond, f_uncond

        return denoise
