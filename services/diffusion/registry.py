"""Load a :class:`VideoModel` by name: ``preview`` (CPU hole filling) or ``gen3c`` (needs converted weights).

Both adapters (Triton Python backend, PyTriton) and the CLI go through :func:`load_model`; the Triton
backend builds :class:`ModelSettings` from the model's ``config.pbtxt`` parameters with
:func:`settings_from_parameters`. GEN3C (torch, diffusers) is imported only when ``gen3c`` is loaded.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping

from objvid.diffusion.base import VideoModel

log = logging.getLogger("objvid.diffusion.registry")

MODEL_NAMES = ("preview", "gen3c")
#: GEN3C parts that can live on the CPU between uses (upstream: text encoder, tokenizer = VAE, diffusion
#: transformer); same names as ``objvid.diffusion.gen3c.OFFLOAD_PARTS``.
OFFLOAD_PARTS = ("text_encoder", "vae", "transformer")
DTYPES = ("auto", "bfloat16", "float16", "float32")


@dataclasses.dataclass(frozen=True)
class ModelSettings:
    """How to load a model.

    weights_dir: converted GEN3C directory (``objvid-diffusion convert``), gen3c only.
    device: ``cpu``, ``cuda`` or ``cuda:<index>``. dtype: ``auto`` = bfloat16 on CUDA, float32 on CPU.
    offload: subset of :data:`OFFLOAD_PARTS` kept on the CPU between uses (gen3c only).
    cfg_batch: run GEN3C's conditional and unconditional passes as one batch of 2 (faster, more memory).
    attention_backend: GEN3C attention kernel (auto = fa4 where it runs, else cudnn on CUDA; fa4, flash, cudnn,
    efficient, math, default).
    compile: torch.compile the GEN3C blocks: auto (CUDA only), true, false.
    compile_cache: directory for torch.compile's caches (kept across restarts); None = Inductor's default.
    fp8: opt-in FP8 linear layers in the GEN3C transformer blocks (Hopper/Ada; measured in docs/performance.md).
    gelu_epilogue: the feed-forward's GELU in its GEMM's epilogue (tanh GELU): auto (CUDA unless fp8), true, false.
    inpaint_radius (working-resolution pixels) and inpaint_max_side (pixels): preview only.
    world_size: gen3c processes (one per GPU from ``device`` on, or CPU processes with gloo); > 1 starts a
    worker group (``objvid.diffusion.parallel``). cfg_parallel: auto, 1 or 2 guidance groups;
    cp_mode: auto, ulysses or ring (how each group splits the tokens).
    """

    weights_dir: str | None = None
    device: str = "cpu"
    dtype: str = "auto"
    offload: tuple[str, ...] = ()
    cfg_batch: bool = False
    attention_backend: str = "auto"
    compile: str = "auto"
    compile_cache: str | None = None
    fp8: bool = False
    gelu_epilogue: str = "auto"
    inpaint_radius: int = 3
    inpaint_max_side: int = 320
    world_size: int = 1
    cfg_parallel: str = "auto"
    cp_mode: str = "auto"

    def __post_init__(self):
        unknown = sorted(set(self.offload) - set(OFFLOAD_PARTS))
        if unknown:
            raise ValueError(f"offload: unknown part(s) {unknown}; choose from {list(OFFLOAD_PARTS)}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {list(DTYPES)}, got {self.dtype!r}")
        for key in ("compile", "gelu_epilogue"):
            if getattr(self, key) not in ("auto", "true", "false"):
                raise ValueError(f"{key} must be auto, true or false, got {getattr(self, key)!r}")
        if not (self.device == "cpu" or self.device == "cuda" or self.device.startswith("cuda:")):
            raise ValueError(f"device must be cpu, cuda or cuda:<index>, got {self.device!r}")
        if not 1 <= self.world_size <= 64:
            raise ValueError(f"world_size must be in [1, 64], got {self.world_size}")
        if self.cfg_parallel not in ("auto", "1", "2"):
            raise ValueError(f"cfg_parallel must be auto, 1 or 2, got {self.cfg_parallel!r}")
        if self.cp_mode not in ("auto", "ulysses", "ring"):
            raise ValueError(f"cp_mode must be auto, ulysses or ring, got {self.cp_mode!r}")

    def torch_dtype(self):
        """The torch dtype to load GEN3C in (imports torch)."""
        import torch

        if self.dtype == "auto":
            return torch.bfloat16 if self.device.startswith("cuda") else torch.float32
        return getattr(torch, self.dtype)


def load_model(name: str, settings: ModelSettings | None = None) -> VideoModel:
    """Build the model ``name`` (one of :data:`MODEL_NAMES`); raise ValueError for bad settings."""
    settings = settings or ModelSettings()
    if name == "preview":
        from objvid.diffusion.preview import PreviewModel

        model: VideoModel = PreviewModel(radius=settings.inpaint_radius, max_side=settings.inpaint_max_side)
    elif name == "gen3c":
        if not settings.weights_dir:
            raise ValueError("gen3c needs weights_dir: a directory written by `objvid-diffusion convert`")
        weights_dir = os.path.expanduser(os.path.expandvars(settings.weights_dir))
        if not os.path.isdir(weights_dir):
            raise ValueError(f"gen3c weights_dir {weights_dir!r} is not a directory")
        if settings.world_size > 1:
            from objvid.diffusion.parallel.group import start_group_model

            return start_group_model(weights_dir, settings)
        from objvid.diffusion.gen3c import Gen3cModel  # torch + diffusers: import only when asked

        model = Gen3cModel.from_pretrained(
            weights_dir, device=settings.device, dtype=settings.torch_dtype(), **gen3c_load_options(settings)
        )
    else:
        raise ValueError(f"unknown model {name!r}; choose from {list(MODEL_NAMES)}")
    log.info(
        "event=model_loaded model=%s device=%s dtype=%s offload=%s weights_dir=%s",
        name, settings.device, settings.dtype, ",".join(settings.offload) or "none", settings.weights_dir,
    )  # fmt: skip
    return model


def gen3c_load_options(settings) -> dict:
    """``Gen3cModel.from_pretrained`` keyword arguments (besides device and dtype) of ``settings``: a
    :class:`ModelSettings`, or a multi-GPU worker's spec, which carries the same fields."""
    return {
        "offload": ",".join(settings.offload),
        "cfg_batch": settings.cfg_batch,
        "attention_backend": None if settings.attention_backend == "default" else settings.attention_backend,
        "compile_blocks": None if settings.compile == "auto" else settings.compile == "true",
        "fp8": settings.fp8,
        "compile_cache": settings.compile_cache,
        "gelu_epilogue": None if settings.gelu_epilogue == "auto" else settings.gelu_epilogue == "true",
    }


