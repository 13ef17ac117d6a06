"""GEN3C transformer weights: the upstream -> diffusers key mapping and config inference for ``convert``.

Strict: every upstream tensor maps to a diffusers tensor of the same shape and every diffusers tensor is
covered; known non-weights are skipped and listed. Problems raise :class:`ConversionError` listing every
unmapped, missing and mis-shaped key.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from objvid.diffusion.gen3c import weights
from objvid.diffusion.gen3c.config import (
    CONDITION_MASK_CHANNELS,
    LATENT_CHANNELS,
    PADDING_MASK_CHANNELS,
)

log = logging.getLogger("objvid.diffusion.convert")


class ConversionError(ValueError):
    """The inputs do not convert cleanly; the message lists every problem."""


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
