"""Prompt encoders for GEN3C's cross-attention.

- :class:`T5PromptEncoder`: upstream ``CosmosT5TextEncoder`` (google-t5/t5-11b encoder): tokens padded /
  truncated to 512, ``last_hidden_state`` with every position past the prompt's tokens set to zero. Upstream
  runs T5 in float32 and rounds only its output to the DiT's bf16; ``Gen3cModel`` loads it in float32 and
  casts the returned float32 embeddings to its dtype.
- :class:`ZeroPromptEncoder`: upstream ``--disable_prompt_encoder`` (``DummyT5TextEncoder``): all-zero
  embeddings of shape (B, 512, 1024) whatever the prompt (its mask is unused because the DiT's cross-attention
  has no mask). Used when the weights directory has no text encoder.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

log = logging.getLogger("objvid.diffusion.gen3c")


class ZeroPromptEncoder:
    """(B, max_length, embed_dim) zeros for any prompts; holds no weights."""

    is_dummy = True

    def __init__(self, max_length: int, embed_dim: int):
        self.max_length = int(max_length)
        self.embed_dim = int(embed_dim)
        self.device = torch.device("cpu")

    def encode(self, prompts: list[str]) -> torch.Tensor:
        if not prompts:
            raise ValueError("no prompts to encode")
        return torch.zeros((len(prompts), self.max_length, self.embed_dim))

    def to(self, device) -> ZeroPromptEncoder:
        return self

    @property
    def nbytes(self) -> int:
        return 0


class T5PromptEncoder:
    """A transformers T5 encoder + tokenizer. encode(prompts) -> (B, max_length, d_model) float32 on CPU."""

    is_dummy = False

    def __init__(self, tokenizer, encoder, max_length: int):
        self.tokenizer = tokenizer
        self.encoder = encoder.eval().requires_grad_(False)
        self.max_length = int(max_length)
        self.embed_dim = int(encoder.config.d_model)

    @classmethod
    def load(
        cls, text_encoder_dir: str | Path, tokenizer_dir: str | Path, max_length: int, dtype: torch.dtype
    ) -> T5PromptEncoder:
        from transformers import AutoTokenizer, T5EncoderModel

        tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
        encoder = T5EncoderModel.from_pretrained(str(text_encoder_dir), dtype=dtype)
        return cls(tokenizer, encoder, max_length)

    @property
    def device(self) -> torch.device:
        return next(self.encoder.parameters()).device

    @property
    def nbytes(self) -> int:
        return sum(p.numel() * p.element_size() for p in self.encoder.parameters())

    def to(self, device) -> T5PromptEncoder:
        self.encoder.to(device)
        return self

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> torch.Tensor:
        if not prompts:
            raise ValueError("no prompts to encode")
        batch = self.tokenizer(
            list(prompts),
            return_tensors="pt",
            truncation=True,
            padding="max_length",
            max_length=self.max_length,
        )
        ids = batch["input_ids"].to(self.device)
        mask = batch["attention_mask"].to(self.device)
        hidden = self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state.float()
        hidden = hidden * mask[..., None].to(hidden.dtype)  # zero past each prompt's tokens
        return hidden.cpu()


def load_prompt_encoder(
    weights_dir: Path, has_text_encoder: bool, max_length: int, embed_dim: int, dtype: torch.dtype
) -> ZeroPromptEncoder | T5PromptEncoder:
    """The T5 encoder of the weights directory, or the zero encoder when it has none."""
    if not has_text_encoder:
        log.info("event=prompt_encoder kind=zeros reason=no_text_encoder_in_weights prompts=ignored")
        return ZeroPromptEncoder(max_length, embed_dim)
    from objvid.diffusion.gen3c.config import TEXT_ENCODER_DIR, TOKENIZER_DIR

    enc = T5PromptEncoder.load(weights_dir / TEXT_ENCODER_DIR, weights_dir / TOKENIZER_DIR, max_length, dtype)
    if enc.embed_dim != embed_dim:
        raise ValueError(f"text encoder width {enc.embed_dim} != transformer text_embed_dim {embed_dim}")
    log.info("event=prompt_encoder kind=t5 d_model=%d", enc.embed_dim)
    return enc