def parse_bool(text: str, key: str) -> bool:
    """'true'/'false' (also 1/0, yes/no, on/off) -> bool; ValueError naming ``key`` otherwise."""
    value = str(text).strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"{key} must be true or false, got {text!r}")


def settings_from_parameters(parameters: Mapping[str, str], device: str) -> ModelSettings:
    """Triton ``config.pbtxt`` parameters (string values) -> :class:`ModelSettings`.

    Keys: weights_dir, dtype, attention_backend, compile, compile_cache, fp8, gelu_epilogue, offload_text_encoder, offload_vae, offload_transformer, cfg_batch,
    inpaint_radius, inpaint_max_side, world_size, cfg_parallel, cp_mode, cache_address, cache_token, cache_ready_file (read by ``cache_source``) (and ``model``, the registry name when it differs from the Triton name). Unknown keys raise ValueError (catches typos in the config).
    """
    known = {
        "model",
        "weights_dir",
        "dtype",
        "cfg_batch",
        "attention_backend",
        "compile",
        "compile_cache",
        "fp8",
        "gelu_epilogue",
    }
    known |= {"world_size", "cfg_parallel", "cp_mode"}
    known |= {"inpaint_radius", "inpaint_max_side"}
    # RENDER_SOURCE (objvid.diffusion.cache_source), not settings
    known |= {"cache_address", "cache_token", "cache_ready_file"}
    known |= {f"offload_{part}" for part in OFFLOAD_PARTS}
    unknown = sorted(set(parameters) - known)
    if unknown:
        raise ValueError(f"unknown model parameter(s) {unknown}; known: {sorted(known)}")
    kwargs: dict = {"device": device}
    if parameters.get("weights_dir"):
        kwargs["weights_dir"] = parameters["weights_dir"]
    for key in ("dtype", "attention_backend", "compile", "gelu_epilogue"):
        if parameters.get(key):
            kwargs[key] = parameters[key].strip().lower()
    for key in ("cfg_parallel", "cp_mode"):
        if parameters.get(key):
            kwargs[key] = parameters[key].strip().lower()
    for key in ("inpaint_radius", "inpaint_max_side", "world_size"):
        if parameters.get(key):
            try:
                kwargs[key] = int(parameters[key])
            except ValueError:
                raise ValueError(f"{key} must be an integer, got {parameters[key]!r}") from None
    kwargs["cfg_batch"] = parse_bool(parameters.get("cfg_batch", "false"), "cfg_batch")
    kwargs["fp8"] = parse_bool(parameters.get("fp8", "false"), "fp8")
    if parameters.get("compile_cache", "").strip():
        kwargs["compile_cache"] = parameters["compile_cache"].strip()
    kwargs["offload"] = tuple(
        part
        for part in OFFLOAD_PARTS
        if parse_bool(parameters.get(f"offload_{part}", "false"), f"offload_{part}")
    )
    return ModelSettings(**kwargs)
