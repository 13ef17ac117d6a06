"""GPU memory policy for GEN3C: bf16 weights, optional offloading, and a clear error when the GPU is too small.

Offload parts (upstream flags ``--offload_text_encoder_model``, ``--offload_tokenizer``,
``--offload_diffusion_transformer``): an offloaded part lives in CPU memory and moves to the GPU only for its
stage (text encoding, VAE encode/decode, denoising), then moves back. Upstream reloads offloaded parts from disk;
here they stay in (CPU) RAM, which is faster and needs about as much RAM as the weights.

Peak-memory model (calibrate with ``bench/diffusion_bench.py``; the measured anchor is 27 GB at batch 1 for the
7B with 14.5 GB of weights):
- DiT activations: ~``DIT_ACTIVATION_BYTES_PER_TOKEN_CHANNEL`` bytes per token x hidden width x batch;
- VAE working set: ~``VAE_BYTES_PER_PIXEL`` bytes per video pixel (T x H x W) of one encode/decode.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch

from objvid.runtime.errors import ResourceExhausted

OFFLOAD_PARTS = ("text_encoder", "vae", "transformer")
DIT_ACTIVATION_BYTES_PER_TOKEN_CHANNEL = 56
VAE_BYTES_PER_PIXEL = 72
GIB = 1024**3


class GpuMemoryError(ResourceExhausted, RuntimeError):
    """The GPU cannot hold what GEN3C needs; the message names the parts to offload (RESOURCE_EXHAUSTED)."""


@dataclass(frozen=True)
class Offload:
    """Which parts wait in CPU memory between uses."""

    text_encoder: bool = False
    vae: bool = False
    transformer: bool = False

    @classmethod
    def parse(cls, parts: Offload | str | Iterable[str] | None) -> Offload:
        """From an Offload, None, "all", a comma list ("text_encoder,vae") or an iterable of part names."""
        if isinstance(parts, Offload):
            return parts
        if parts is None:
            return cls()
        if isinstance(parts, str):
            parts = [p for p in parts.replace(" ", "").split(",") if p]
        names = set(parts)
        if "all" in names:
            names = set(OFFLOAD_PARTS)
        unknown = sorted(names - set(OFFLOAD_PARTS))
        if unknown:
            raise ValueError(f"offload parts must be among {OFFLOAD_PARTS} or 'all', got {unknown}")
        return cls(**{name: True for name in names})

    def names(self) -> list[str]:
        return [p for p in OFFLOAD_PARTS if getattr(self, p)]


def module_bytes(module: torch.nn.Module | None) -> int:
    """Bytes of parameters and buffers."""
    if module is None:
        return 0
    tensors = list(module.parameters()) + list(module.buffers())
    return sum(t.numel() * t.element_size() for t in tensors)


def dit_activation_bytes(tokens: int, hidden: int, batch: int) -> int:
    return DIT_ACTIVATION_BYTES_PER_TOKEN_CHANNEL * tokens * hidden * batch


def vae_working_bytes(frames: int, height: int, width: int) -> int:
    return VAE_BYTES_PER_PIXEL * frames * height * width


def _fmt(n: int) -> str:
    return f"{n / GIB:.1f} GiB"


def advice(offload: Offload, sizes: dict[str, int], active: str | None = None) -> str:
    """Which not-yet-offloaded parts to offload (largest first), leaving out ``active``, the part the failing
    stage itself needs on the GPU."""
    todo = [p for p in OFFLOAD_PARTS if p != active and not getattr(offload, p) and sizes.get(p, 0) > 0]
    todo.sort(key=lambda p: -sizes[p])
    if not todo:
        return "nothing left to offload; use a GPU with more memory or a smaller resolution"
    listed = ", ".join(f"{p} ({_fmt(sizes[p])})" for p in todo)
    return f"offload: {listed} (offload option names: {', '.join(OFFLOAD_PARTS)})"


def check_fits(
    device: torch.device,
    offload: Offload,
    sizes: dict[str, int],
    working: dict[str, int],
    what: str,
    total: int | None = None,
) -> None:
    """Raise GpuMemoryError when resident weights plus the largest stage working set exceed the GPU.

    sizes: weight bytes per part; working: extra bytes each stage needs while it runs (part -> bytes);
    total: GPU bytes (default: the device's total memory; CPU devices are never checked).
    """
    if total is None:
        if device.type != "cuda":
            return
        total = torch.cuda.get_device_properties(device).total_memory
    resident = sum(b for p, b in sizes.items() if not getattr(offload, p))
    worst = 0
    for part, extra in working.items():
        need = extra + (sizes.get(part, 0) if getattr(offload, part) else 0)
        worst = max(worst, need)
    if resident + worst > total:
        raise GpuMemoryError(
            f"GPU too small for GEN3C {what}: needs about {_fmt(resident + worst)} "
            f"(resident weights {_fmt(resident)} + working set {_fmt(worst)}), the GPU has {_fmt(total)}; "
            + advice(offload, sizes)
        )


STAGE_PARTS = {
    "text encoding": "text_encoder",
    "VAE encoding": "vae",
    "VAE decoding": "vae",
    "denoising": "transformer",
}


def oom_error(exc: BaseException, stage: str, offload: Offload, sizes: dict[str, int]) -> GpuMemoryError:
    """Wrap a CUDA out-of-memory error into a GpuMemoryError that says what to offload."""
    hint = advice(offload, sizes, STAGE_PARTS.get(stage))
    return GpuMemoryError(f"CUDA out of memory during {stage}: {hint}. Details: {exc}")


@contextlib.contextmanager
def on_device(module, device: torch.device, offloaded: bool) -> Iterator[None]:
    """Keep ``module`` on ``device`` for the block; an offloaded module goes back to the CPU afterwards."""
    if module is None:
        yield
        return
    if offloaded:
        module.to(device)
    try:
        yield
    finally:
        if offloaded and device.type != "cpu":
            module.to("cpu")
            if device.type == "cuda":
                torch.cuda.empty_cache()


def is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()
