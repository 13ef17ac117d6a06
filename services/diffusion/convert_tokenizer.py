"""Cosmos tokenizer (VAE) and T5 text encoder for ``convert``: the TorchScript tokenizer's key mapping and
config inference, and the text encoder copied in the target dtype."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from objvid.diffusion.convert_keys import ConversionError, _check_against_model, _shape, remap_state
from objvid.diffusion.gen3c.config import (
    TEXT_ENCODER_DIR,
    TOKENIZER_DIR,
    vae_config_720p,
)

log = logging.getLogger("objvid.diffusion.convert")


# -- tokenizer (VAE) -----------------------------------------------------------------------------------------

VAE_SKIP = [r"^(encoder\.patcher3d|decoder\.unpatcher3d)\.(wavelets|_arange|patch_size_buffer)$"]
_CONV = r"\.conv3d\.(weight|bias)$"
_RESNET_INNER = [
    (r"^norm([12])\.norm\.(weight|bias)$", r"norm\1.norm.\2"),
    (r"^conv([12])\.0" + _CONV, r"conv\1.conv_s.\2"),
    (r"^conv([12])\.1" + _CONV, r"conv\1.conv_t.\2"),
    (r"^nin_shortcut" + _CONV, r"conv_shortcut.\1"),
]
_ATTN_INNER = [
    (r"^norm\.norm\.(weight|bias)$", r"norm.norm.\1"),
    (r"^([qkv])" + _CONV, r"to_\1.\2"),
    (r"^proj_out" + _CONV, r"to_out.0.\1"),
]


def _inner(tail: str, rules: list[tuple[str, str]]) -> str | None:
    for pattern, repl in rules:
        if re.match(pattern, tail):
            return re.sub(pattern, repl, tail)
    return None


def vae_key_mapper(up_levels: int) -> Callable[[str], str | None]:
    """Upstream tokenizer key -> AutoencoderKLCosmos key (None when unknown). ``up_levels``: decoder levels
    (upstream ``decoder.up.i`` is diffusers ``up_blocks[up_levels - 1 - i]``)."""

    def mapper(key: str) -> str | None:
        m = re.match(r"^(quant_conv|post_quant_conv)" + _CONV, key)
        if m:
            return f"{m.group(1)}.{m.group(2)}"
        m = re.match(r"^(encoder|decoder)\.(conv_in|conv_out)\.([01])" + _CONV, key)
        if m:
            return f"{m.group(1)}.{m.group(2)}.{'conv_s' if m.group(3) == '0' else 'conv_t'}.{m.group(4)}"
        m = re.match(r"^(encoder|decoder)\.norm_out\.norm\.(weight|bias)$", key)
        if m:
            return f"{m.group(1)}.norm_out.norm.{m.group(2)}"
        m = re.match(r"^(encoder|decoder)\.mid\.(block_1|block_2)\.(.+)$", key)
        if m:
            tail = _inner(m.group(3), _RESNET_INNER)
            idx = 0 if m.group(2) == "block_1" else 1
            return f"{m.group(1)}.mid_block.resnets.{idx}.{tail}" if tail else None
        m = re.match(r"^(encoder|decoder)\.mid\.attn_1\.([01])\.(.+)$", key)
        if m:
            tail = _inner(m.group(3), _ATTN_INNER)
            kind = "attentions" if m.group(2) == "0" else "temp_attentions"
            return f"{m.group(1)}.mid_block.{kind}.0.{tail}" if tail else None
        m = re.match(r"^(encoder\.down|decoder\.up)\.(\d+)\.(.+)$", key)
        if not m:
            return None
        side, level, rest = m.group(1), int(m.group(2)), m.group(3)
        if side == "encoder.down":
            prefix, sampler = f"encoder.down_blocks.{level}", "downsample"
        else:
            prefix, sampler = f"decoder.up_blocks.{up_levels - 1 - level}", "upsample"
        m = re.match(r"^block\.(\d+)\.(.+)$", rest)
        if m:
            tail = _inner(m.group(2), _RESNET_INNER)
            return f"{prefix}.resnets.{m.group(1)}.{tail}" if tail else None
        m = re.match(r"^attn\.(\d+)\.([01])\.(.+)$", rest)
        if m:
            tail = _inner(m.group(3), _ATTN_INNER)
            kind = "attentions" if m.group(2) == "0" else "temp_attentions"
            return f"{prefix}.{kind}.{m.group(1)}.{tail}" if tail else None
        m = re.match(rf"^{sampler}\.conv([123])" + _CONV, rest)
        if m:
            return f"{prefix}.{sampler}rs.0.conv{m.group(1)}.{m.group(2)}"
        return None

    return mapper


def _width(state: dict[str, torch.Tensor], key: str, problems: list[str]) -> int:
    shape = _shape(state, key, problems)
    return shape[0] if shape else 0


def infer_vae_config(state: dict[str, torch.Tensor], mean: torch.Tensor, std: torch.Tensor) -> dict[str, Any]:
    """``AutoencoderKLCosmos`` kwargs from upstream tokenizer tensors (upstream names) and ``mean_std.pt``."""
    problems: list[str] = []
    conv_in = _shape(state, "encoder.conv_in.0.conv3d.weight", problems)
    dec_in = _shape(state, "decoder.conv_in.0.conv3d.weight", problems)
    quant = _shape(state, "quant_conv.conv3d.weight", problems)
    if problems:
        raise ConversionError("tokenizer: " + "; ".join(problems))
    levels = sorted({int(k.split(".")[2]) for k in state if k.startswith("encoder.down.")})
    up_levels = sorted({int(k.split(".")[2]) for k in state if k.startswith("decoder.up.")})
    if not levels or levels != list(range(len(levels))) or up_levels != levels:
        raise ConversionError(
            f"tokenizer: encoder levels {levels} / decoder levels {up_levels} are not 0..n-1"
        )
    n = len(levels)
    patch = round((conv_in[1] / 3) ** (1 / 3))
    if 3 * patch**3 != conv_in[1]:
        raise ConversionError(f"tokenizer: encoder input width {conv_in[1]} is not 3 x patch^3")
    enc_out = [conv_in[0]]
    enc_out += [_width(state, f"encoder.down.{i}.block.0.conv1.0.conv3d.weight", problems) for i in range(n)]
    rev = [dec_in[0]]
    rev += [
        _width(state, f"decoder.up.{n - 1 - i}.block.0.conv1.0.conv3d.weight", problems) for i in range(n)
    ]
    num_layers = len({k.split(".")[4] for k in state if k.startswith("encoder.down.0.block.")})
    spatial = sum(f"encoder.down.{i}.downsample.conv1.conv3d.weight" in state for i in range(n))
    temporal = sum(f"encoder.down.{i}.downsample.conv2.conv3d.weight" in state for i in range(n))
    wavelets = state.get("encoder.patcher3d.wavelets")
    patch_type = "haar"
    if wavelets is not None and torch.allclose(wavelets.float(), torch.ones(2)):
        patch_type = "rearrange"
    buf = state.get("encoder.patcher3d.patch_size_buffer")
    if buf is not None and int(buf.flatten()[0]) != patch:
        problems.append(f"tokenizer: patch_size_buffer {int(buf.flatten()[0])} != patch size {patch}")
    if mean.numel() != std.numel() or mean.numel() % quant[0]:
        problems.append(
            f"tokenizer mean_std.pt: sizes {mean.numel()} / {std.numel()} not a multiple of {quant[0]}"
        )
    if problems:
        raise ConversionError("\n".join(problems))
    cfg = vae_config_720p()
    cfg.update(
        latent_channels=quant[0],
        encoder_block_out_channels=tuple(enc_out),
        decode_block_out_channels=tuple(reversed(rev)),
        num_layers=num_layers,
        patch_size=patch,
        patch_type=patch_type,
        spatial_compression_ratio=patch * 2**spatial,
        temporal_compression_ratio=patch * 2**temporal,
        latents_mean=[float(v) for v in mean.flatten().tolist()],
        latents_std=[float(v) for v in std.flatten().tolist()],
    )
    return cfg


def load_tokenizer_files(path: Path) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor, list[str]]:
    """(upstream-named tensors, latent mean, latent std, files read) of a Cosmos tokenizer directory."""
    if not path.is_dir():
        raise ConversionError(f"--tokenizer {path}: not a directory")
    from objvid.diffusion.tokenizer_files import read_tokenizer_state

    state, files = read_tokenizer_state(path, ConversionError)  # encoder+decoder as upstream, checked
    mean_std = path / "mean_std.pt"
    if not mean_std.is_file():
        raise ConversionError(f"--tokenizer {path}: mean_std.pt (latent mean and std) is missing")
    ms = torch.load(mean_std, map_location="cpu", weights_only=True)
    if not (isinstance(ms, tuple | list) and len(ms) == 2 and all(isinstance(t, torch.Tensor) for t in ms)):
        raise ConversionError(f"--tokenizer {mean_std}: expected a (mean, std) tuple of tensors")
    return state, ms[0].float(), ms[1].float(), files + [mean_std.name]


def convert_vae_state(
    source: dict[str, torch.Tensor], mean: torch.Tensor, std: torch.Tensor
) -> tuple[dict[str, torch.Tensor], dict[str, Any], list[str]]:
    """Upstream tokenizer tensors -> (diffusers state, config, skipped keys). Raises ConversionError."""
    from objvid.diffusion.gen3c.vae import build_vae

    config = infer_vae_config(source, mean, std)
    up_levels = len({k.split(".")[2] for k in source if k.startswith("decoder.up.")})
    state, skipped, problems = remap_state(source, vae_key_mapper(up_levels), VAE_SKIP, "tokenizer")
    _check_against_model(build_vae(config), state, "tokenizer (AutoencoderKLCosmos)", problems)
    if problems:
        raise ConversionError("\n".join(problems))
    return state, config, skipped


# -- text encoder --------------------------------------------------------------------------------------------


def save_text_encoder(path: Path, out: Path, embed_dim: int, dtype: torch.dtype) -> None:
    """Copy a transformers T5 encoder (+ tokenizer) into ``out/text_encoder`` and ``out/tokenizer``."""
    from transformers import AutoTokenizer, T5EncoderModel

    if not path.is_dir():
        raise ConversionError(f"--text-encoder {path}: not a directory")
    try:
        encoder = T5EncoderModel.from_pretrained(str(path), dtype=dtype)
        tokenizer = AutoTokenizer.from_pretrained(str(path))
    except Exception as exc:
        raise ConversionError(
            f"--text-encoder {path}: cannot load a T5 encoder and tokenizer ({exc})"
        ) from exc
    if int(encoder.config.d_model) != embed_dim:
        raise ConversionError(
            f"--text-encoder {path}: d_model {encoder.config.d_model} != transformer text_embed_dim {embed_dim}"
        )
    encoder.save_pretrained(str(out / TEXT_ENCODER_DIR), safe_serialization=True)
    tokenizer.save_pretrained(str(out / TOKENIZER_DIR))


# -- driver --------------------------------------------------------------------------------------------------
