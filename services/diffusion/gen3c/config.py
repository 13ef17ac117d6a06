"""GEN3C configuration: the pipeline settings (``gen3c.json``) and the transformer / VAE layouts.

Values follow upstream nv-tlabs/GEN3C (``GEN3C_Cosmos_7B`` experiment on the ``faditv2_7b`` net, the
``Cosmos-Tokenize1-CV8x8x8-720p`` tokenizer, diffusers' ``EDMEulerScheduler(sigma_max=80, sigma_min=0.0002,
sigma_data=0.5)``). The weights directory written by ``objvid-diffusion convert`` holds:

- ``gen3c.json``: :class:`Gen3cConfig` (this file's pipeline settings),
- ``transformer/``: ``CosmosTransformer3DModel`` config + safetensors (diffusers format),
- ``vae/``: ``AutoencoderKLCosmos`` config + safetensors (diffusers format, ``latents_mean/std`` in config),
- ``text_encoder/`` + ``tokenizer/`` (optional): a transformers T5 encoder and its tokenizer.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FORMAT_NAME = "objvid-gen3c"
FORMAT_VERSION = 1
CONFIG_FILE = "gen3c.json"
TRANSFORMER_DIR = "transformer"
VAE_DIR = "vae"
TEXT_ENCODER_DIR = "text_encoder"
TOKENIZER_DIR = "tokenizer"

LATENT_CHANNELS = 16
CONDITION_MASK_CHANNELS = 1
PADDING_MASK_CHANNELS = 1


@dataclass(frozen=True)
class Gen3cConfig:
    """Pipeline settings of one GEN3C weights directory (``gen3c.json``).

    chunk_frames: frames per generated chunk (121 upstream: (T - 1) % 8 == 0, one VAE chunk);
    frame_buffer_max: cache buffer slots the net was trained with (2 upstream);
    sigma_*, rho: EDM Karras schedule; sigma_data: EDM data std, also the latent scale (latent * 0.5);
    condition_augment_sigma: noise added to the clean condition latent at inference (0.001 upstream);
    num_condition_latents: latent frames replaced by the first-frame latent (1 upstream);
    text_max_length / text_embed_dim: T5 token count and width fed to cross-attention (512 x 1024).
    """

    chunk_frames: int = 121
    frame_buffer_max: int = 2
    latent_channels: int = LATENT_CHANNELS
    spatial_compression: int = 8
    temporal_compression: int = 8
    sigma_min: float = 0.0002
    sigma_max: float = 80.0
    sigma_data: float = 0.5
    rho: float = 7.0
    condition_augment_sigma: float = 0.001
    num_condition_latents: int = 1
    default_num_steps: int = 35
    text_max_length: int = 512
    text_embed_dim: int = 1024
    has_text_encoder: bool = False
    source: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if self.chunk_frames < 1 or (self.chunk_frames - 1) % self.temporal_compression:
            raise ValueError(
                f"gen3c config chunk_frames must be 1 + k * {self.temporal_compression}, got {self.chunk_frames}"
            )
        if self.frame_buffer_max < 1:
            raise ValueError(f"gen3c config frame_buffer_max must be >= 1, got {self.frame_buffer_max}")
        if not 0 < self.sigma_min < self.sigma_max:
            raise ValueError("gen3c config needs 0 < sigma_min < sigma_max")

    @property
    def latent_frames(self) -> int:
        """Latent frames of one chunk: 1 + (chunk_frames - 1) / temporal_compression (16 for 121)."""
        return 1 + (self.chunk_frames - 1) // self.temporal_compression

    @property
    def transformer_in_channels(self) -> int:
        """Channels the DiT patch embedding sees: noisy latent + condition mask + cache latents + padding."""
        return (
            self.latent_channels
            + CONDITION_MASK_CHANNELS
            + 2 * self.latent_channels * self.frame_buffer_max
            + PADDING_MASK_CHANNELS
        )

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, **dataclasses.asdict(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Gen3cConfig:
        if data.get("format") != FORMAT_NAME:
            raise ValueError(
                f"not a GEN3C weights config: format={data.get('format')!r}, want {FORMAT_NAME!r}"
            )
        if data.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"unsupported GEN3C weights format_version {data.get('format_version')!r}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names - {"format", "format_version"})
        if unknown:
            raise ValueError(f"unknown keys in {CONFIG_FILE}: {unknown}")
        return cls(**{k: v for k, v in data.items() if k in names})

    def save(self, weights_dir: str | Path) -> None:
        path = Path(weights_dir) / CONFIG_FILE
        path.write_text(json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, weights_dir: str | Path) -> Gen3cConfig:
        path = Path(weights_dir) / CONFIG_FILE
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} not found: not a GEN3C weights directory (run objvid-diffusion convert)"
            )
        return cls.from_json(json.loads(path.read_text()))


def transformer_config_7b(frame_buffer_max: int = 2) -> dict[str, Any]:
    """diffusers ``CosmosTransformer3DModel`` kwargs of GEN3C-Cosmos-7B (7.24B parameters).

    ``in_channels`` counts noisy latent + condition mask + cache latents (81); the padding-mask channel is
    added by ``concat_padding_mask`` (82 in the patch embedding), as in upstream ``GeneralDIT``.
    """
    return {
        "in_channels": LATENT_CHANNELS + CONDITION_MASK_CHANNELS + 2 * LATENT_CHANNELS * frame_buffer_max,
        "out_channels": LATENT_CHANNELS,
        "num_attention_heads": 32,
        "attention_head_dim": 128,
        "num_layers": 28,
        "mlp_ratio": 4.0,
        "text_embed_dim": 1024,
        "adaln_lora_dim": 256,
        "max_size": (128, 240, 240),
        "patch_size": (1, 2, 2),
        "rope_scale": (2.0, 1.0, 1.0),
        "concat_padding_mask": True,
        "extra_pos_embed_type": "learnable",
    }


def transformer_config_tiny(frame_buffer_max: int = 2) -> dict[str, Any]:
    """A 2-block, 32-wide layout with the 7B's structure, for CPU tests."""
    cfg = transformer_config_7b(frame_buffer_max)
    cfg.update(
        num_attention_heads=2,
        attention_head_dim=16,
        num_layers=2,
        text_embed_dim=16,
        adaln_lora_dim=8,
        max_size=(16, 32, 32),
    )
    return cfg


def vae_config_720p() -> dict[str, Any]:
    """diffusers ``AutoencoderKLCosmos`` kwargs of Cosmos-Tokenize1-CV8x8x8-720p (without latents_mean/std).

    Upstream tokenizer config ``continuous_video_8x8x8_720p``: channels 128 x (2, 4, 4), 2 res blocks, haar
    patching 4, attention resolution 32 of 1024, factorized 3D encoder/decoder, AE formulation.
    """
    return {
        "in_channels": 3,
        "out_channels": 3,
        "latent_channels": LATENT_CHANNELS,
        "encoder_block_out_channels": (128, 256, 512, 512),
        "decode_block_out_channels": (256, 512, 512, 512),
        "attention_resolutions": (32,),
        "resolution": 1024,
        "num_layers": 2,
        "patch_size": 4,
        "patch_type": "haar",
        "scaling_factor": 1.0,
        "spatial_compression_ratio": 8,
        "temporal_compression_ratio": 8,
    }


def vae_config_tiny() -> dict[str, Any]:
    """The 720p tokenizer's structure with 8-wide base channels, for CPU tests."""
    cfg = vae_config_720p()
    cfg.update(encoder_block_out_channels=(8, 16, 32, 32), decode_block_out_channels=(16, 32, 32, 32))
    return cfg
