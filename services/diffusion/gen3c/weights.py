"""Reading and writing the diffusers-format component folders of a GEN3C weights directory.

A component folder holds ``config.json`` (``_class_name`` + constructor kwargs) and either
``diffusion_pytorch_model.safetensors`` or shards ``diffusion_pytorch_model-0000i-of-0000n.safetensors`` with
``diffusion_pytorch_model.safetensors.index.json`` (diffusers' layout, so ``from_pretrained`` reads it too).
Loading is strict: every expected tensor present with the expected shape, nothing extra.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
INDEX_NAME = "diffusion_pytorch_model.safetensors.index.json"
DEFAULT_SHARD_BYTES = 5 * 1024**3
DIFFUSERS_VERSION = "0.42.1"


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    return value


def save_component(
    folder: str | Path,
    class_name: str,
    config: dict[str, Any],
    state_dict: dict[str, torch.Tensor],
    max_shard_bytes: int = DEFAULT_SHARD_BYTES,
) -> list[Path]:
    """Write ``config.json`` and the safetensors file(s); returns the weight files written."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = {"_class_name": class_name, "_diffusers_version": DIFFUSERS_VERSION}
    cfg.update({k: _jsonable(v) for k, v in config.items()})
    (folder / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")

    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for key in sorted(state_dict):
        tensor = state_dict[key].detach().contiguous()
        nbytes = tensor.numel() * tensor.element_size()
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][key] = tensor
        size += nbytes
    if len(shards) == 1:
        path = folder / WEIGHTS_NAME
        save_file(shards[0], str(path), metadata={"format": "pt"})
        return [path]
    paths, weight_map = [], {}
    for i, shard in enumerate(shards, start=1):
        path = folder / f"diffusion_pytorch_model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(path), metadata={"format": "pt"})
        paths.append(path)
        weight_map.update(dict.fromkeys(shard, path.name))
    total = sum(t.numel() * t.element_size() for t in state_dict.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / INDEX_NAME).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    return paths


def read_config(folder: str | Path, class_name: str) -> dict[str, Any]:
    """Read ``config.json`` of a component and check its class."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    cfg = json.loads(path.read_text())
    if cfg.get("_class_name") != class_name:
        raise ValueError(f"{path}: _class_name is {cfg.get('_class_name')!r}, expected {class_name!r}")
    return cfg


def weight_files(folder: str | Path) -> list[Path]:
    """The safetensors files of a component, in shard order."""
    folder = Path(folder)
    if (folder / WEIGHTS_NAME).is_file():
        return [folder / WEIGHTS_NAME]
    index = folder / INDEX_NAME
    if not index.is_file():
        raise FileNotFoundError(f"no {WEIGHTS_NAME} or {INDEX_NAME} in {folder}")
    names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder}: shard files missing: {missing}")
    return [folder / n for n in names]


def read_state_dict(folder: str | Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """All tensors of a component (CPU unless ``device`` says otherwise)."""
    from safetensors.torch import load_file

    state: dict[str, torch.Tensor] = {}
    for path in weight_files(folder):
        part = load_file(str(path), device=str(device))
        overlap = set(part) & set(state)
        if overlap:
            raise ValueError(f"{path}: tensors repeated across shards: {sorted(overlap)[:5]}")
        state.update(part)
    return state


def check_state_dict(model: nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """Raise ValueError listing every missing, unexpected or mis-shaped tensor."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = sorted(
        f"{k}: got {tuple(state[k].shape)}, want {tuple(expected[k].shape)}"
        for k in set(expected) & set(state)
        if tuple(state[k].shape) != tuple(expected[k].shape)
    )
    problems = []
    if missing:
        problems.append(f"missing {len(missing)}: {missing}")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)}: {unexpected}")
    if shapes:
        problems.append(f"wrong shape {len(shapes)}: {shapes}")
    if problems:
        raise ValueError(f"{what} weights do not match the model: " + "; ".join(problems))


def load_into(model: nn.Module, state: dict[str, torch.Tensor], what: str) -> nn.Module:
    """Strictly load ``state`` into ``model`` (which may live on the meta device: tensors are assigned)."""
    check_state_dict(model, state, what)
    model.load_state_dict(state, strict=True, assign=True)
    leftovers = [n for n, t in list(model.named_parameters()) + list(model.named_buffers()) if t.is_meta]
    if leftovers:
        raise ValueError(f"{what}: tensors left uninitialised after loading: {leftovers[:10]}")
    return model
