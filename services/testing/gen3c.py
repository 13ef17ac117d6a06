"""Synthetic checkpoints in the *upstream* file formats, for tests and smoke runs (random weights).

The key names and shapes follow upstream's modules (``GeneralDIT`` / ``GeneralDITTransformerBlock`` /
``FinalLayer`` for ``model.pt``; ``EncoderFactorized`` / ``DecoderFactorized`` / ``CausalContinuousVideoTokenizer``
for the tokenizer's TorchScript files), written out here from the module structure (independently of
``convert.py``'s mapping rules), so converting them exercises the same path as the official files:

- ``write_gen3c_checkpoint(path, layout)``: ``torch.save({"model": state})`` like a training checkpoint;
- ``write_tokenizer_dir(folder, layout)``: ``encoder.jit``, ``decoder.jit`` (and optionally ``autoencoder.jit``)
  as TorchScript modules whose ``state_dict`` has upstream names, plus ``mean_std.pt`` = (mean, std) tensors
  of shape (latent_channels * latent_frames,).

Weights are random with fan-in scaling (finite, modest activations); every tensor is distinct.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn


@dataclass(frozen=True)
class DitLayout:
    """Upstream ``GeneralDIT`` sizes (GEN3C 7B: hidden 4096, 32 heads, 28 blocks, lora 256, ctx 1024)."""

    hidden: int = 32
    heads: int = 2
    layers: int = 2
    lora: int = 8
    text_dim: int = 16
    frame_buffer_max: int = 2
    pos_len: tuple[int, int, int] = (16, 16, 16)  # (len_t, len_h, len_w) in patches
    mlp_ratio: int = 4
    latent: int = 16

    @property
    def in_total(self) -> int:
        return self.latent + 1 + 2 * self.latent * self.frame_buffer_max + 1


@dataclass(frozen=True)
class TokenizerLayout:
    """Upstream ``continuous_video`` tokenizer sizes (720p: channels 128, mult (2, 4, 4), 2 res blocks)."""

    channels: int = 8
    mult: tuple[int, ...] = (2, 4, 4)
    res_blocks: int = 2
    latent: int = 16
    patch: int = 4
    spatial_compression: int = 8
    temporal_compression: int = 8
    latent_frames_stored: int = 16


def _w(gen: torch.Generator, *shape: int, fan_in: int | None = None) -> torch.Tensor:
    fan = fan_in if fan_in is not None else (math.prod(shape[1:]) if len(shape) > 1 else shape[0])
    return torch.randn(shape, generator=gen) / math.sqrt(max(fan, 1))


def _norm(gen: torch.Generator, n: int) -> torch.Tensor:
    return 1.0 + 0.1 * torch.randn(n, generator=gen)


def _small(gen: torch.Generator, *shape: int) -> torch.Tensor:
    return 0.02 * torch.randn(shape, generator=gen)


def upstream_dit_state(layout: DitLayout = DitLayout(), seed: int = 0) -> dict[str, torch.Tensor]:
    """``DiffusionGen3CModel`` state dict (``net.*`` + ``logvar.*``) with upstream names, float32."""
    g = torch.Generator().manual_seed(seed)
    d, hd, lora, ctx = layout.hidden, layout.hidden // layout.heads, layout.lora, layout.text_dim
    s: dict[str, torch.Tensor] = {
        "net.x_embedder.proj.1.weight": _w(g, d, layout.in_total * 4),
        "net.t_embedder.1.linear_1.weight": _w(g, d, d),
        "net.t_embedder.1.linear_2.weight": _small(g, 3 * d, d),
        "net.affline_norm.weight": _norm(g, d),
        "net.pos_embedder.seq": torch.arange(max(layout.pos_len), dtype=torch.float32),
    }
    for axis, n in zip("thw", layout.pos_len, strict=True):
        s[f"net.extra_pos_embedder.pos_emb_{axis}"] = _small(g, n, d)
    for i in range(layout.layers):
        pre = f"net.blocks.block{i}.blocks"
        for j in range(3):
            s[f"{pre}.{j}.adaLN_modulation.1.weight"] = _w(g, lora, d)
            s[f"{pre}.{j}.adaLN_modulation.2.weight"] = _small(g, 3 * d, lora)
        for j, kv_in in ((0, d), (1, ctx)):
            attn = f"{pre}.{j}.block.attn"
            s[f"{attn}.to_q.0.weight"] = _w(g, d, d)
            s[f"{attn}.to_q.1.weight"] = _norm(g, hd)
            s[f"{attn}.to_k.0.weight"] = _w(g, d, kv_in)
            s[f"{attn}.to_k.1.weight"] = _norm(g, hd)
            s[f"{attn}.to_v.0.weight"] = _w(g, d, kv_in)
            s[f"{attn}.to_out.0.weight"] = _w(g, d, d)
        s[f"{pre}.2.block.layer1.weight"] = _w(g, layout.mlp_ratio * d, d)
        s[f"{pre}.2.block.layer2.weight"] = _w(g, d, layout.mlp_ratio * d)
    s["net.final_layer.adaLN_modulation.1.weight"] = _w(g, lora, d)
    s["net.final_layer.adaLN_modulation.2.weight"] = _small(g, 2 * d, lora)
    s["net.final_layer.linear.weight"] = _w(g, 4 * layout.latent, d)
    s["logvar.0.freqs"] = torch.randn(128, generator=g)
    s["logvar.0.phases"] = torch.rand(128, generator=g)
    s["logvar.1.weight"] = _w(g, 1, 128)
    return s


def write_gen3c_checkpoint(
    path: str | Path, state: dict[str, torch.Tensor], wrap: str | None = "model"
) -> Path:
    """Save like upstream checkpoints: ``{"model": state}`` (or the bare state dict when wrap is None)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({wrap: state} if wrap else state, path)
    return path


