"""``objvid-diffusion convert``: official GEN3C files -> a diffusers-format GEN3C weights directory.

Inputs:
- ``--gen3c``: ``nvidia/GEN3C-Cosmos-7B`` ``model.pt`` (upstream ``DiffusionGen3CModel`` state dict: ``net.*``
  plus training-only ``logvar.*``; optionally wrapped in ``{"model": ...}`` or ``{"state_dict": ...}``);
- ``--tokenizer``: the ``nvidia/Cosmos-Tokenize1-CV8x8x8-720p`` directory: ``encoder.jit`` + ``decoder.jit``
  as upstream loads them (an ``autoencoder.jit`` beside them must agree; or ``autoencoder.jit`` alone) and
  ``mean_std.pt`` (tuple of latent mean and std);
- ``--text-encoder`` (optional): a transformers T5 directory with its tokenizer (upstream: google-t5/t5-11b).

Modules: ``convert_keys`` (transformer key mapping and config), ``convert_tokenizer`` (tokenizer and text
encoder), this one (the whole conversion, atomic output, the CLI). Key mapping is strict: every upstream tensor must map to a diffusers tensor of the same shape and every
diffusers tensor must be covered; known non-weights are skipped and listed (``logvar.*``,
``net.pos_embedder.seq``, ``net.accum_*``, ``*._extra_state``, the tokenizer's wavelet buffers). On any problem
nothing is written and :class:`ConversionError` lists every unmapped, missing and mis-shaped key. The output
is written to a temporary sibling directory and renamed into place at the end.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import torch

from objvid.diffusion.convert_keys import ConversionError, convert_transformer_state, load_gen3c_checkpoint
from objvid.diffusion.convert_tokenizer import convert_vae_state, load_tokenizer_files, save_text_encoder
from objvid.diffusion.gen3c import weights
from objvid.diffusion.gen3c.config import (
    CONDITION_MASK_CHANNELS,
    LATENT_CHANNELS,
    TRANSFORMER_DIR,
    VAE_DIR,
    Gen3cConfig,
)
from objvid.runtime import config as cfg
from objvid.runtime.config import Flag

log = logging.getLogger("objvid.diffusion.convert")

DTYPES = {"keep": None, "bf16": torch.bfloat16, "fp32": torch.float32}


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
            # float32, as upstream runs T5
            save_text_encoder(Path(text_encoder_path), tmp, config.text_embed_dim, torch.float32)
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

#: ``convert`` flags; environment fallbacks ``OBJVID_DIFFUSION_CONVERT_<FLAG>`` (objvid.runtime.config).
FLAGS = [
    Flag("gen3c", "", "GEN3C-Cosmos-7B model.pt (required)", metavar="PATH"),
    Flag("tokenizer", "", "Cosmos-Tokenize1-CV8x8x8-720p directory (required)", metavar="DIR"),
    Flag("text-encoder", "", "T5 directory (google-t5/t5-11b); empty: no prompts", metavar="DIR"),
    Flag("out", "", "output weights directory (required)", metavar="DIR"),
    Flag("dtype", "keep", "transformer dtype", choices=sorted(DTYPES)),
    Flag("overwrite", False, "replace a non-empty --out"),
    Flag("allow-pickle", False, "allow full pickle loading of model.pt (trusted files only)"),
]


def run_convert(options: dict) -> Report:
    """Run ``convert`` from parsed options (ConversionError on missing flags or bad inputs)."""
    missing = [f"--{n.replace('_', '-')}" for n in ("gen3c", "tokenizer", "out") if not options.get(n)]
    if missing:
        raise ConversionError(f"missing required flags: {' '.join(missing)}")
    return convert(
        options["gen3c"],
        options["tokenizer"],
        options["out"],
        options.get("text_encoder") or None,
        dtype=options.get("dtype", "keep"),
        overwrite=options.get("overwrite", False),
        allow_pickle=options.get("allow_pickle", False),
        chunk_frames=options.get("chunk_frames", 121),
        text_max_length=options.get("text_max_length", 512),
    )


@click.command("convert", help=__doc__.split("\n\n")[0].strip("`").split(": ", 1)[-1])
@cfg.options("diffusion_convert", FLAGS)
@click.option("--chunk-frames", type=int, default=121, hidden=True)
@click.option("--text-max-length", type=int, default=512, hidden=True)
def convert_command(**options) -> int:
    try:
        report = run_convert(options)
    except ConversionError as exc:
        click.echo(f"objvid-diffusion convert: error: {exc}", err=True)
        return 2
    click.echo(report.summary())
    return 0


def main(argv: list[str] | None = None) -> int:
    """``objvid-diffusion convert ...``; returns the exit status (0 ok, 2 conversion error or bad flags)."""
    return cfg.run_cli(convert_command, argv, "objvid-diffusion convert")


if __name__ == "__main__":
    sys.exit(main())
