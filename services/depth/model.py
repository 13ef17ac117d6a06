"""MoGe loading (v1 and v2, local checkpoint or Hugging Face hub id) and the inference call.

Checkpoint format (both versions): ``torch.save({"model_config": dict, "model": state_dict}, path)``.
fp16 (autocast, MoGe's own ``use_fp16`` path, as GEN3C runs it) is used on CUDA only; CPU runs float32.
"""

from __future__ import annotations

import logging
import os
import re
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from objvid.depth.fast import apply_fast_paths
from objvid.depth.lift import Prediction

log = logging.getLogger("objvid.depth.model")

_CPU_AUTOCAST_WARNING = r"(?s).*CPU [Aa]utocast"
# DINOv2 logs "using MLP layer as FFN" at INFO for every network built.
logging.getLogger("dinov2").setLevel(logging.WARNING)

#: The checkpoint GEN3C uses (MoGe v1, ViT-L).
DEFAULT_MODEL = "Ruicheng/moge-vitl"
#: File name of a MoGe checkpoint inside its hub repository.
CHECKPOINT_FILE = "model.pt"
#: Where hub ids are looked up as ``<model_dir>/<org>/<name>/model.pt`` before the hub itself.
DEFAULT_MODEL_DIR = "~/.cache/objvid/models"

_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
_TRUE = {"1", "true", "yes", "on"}


class ModelLoadError(RuntimeError):
    """The model cannot be loaded; the message says what to do."""


@dataclass(frozen=True)
class Checkpoint:
    """A resolved checkpoint: ``path`` on disk; ``spec`` as the user gave it (path or hub id)."""

    spec: str
    path: Path


def is_hub_id(spec: str) -> bool:
    """True for ``org/name`` strings that are not an existing local path."""
    return bool(_HUB_ID.fullmatch(spec)) and not Path(spec).exists()


def hub_offline() -> bool:
    """HF_HUB_OFFLINE set to a true value (read at call time)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def resolve_checkpoint(spec: str, model_dir: str | os.PathLike | None = None) -> Checkpoint:
    """Local checkpoint path or hub id -> a file on disk.

    Hub ids are looked up in ``<model_dir>/<org>/<name>/model.pt``, then in the Hugging Face cache, then
    downloaded (unless HF_HUB_OFFLINE). Raises ModelLoadError naming the file and where to place it.
    """
    if not spec:
        raise ModelLoadError("model: empty; pass a checkpoint path or a hub id such as Ruicheng/moge-vitl")
    path = Path(spec).expanduser()
    if path.is_file():
        return Checkpoint(spec, path)
    if path.is_dir() and (path / CHECKPOINT_FILE).is_file():
        return Checkpoint(spec, path / CHECKPOINT_FILE)
    if not is_hub_id(spec):
        raise ModelLoadError(f"model: checkpoint file not found: {path}")
    placed = Path(model_dir or DEFAULT_MODEL_DIR).expanduser() / spec / CHECKPOINT_FILE
    if placed.is_file():
        return Checkpoint(spec, placed)
    offline = hub_offline()
    try:
        from huggingface_hub import constants, hf_hub_download
    except ImportError as exc:  # pragma: no cover - huggingface_hub is a dependency of objvid[depth]
        raise ModelLoadError(
            _placement_message(spec, placed, "huggingface_hub is not installed", None)
        ) from exc
    try:
        downloaded = hf_hub_download(
            repo_id=spec, filename=CHECKPOINT_FILE, repo_type="model", local_files_only=offline
        )
    except Exception as exc:  # offline, unreachable, unknown repo, gated: all end in the same instruction
        reason = (
            "HF_HUB_OFFLINE is set and it is not in the cache" if offline else f"{type(exc).__name__}: {exc}"
        )
        raise ModelLoadError(_placement_message(spec, placed, reason, constants.HF_HUB_CACHE)) from exc
    return Checkpoint(spec, Path(downloaded))


def _placement_message(spec: str, placed: Path, reason: str, hf_cache: str | None) -> str:
    url = f"https://huggingface.co/{spec}/resolve/main/{CHECKPOINT_FILE}"
    msg = (
        f"model {spec!r}: cannot get {CHECKPOINT_FILE} ({reason}). Download {url} on a machine with internet "
        f"access and place it at {placed} (the --model-dir layout <model-dir>/{spec}/{CHECKPOINT_FILE}), "
        f"or pass --model /path/to/{CHECKPOINT_FILE}"
    )
    if hf_cache:
        msg += f", or fill the Hugging Face cache {hf_cache} with `hf download {spec} {CHECKPOINT_FILE}`"
    return msg + "."


def pick_device(device: str) -> torch.device:
    """'auto' -> cuda when available else cpu; 'cpu', 'cuda', 'cuda:N' as given (checked)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ModelLoadError(f"device: unknown device {device!r} (auto, cpu, cuda, cuda:N)") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(f"device: {device!r} requested but CUDA is not available")
    if dev.type not in ("cpu", "cuda"):
        raise ModelLoadError(f"device: {device!r} is not supported (auto, cpu, cuda, cuda:N)")
    return dev


def pick_fp16(dtype: str, device: torch.device) -> bool:
    """'auto' -> fp16 on CUDA, float32 on CPU; 'float16' needs CUDA; 'float32' everywhere."""
    if dtype == "auto":
        return device.type == "cuda"
    if dtype == "float16":
        if device.type != "cuda":
            raise ModelLoadError(
                "dtype: float16 needs a CUDA device (fp16 on CPU is ~100x slower); use float32"
            )
        return True
    if dtype == "float32":
        return False
    raise ModelLoadError(f"dtype: unknown {dtype!r} (auto, float16, float32)")