def _conv(s: dict, g: torch.Generator, key: str, c_out: int, c_in: int, kernel: tuple[int, int, int]) -> None:
    s[f"{key}.conv3d.weight"] = _w(g, c_out, c_in, *kernel)
    s[f"{key}.conv3d.bias"] = _small(g, c_out)


def _gnorm(s: dict, g: torch.Generator, key: str, c: int) -> None:
    s[f"{key}.norm.weight"] = _norm(g, c)
    s[f"{key}.norm.bias"] = _small(g, c)


def _resnet(s: dict, g: torch.Generator, key: str, c_in: int, c_out: int) -> None:
    _gnorm(s, g, f"{key}.norm1", c_in)
    _conv(s, g, f"{key}.conv1.0", c_out, c_in, (1, 3, 3))
    _conv(s, g, f"{key}.conv1.1", c_out, c_out, (3, 1, 1))
    _gnorm(s, g, f"{key}.norm2", c_out)
    _conv(s, g, f"{key}.conv2.0", c_out, c_out, (1, 3, 3))
    _conv(s, g, f"{key}.conv2.1", c_out, c_out, (3, 1, 1))
    if c_in != c_out:
        _conv(s, g, f"{key}.nin_shortcut", c_out, c_in, (1, 1, 1))


def _attn(s: dict, g: torch.Generator, key: str, c: int) -> None:
    _gnorm(s, g, f"{key}.norm", c)
    for name in ("q", "k", "v", "proj_out"):
        _conv(s, g, f"{key}.{name}", c, c, (1, 1, 1))


def _patch_buffers(s: dict, key: str, patch: int) -> None:
    s[f"{key}.wavelets"] = torch.tensor([0.7071067811865476, 0.7071067811865476])
    s[f"{key}._arange"] = torch.arange(2)
    s[f"{key}.patch_size_buffer"] = patch * torch.ones([1], dtype=torch.int32)


