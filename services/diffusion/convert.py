"""``objvid-diffusion convert``: official GEN3C files -> a diffusers-format GEN3C weights directory.

Inputs:
- ``--gen3c``: ``nvidia/GEN3C-Cosmos-7B`` ``model.pt`` (upstream ``DiffusionGen3CModel`` state dict: ``net.*``
  plus training-only ``logvar.*``; optionally wrapped in ``{"model": ...}`` or ``{"state_dict": ...}``);
- ``--tokenizer``: the ``nvidia/Cosmos-Tokenize1-CV8x8x8-720p`` directory: ``autoencoder.jit`` (or
  ``encoder.jit`` + ``decoder.jit``) and ``mean_std.pt`` (tuple of latent mean and std);
- ``--text-encoder`` (optional): a transformers T5 directory with its tokenizer (upstream: google-t5/t5-11b).

Key mapping is strict: every upstream tensor must map to a diffusers tensor of the same shape and every
diffusers tensor must be covered; known non-weights are skipped and listed (``logvar.*``,
``net.pos_embedder.seq``, ``net.accum_*``, ``*._extra_state``, the tokenizer's wavelet buffers). On any problem
nothing is written and :class:`ConversionError` lists every unmapped, missing and mis-shaped key. The output
is written to a temporary sibling directory and renamed into place at the end.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import re
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from objvid.diffusion.gen3c import weights
from objvid.diffusion.gen3c.config import (
    CONDITION_MASK_CHANNELS,
    LATENT_CHANNELS,
    PADDING_MASK_CHANNELS,
    TEXT_ENCODER_DIR,
    TOKENIZER_DIR,
    TRANSFORMER_DIR,
    VAE_DIR,
    Gen3cConfig,
    vae_config_720p,
)

log = logging.getLogger("objvid.diffusion.convert")

DTYPES = {"keep": None, "bf16": torch.bfloat16, "fp32": torch.float32}


class ConversionError(ValueError):
    """The inputs do not convert cleanly; the message lists every problem."""


@dataclass
class Report:
    """What ``convert`` wrote."""

    out_dir: Path
    transformer_tensors: int
    transformer_parameters: int
    transformer_config: dict[str, Any]
    vae_tensors: int
    vae_config: dict[str, Any]
    text_encoder: bool
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        cfg = self.transformer_config
        lines = [
            f"wrote {self.out_dir}",
            f"  transformer: {self.transformer_tensors} tensors, {self.transformer_parameters / 1e9:.2f}B parameters, "
            f"{cfg['num_layers']} blocks, {cfg['num_attention_heads']} heads x {cfg['attention_head_dim']}, "
            f"in_channels {cfg['in_channels']} (+1 padding mask)",
            f"  vae: {self.vae_tensors} tensors, channels {tuple(self.vae_config['encoder_block_out_channels'])}",
            f"  text encoder: {'T5' if self.text_encoder else 'none (prompts ignored: zero embeddings)'}",
            f"  skipped non-weight keys: {len(self.skipped)}",
            f"  seconds: {self.seconds:.1f}",
        ]
        return "\n".join(lines)


# -- transformer ---------------------------------------------------------------------------------------------

_BLK = r"^net\.blocks\.block(\d+)\.blocks"
TRANSFORMER_RULES: list[tuple[str, str]] = [
    (r"^net\.x_embedder\.proj\.1\.weight$", "patch_embed.proj.weight"),
    (r"^net\.t_embedder\.1\.linear_([12])\.weight$", r"time_embed.t_embedder.linear_\1.weight"),
    (r"^net\.affline_norm\.weight$", "time_embed.norm.weight"),
    (r"^net\.extra_pos_embedder\.pos_emb_([thw])$", r"learnable_pos_embed.pos_emb_\1"),
    (r"^net\.final_layer\.adaLN_modulation\.([12])\.weight$", r"norm_out.linear_\1.weight"),
    (r"^net\.final_layer\.linear\.weight$", "proj_out.weight"),
    (_BLK + r"\.2\.block\.layer1\.weight$", r"transformer_blocks.\1.ff.net.0.proj.weight"),
    (_BLK + r"\.2\.block\.layer2\.weight$", r"transformer_blocks.\1.ff.net.2.weight"),
]
for _sub, _attn in (("0", "attn1"), ("1", "attn2")):
    TRANSFORMER_RULES += [
        (
            _BLK + rf"\.{_sub}\.block\.attn\.to_([qkv])\.0\.weight$",
            rf"transformer_blocks.\1.{_attn}.to_\2.weight",
        ),
        (
            _BLK + rf"\.{_sub}\.block\.attn\.to_([qk])\.1\.weight$",
            rf"transformer_blocks.\1.{_attn}.norm_\2.weight",
        ),
        (
            _BLK + rf"\.{_sub}\.block\.attn\.to_out\.0\.weight$",
            rf"transformer_blocks.\1.{_attn}.to_out.0.weight",
        ),
    ]
for _sub, _norm in (("0", "norm1"), ("1", "norm2"), ("2", "norm3")):
    TRANSFORMER_RULES.append(
        (
            _BLK + rf"\.{_sub}\.adaLN_modulation\.([12])\.weight$",
            rf"transformer_blocks.\1.{_norm}.linear_\2.weight",
        )
    )
TRANSFORMER_SKIP = [r"^logvar\.", r"^net\.pos_embedder\.seq$", r"^net\.accum_", r"\._extra_state$"]
# Not in weights: the GEN3C_Cosmos_7B experiment sets rope_{h,w,t}_extrapolation_ratio = 1, 1, 2.
GEN3C_ROPE_SCALE = (2.0, 1.0, 1.0)


def map_keys(
    keys: list[str], rules: list[tuple[str, str]] | Callable[[str], str | None], skip: list[str]
) -> tuple[dict[str, str], list[str], list[str], list[str]]:
    """Map source keys -> (new -> old mapping, skipped, unmapped, collisions)."""
    compiled = [(re.compile(p), r) for p, r in rules] if not callable(rules) else None
    skip_re = [re.compile(p) for p in skip]
    mapping: dict[str, str] = {}
    skipped, unmapped, collisions = [], [], []
    for key in keys:
        if any(s.search(key) for s in skip_re):
            skipped.append(key)
            continue
        new = None
        if compiled is None:
            new = rules(key)
        else:
            for pattern, repl in compiled:
                if pattern.match(key):
                    new = pattern.sub(repl, key)
                    break
        if new is None:
            unmapped.append(key)
        elif new in mapping:
            collisions.append(f"{mapping[new]} and {key} -> {new}")
        else:
            mapping[new] = key
    return mapping, skipped, unmapped, collisions


def remap_state(source: dict, rules, skip: list[str], label: str) -> tuple[dict, list[str], list[str]]:
    """Apply :func:`map_keys` -> (renamed state, skipped keys, problems naming ``label``)."""
    mapping, skipped, unmapped, collisions = map_keys(list(source), rules, skip)
    problems = []
    if unmapped:
        problems.append(f"{label}: {len(unmapped)} unmapped keys: {unmapped}")
    if collisions:
        problems.append(f"{label}: keys mapped twice: {collisions}")
    return {new: source[old] for new, old in mapping.items()}, skipped, problems


def _shape(state: dict[str, torch.Tensor], key: str, problems: list[str]) -> tuple[int, ...] | None:
    if key not in state:
        problems.append(f"cannot infer the layout: {key} is missing")
        return None
    return tuple(state[key].shape)


def infer_transformer_config(state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """diffusers ``CosmosTransformer3DModel`` kwargs (saved convention) from mapped (diffusers-named) tensors."""
    problems: list[str] = []
    patch = _shape(state, "patch_embed.proj.weight", problems)
    norm_q = _shape(state, "transformer_blocks.0.attn1.norm_q.weight", problems)
    lora = _shape(state, "transformer_blocks.0.norm1.linear_1.weight", problems)
    ctx = _shape(state, "transformer_blocks.0.attn2.to_k.weight", problems)
    ff = _shape(state, "transformer_blocks.0.ff.net.0.proj.weight", problems)
    out = _shape(state, "proj_out.weight", problems)
    pos = [_shape(state, f"learnable_pos_embed.pos_emb_{a}", problems) for a in "thw"]
    if problems:
        raise ConversionError("; ".join(problems))
    hidden, patch_in = patch
    p_t, p_h, p_w = 1, 2, 2
    per_patch = p_t * p_h * p_w
    blocks = sorted({int(k.split(".")[1]) for k in state if k.startswith("transformer_blocks.")})
    if blocks != list(range(len(blocks))):
        raise ConversionError(f"transformer block indices are not contiguous: {blocks}")
    total_in = patch_in // per_patch
    cache = total_in - LATENT_CHANNELS - CONDITION_MASK_CHANNELS - PADDING_MASK_CHANNELS
    if patch_in % per_patch or cache <= 0 or cache % (2 * LATENT_CHANNELS):
        raise ConversionError(
            f"x_embedder input width {patch_in} is not GEN3C's (16 + 1 + 32k + 1) x {per_patch} layout"
        )
    if out[0] % per_patch:
        raise ConversionError(f"final_layer.linear output {out[0]} is not a multiple of {per_patch}")
    return {
        "in_channels": total_in - PADDING_MASK_CHANNELS,
        "out_channels": out[0] // per_patch,
        "num_attention_heads": hidden // norm_q[0],
        "attention_head_dim": norm_q[0],
        "num_layers": len(blocks),
        "mlp_ratio": ff[0] / hidden,
        "text_embed_dim": ctx[1],
        "adaln_lora_dim": lora[0],
        "max_size": (pos[0][0] * p_t, pos[1][0] * p_h, pos[2][0] * p_w),
        "patch_size": (p_t, p_h, p_w),
        "rope_scale": GEN3C_ROPE_SCALE,
        "concat_padding_mask": True,
        "extra_pos_embed_type": "learnable",
    }


def _check_against_model(
    model: torch.nn.Module, state: dict[str, torch.Tensor], what: str, problems: list[str]
):
    try:
        weights.check_state_dict(model, state, what)
    except ValueError as exc:
        problems.append(str(exc))


def convert_transformer_state(
    source: dict[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], dict[str, Any], list[str]]:
    """Upstream ``net.*`` tensors -> (diffusers state, saved config, skipped keys). Raises ConversionError."""
    from objvid.diffusion.gen3c.transformer import build_transformer

    state, skipped, problems = remap_state(source, TRANSFORMER_RULES, TRANSFORMER_SKIP, "GEN3C checkpoint")
    try:
        config = infer_transformer_config(state)
    except ConversionError as exc:
        problems.append(f"GEN3C checkpoint: {exc}")
        raise ConversionError("\n".join(problems)) from None
    # Compare with the runtime model (padding channel explicit): same tensors, same shapes.
    model = build_transformer(config, device="meta")
    _check_against_model(model, state, "GEN3C transformer", problems)
    if problems:
        raise ConversionError("\n".join(problems))
    return state, config, skipped


def load_gen3c_checkpoint(path: Path, allow_pickle: bool = False) -> dict[str, torch.Tensor]:
    """The tensor dict of ``model.pt`` (memory-mapped when possible)."""
    if not path.is_file():
        raise ConversionError(f"--gen3c {path}: no such file")
    try:
        with torch.serialization.safe_globals([io.BytesIO]):
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:
        if not allow_pickle:
            raise ConversionError(
                f"--gen3c {path}: cannot be read as plain tensors ({exc.__class__.__name__}: {exc}); "
                "re-run with --allow-pickle only if you trust the file"
            ) from exc
        obj = torch.load(path, map_location="cpu", weights_only=False)
    for wrapper in ("model", "state_dict"):
        if isinstance(obj, dict) and wrapper in obj and isinstance(obj[wrapper], dict):
            obj = obj[wrapper]
            break
    if not isinstance(obj, dict) or not obj:
        raise ConversionError(f"--gen3c {path}: expected a state dict, got {type(obj).__name__}")
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor) and not k.endswith("_extra_state")]
    if bad:
        raise ConversionError(f"--gen3c {path}: non-tensor entries: {bad[:20]}")
    return obj


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
    auto, enc, dec = path / "autoencoder.jit", path / "encoder.jit", path / "decoder.jit"
    if auto.is_file():
        files = [auto]
    elif enc.is_file() and dec.is_file():
        files = [enc, dec]
    else:
        raise ConversionError(f"--tokenizer {path}: needs autoencoder.jit, or encoder.jit and decoder.jit")
    state: dict[str, torch.Tensor] = {}
    for f in files:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter(
                    "ignore", DeprecationWarning
                )  # torch.jit is deprecated, still the format
                part = torch.jit.load(str(f), map_location="cpu").state_dict()
        except Exception as exc:
            raise ConversionError(f"--tokenizer {f}: cannot load TorchScript ({exc})") from exc
        for k, v in part.items():
            if k in state and not torch.equal(state[k], v):
                raise ConversionError(f"--tokenizer: {k} differs between encoder.jit and decoder.jit")
            state[k] = v.detach().clone()
    mean_std = path / "mean_std.pt"
    if not mean_std.is_file():
        raise ConversionError(f"--tokenizer {path}: mean_std.pt (latent mean and std) is missing")
    ms = torch.load(mean_std, map_location="cpu", weights_only=True)
    if not (isinstance(ms, tuple | list) and len(ms) == 2 and all(isinstance(t, torch.Tensor) for t in ms)):
        raise ConversionError(f"--tokenizer {mean_std}: expected a (mean, std) tuple of tensors")
    return state, ms[0].float(), ms[1].float(), [f.name for f in files] + [mean_std.name]


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


def _cast(state: dict[str, torch.Tensor], dtype: torch.dtype | None) -> dict[str, torch.Tensor]:
    if dtype is None:
        return state
    return {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in state.items()}


def convert(
    gen3c_path: str | Path,
    tokenizer_path: str | Path,
    out_dir: str | Path,
    text_encoder_path: str | Path | None = None,
    *,
    dtype: str = "keep",
    overwrite: bool = False,
    allow_pickle: bool = False,
    chunk_frames: int = 121,
    text_max_length: int = 512,
) -> Report:
    """Convert the official files into ``out_dir`` (see module doc). Raises ConversionError, writes nothing then.

    dtype: "keep" (as stored), "bf16" or "fp32" for the transformer; chunk_frames / text_max_length: pipeline
    settings recorded in gen3c.json (121 / 512 for the released model).
    """
    t0 = time.perf_counter()
    gen3c_path, tokenizer_path, out_dir = Path(gen3c_path), Path(tokenizer_path), Path(out_dir)
    if dtype not in DTYPES:
        raise ConversionError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    if out_dir.exists() and not overwrite and any(out_dir.iterdir()):
        raise ConversionError(f"--out {out_dir} exists and is not empty (use --overwrite to replace it)")
    if text_encoder_path is not None and not Path(text_encoder_path).is_dir():
        raise ConversionError(f"--text-encoder {text_encoder_path}: not a directory")

    problems: list[str] = []
    results: dict[str, Any] = {}
    try:
        source = load_gen3c_checkpoint(gen3c_path, allow_pickle)
        results["transformer"] = convert_transformer_state(source)
    except ConversionError as exc:
        problems.append(str(exc))
    try:
        tok_state, mean, std, tok_files = load_tokenizer_files(tokenizer_path)
        results["vae"] = convert_vae_state(tok_state, mean, std)
    except ConversionError as exc:
        problems.append(str(exc))
    if problems:
        raise ConversionError("nothing written:\n" + "\n".join(problems))

    t_state, t_config, t_skipped = results["transformer"]
    v_state, v_config, v_skipped = results["vae"]
    frame_buffer_max = (t_config["in_channels"] - LATENT_CHANNELS - CONDITION_MASK_CHANNELS) // (
        2 * LATENT_CHANNELS
    )
    config = Gen3cConfig(
        chunk_frames=chunk_frames,
        frame_buffer_max=frame_buffer_max,
        latent_channels=int(v_config["latent_channels"]),
        spatial_compression=int(v_config["spatial_compression_ratio"]),
        temporal_compression=int(v_config["temporal_compression_ratio"]),
        text_max_length=text_max_length,
        text_embed_dim=int(t_config["text_embed_dim"]),
        has_text_encoder=text_encoder_path is not None,
        source={
            "gen3c": gen3c_path.name,
            "gen3c_bytes": gen3c_path.stat().st_size,
            "tokenizer": tok_files,
            "text_encoder": Path(text_encoder_path).name if text_encoder_path else None,
        },
    )
    latent_frames_stored = len(v_config["latents_mean"]) // config.latent_channels
    if latent_frames_stored < config.latent_frames:
        raise ConversionError(
            f"nothing written: mean_std.pt covers {latent_frames_stored} latent frames, chunks of "
            f"{chunk_frames} frames need {config.latent_frames}"
        )

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    try:
        weights.save_component(
            tmp / TRANSFORMER_DIR, "CosmosTransformer3DModel", t_config, _cast(t_state, DTYPES[dtype])
        )
        weights.save_component(tmp / VAE_DIR, "AutoencoderKLCosmos", v_config, v_state)
        if text_encoder_path is not None:
            save_text_encoder(Path(text_encoder_path), tmp, config.text_embed_dim, torch.bfloat16)
        config.save(tmp)
        _move_into_place(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    report = Report(
        out_dir=out_dir,
        transformer_tensors=len(t_state),
        transformer_parameters=sum(v.numel() for v in t_state.values()),
        transformer_config=t_config,
        vae_tensors=len(v_state),
        vae_config={k: v for k, v in v_config.items() if k not in ("latents_mean", "latents_std")},
        text_encoder=text_encoder_path is not None,
        skipped=sorted(t_skipped + v_skipped),
        seconds=time.perf_counter() - t0,
    )
    log.info(
        "event=converted out=%s transformer_tensors=%d vae_tensors=%d text_encoder=%s seconds=%.1f",
        out_dir,
        report.transformer_tensors,
        report.vae_tensors,
        report.text_encoder,
        report.seconds,
    )
    return report


def _move_into_place(tmp: Path, out_dir: Path) -> None:
    """Rename the finished temporary directory onto ``out_dir`` (replacing an existing one)."""
    old = None
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
        os.rename(out_dir, old)
    os.rename(tmp, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# -- CLI -----------------------------------------------------------------------------------------------------


def _env(flag: str) -> str | None:
    return os.environ.get(f"OBJVID_DIFFUSION_CONVERT_{flag.upper().replace('-', '_')}") or None


def add_convert_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``convert`` flags (env fallbacks ``OBJVID_DIFFUSION_CONVERT_<FLAG>``)."""
    parser.add_argument("--gen3c", default=_env("gen3c"), help="GEN3C-Cosmos-7B model.pt")
    parser.add_argument(
        "--tokenizer", default=_env("tokenizer"), help="Cosmos-Tokenize1-CV8x8x8-720p directory"
    )
    parser.add_argument(
        "--text-encoder",
        default=_env("text-encoder"),
        help="T5 directory (google-t5/t5-11b); omit: no prompts",
    )
    parser.add_argument("--out", default=_env("out"), help="output weights directory")
    parser.add_argument(
        "--dtype", choices=sorted(DTYPES), default=_env("dtype") or "keep", help="transformer dtype"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    parser.add_argument(
        "--allow-pickle",
        action="store_true",
        help="allow full pickle loading of model.pt (trusted files only)",
    )
    parser.add_argument("--chunk-frames", type=int, default=121, help=argparse.SUPPRESS)
    parser.add_argument("--text-max-length", type=int, default=512, help=argparse.SUPPRESS)
    return parser


def run_convert(args: argparse.Namespace) -> Report:
    """Run ``convert`` from parsed arguments (ConversionError on missing flags or bad inputs)."""
    missing = [f"--{n.replace('_', '-')}" for n in ("gen3c", "tokenizer", "out") if not getattr(args, n)]
    if missing:
        raise ConversionError(f"missing required flags: {' '.join(missing)}")
    return convert(
        args.gen3c,
        args.tokenizer,
        args.out,
        args.text_encoder,
        dtype=args.dtype,
        overwrite=args.overwrite,
        allow_pickle=args.allow_pickle,
        chunk_frames=args.chunk_frames,
        text_max_length=args.text_max_length,
    )


def main(argv: list[str] | None = None) -> int:
    """``objvid-diffusion convert ...``; returns the exit status (0 ok, 2 conversion error)."""
    parser = add_convert_arguments(
        argparse.ArgumentParser(prog="objvid-diffusion convert", description=__doc__.split("\n\n")[0])
    )
    args = parser.parse_args(argv)
    try:
        report = run_convert(args)
    except ConversionError as exc:
        print(f"objvid-diffusion convert: error: {exc}", file=sys.stderr)
        return 2
    print(report.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