def checkpoint_version(config: dict) -> str:
    """'v2' when the config has a dict encoder + neck (``moge.model.v2``), else 'v1'."""
    return "v2" if isinstance(config.get("encoder"), dict) and "neck" in config else "v1"


class MoGeDepthModel:
    """A loaded MoGe network and how to call it.

    Call with images (B, 3, h, w) float32 in [0, 1] on ``device``; returns a ``Prediction`` at (h, w).
    """

    def __init__(
        self,
        net: torch.nn.Module,
        *,
        name: str,
        version: str,
        device: torch.device,
        use_fp16: bool,
        num_tokens: int | None = None,
        resolution_level: int = 9,
        load_seconds: float = 0.0,
    ):
        self.net = net
        self.name = name
        self.version = version
        self.device = device
        self.use_fp16 = use_fp16
        self.num_tokens = num_tokens or None
        self.resolution_level = resolution_level
        self.load_seconds = load_seconds

    @property
    def dtype_name(self) -> str:
        return "float16" if self.use_fp16 else "float32"

    def __call__(self, images: torch.Tensor) -> Prediction:
        with warnings.catch_warnings():
            if self.device.type == "cpu":  # MoGe's autocast(float32) blocks warn on every CPU call
                warnings.filterwarnings("ignore", message=_CPU_AUTOCAST_WARNING, category=UserWarning)
            out = self.net.infer(
                images,
                num_tokens=self.num_tokens,
                resolution_level=self.resolution_level,
                use_fp16=self.use_fp16,
                apply_mask=True,
                force_projection=False,  # depth, mask and K do not depend on it; skips rebuilding the point map
            )
        depth = out["depth"]
        mask = out.get("mask")
        if mask is None:  # a v2 checkpoint without a mask head: every finite depth is valid
            mask = torch.isfinite(depth)
        return Prediction(depth=depth.float(), mask=mask.bool(), intrinsics=out["intrinsics"].float())


def build_net(config: dict, version: str) -> torch.nn.Module:
    """A MoGe network of ``version`` from its config dict (random weights; no download)."""
    if version == "v1":
        from moge.model.v1 import MoGeModel
    elif version == "v2":
        from moge.model.v2 import MoGeModel
    else:
        raise ModelLoadError(f"model_version: unknown {version!r} (auto, v1, v2)")
    return MoGeModel(**config)


def load_model(
    spec: str = DEFAULT_MODEL,
    *,
    device: str = "auto",
    dtype: str = "auto",
    version: str = "auto",
    num_tokens: int = 0,
    resolution_level: int = 9,
    model_dir: str | os.PathLike | None = None,
    fast_kernels: bool = True,
) -> MoGeDepthModel:
    """Resolve, read and place a MoGe checkpoint; raises ModelLoadError with an actionable message.

    num_tokens: ViT tokens per image (0 = derived from resolution_level 0..9 over the checkpoint's range).
    fast_kernels: on CUDA, ``fast.apply_fast_paths`` (parallel GroupNorm statistics, cached position
    embedding; same math, much faster at small batches); ignored on CPU.
    """
    if not 0 <= resolution_level <= 9:
        raise ModelLoadError(f"resolution_level: must be 0..9, got {resolution_level}")
    if num_tokens < 0:
        raise ModelLoadError(f"num_tokens: must be >= 0 (0 = from resolution_level), got {num_tokens}")
    dev = pick_device(device)
    use_fp16 = pick_fp16(dtype, dev)
    start = time.perf_counter()
    ckpt = resolve_checkpoint(spec, model_dir)
    try:
        state = torch.load(ckpt.path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:
        raise ModelLoadError(
            f"model: cannot read checkpoint {ckpt.path}: {type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(state, dict) or "model_config" not in state or "model" not in state:
        raise ModelLoadError(
            f"model: {ckpt.path} is not a MoGe checkpoint (expected keys 'model_config' and 'model')"
        )
    config = dict(state["model_config"])
    ver = checkpoint_version(config) if version == "auto" else version
    try:
        net = build_net(config, ver)
        missing, unexpected = net.load_state_dict(state["model"], strict=False)
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(
            f"model: {ckpt.path} does not fit MoGe {ver}: {type(exc).__name__}: {exc}"
        ) from exc
    # Same strictness as MoGe's own from_pretrained: v1 strict, v2 lenient (its checkpoints may omit parts).
    if ver == "v1" and (missing or unexpected):
        raise ModelLoadError(
            f"model: {ckpt.path} does not fit MoGe v1: missing {missing[:3]} ({len(missing)}), "
            f"unexpected {unexpected[:3]} ({len(unexpected)})"
        )
    if missing or unexpected:
        log.warning("event=checkpoint_keys_mismatch missing=%d unexpected=%d", len(missing), len(unexpected))
    del state
    net = net.to(dev).eval().requires_grad_(False)
    fast = {}
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes per inference size: let cuDNN pick kernels once
        if fast_kernels:
            fast = apply_fast_paths(net)
    seconds = time.perf_counter() - start
    log.info(
        "event=model_loaded model=%s path=%s version=%s device=%s dtype=%s fast_kernels=%s seconds=%.2f",
        spec, ckpt.path, ver, dev, "float16" if use_fp16 else "float32", fast or "off", seconds,
    )  # fmt: skip
    return MoGeDepthModel(
        net,
        name=spec,
        version=ver,
        device=dev,
        use_fp16=use_fp16,
        num_tokens=num_tokens,
        resolution_level=resolution_level,
        load_seconds=seconds,
    )