def upstream_tokenizer_state(
    layout: TokenizerLayout = TokenizerLayout(), seed: int = 1
) -> dict[str, torch.Tensor]:
    """``CausalContinuousVideoTokenizer`` (factorized encoder/decoder, AE) state dict with upstream names."""
    g = torch.Generator().manual_seed(seed)
    c, mult, nres, z, p = layout.channels, layout.mult, layout.res_blocks, layout.latent, layout.patch
    n = len(mult)
    spatial_downs = int(math.log2(layout.spatial_compression)) - int(math.log2(p))
    temporal_downs = int(math.log2(layout.temporal_compression)) - int(math.log2(p))
    s: dict[str, torch.Tensor] = {}
    # encoder
    _patch_buffers(s, "encoder.patcher3d", p)
    _conv(s, g, "encoder.conv_in.0", c, 3 * p**3, (1, 3, 3))
    _conv(s, g, "encoder.conv_in.1", c, c, (3, 1, 1))
    in_mult = (1, *mult)
    block_in = c
    for i in range(n):
        block_in, block_out = c * in_mult[i], c * mult[i]
        for j in range(nres):
            _resnet(s, g, f"encoder.down.{i}.block.{j}", block_in, block_out)
            block_in = block_out
        if i != n - 1:
            sd, td = i < spatial_downs, i < temporal_downs
            if sd:
                _conv(s, g, f"encoder.down.{i}.downsample.conv1", block_in, block_in, (1, 3, 3))
            if td:
                _conv(s, g, f"encoder.down.{i}.downsample.conv2", block_in, block_in, (3, 1, 1))
            if sd or td:
                _conv(s, g, f"encoder.down.{i}.downsample.conv3", block_in, block_in, (1, 1, 1))
    _resnet(s, g, "encoder.mid.block_1", block_in, block_in)
    _attn(s, g, "encoder.mid.attn_1.0", block_in)
    _attn(s, g, "encoder.mid.attn_1.1", block_in)
    _resnet(s, g, "encoder.mid.block_2", block_in, block_in)
    _gnorm(s, g, "encoder.norm_out", block_in)
    _conv(s, g, "encoder.conv_out.0", z, block_in, (1, 3, 3))
    _conv(s, g, "encoder.conv_out.1", z, z, (3, 1, 1))
    _conv(s, g, "quant_conv", z, z, (1, 1, 1))
    # decoder
    _conv(s, g, "post_quant_conv", z, z, (1, 1, 1))
    _patch_buffers(s, "decoder.unpatcher3d", p)
    block_in = c * mult[-1]
    _conv(s, g, "decoder.conv_in.0", block_in, z, (1, 3, 3))
    _conv(s, g, "decoder.conv_in.1", block_in, block_in, (3, 1, 1))
    _resnet(s, g, "decoder.mid.block_1", block_in, block_in)
    _attn(s, g, "decoder.mid.attn_1.0", block_in)
    _attn(s, g, "decoder.mid.attn_1.1", block_in)
    _resnet(s, g, "decoder.mid.block_2", block_in, block_in)
    for i in reversed(range(n)):
        block_out = c * mult[i]
        for j in range(nres + 1):
            _resnet(s, g, f"decoder.up.{i}.block.{j}", block_in, block_out)
            block_in = block_out
        if i != 0:
            rev = n - i - 1
            tu = 0 < rev < temporal_downs + 1
            su = tu or (rev < spatial_downs and spatial_downs > temporal_downs)
            if tu:
                _conv(s, g, f"decoder.up.{i}.upsample.conv1", block_in, block_in, (3, 1, 1))
            if su:
                _conv(s, g, f"decoder.up.{i}.upsample.conv2", block_in, block_in, (1, 3, 3))
            if su or tu:
                _conv(s, g, f"decoder.up.{i}.upsample.conv3", block_in, block_in, (1, 1, 1))
    _gnorm(s, g, "decoder.norm_out", block_in)
    _conv(s, g, "decoder.conv_out.0", 3 * p**3, block_in, (1, 3, 3))
    _conv(s, g, "decoder.conv_out.1", 3 * p**3, 3 * p**3, (3, 1, 1))
    return s


def _module_tree(state: dict[str, torch.Tensor]) -> nn.Module:
    """A module whose ``state_dict()`` is ``state`` (floats as parameters, others as buffers)."""
    root = nn.Module()
    for key, value in state.items():
        *path, leaf = key.split(".")
        node = root
        for part in path:
            if not hasattr(node, part):
                node.add_module(part, nn.Module())
            node = getattr(node, part)
        if value.is_floating_point() and not leaf.startswith("_") and leaf != "wavelets":
            node.register_parameter(leaf, nn.Parameter(value.clone(), requires_grad=False))
        else:
            node.register_buffer(leaf, value.clone())
    return root


def _save_jit(state: dict[str, torch.Tensor], path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is the upstream file format
        torch.jit.script(_module_tree(state)).save(str(path))


def write_tokenizer_dir(
    folder: str | Path,
    state: dict[str, torch.Tensor],
    layout: TokenizerLayout,
    autoencoder: bool = False,
    seed: int = 2,
) -> Path:
    """Write ``encoder.jit`` + ``decoder.jit`` (or ``autoencoder.jit``) and ``mean_std.pt`` like the HF repo."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if autoencoder:
        _save_jit(state, folder / "autoencoder.jit")
    else:
        enc = {k: v for k, v in state.items() if k.startswith(("encoder.", "quant_conv."))}
        dec = {k: v for k, v in state.items() if k.startswith(("decoder.", "post_quant_conv."))}
        _save_jit(enc, folder / "encoder.jit")
        _save_jit(dec, folder / "decoder.jit")
    g = torch.Generator().manual_seed(seed)
    n = layout.latent * layout.latent_frames_stored
    mean = 0.05 * torch.randn(n, generator=g)
    std = 0.6 + 0.1 * torch.rand(n, generator=g)
    torch.save((mean, std), folder / "mean_std.pt")
    return folder
