"""Issue 11 items 3-4: per-chunk noise, upstream's default negative prompt, T5 precision, tokenizer files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_diffusion_gen3c import TOK_LAYOUT, model, opts, small, weights_dirs  # noqa: F401 (fixtures)

from objvid.diffusion import convert as conv
from objvid.diffusion.base import DEFAULT_NEGATIVE_PROMPT, GenerateOptions
from objvid.diffusion.gen3c import sampler
from objvid.diffusion.gen3c.model import Gen3cModel
from objvid.testing import gen3c as synthetic
from objvid.v1 import diffusion_pb2

UPSTREAM_NEGATIVE_START = "The video captures a series of frames showing ugly scenes, static with no motion"


def test_chunk_noise_is_fresh_per_chunk_and_seed_determined():
    shape = (1, 16, 4, 6, 8)
    first = sampler.initial_noise(shape, 7, 0)
    assert torch.equal(first, torch.randn(shape, generator=torch.Generator().manual_seed(7)))  # unchanged
    chunks = [sampler.initial_noise(shape, 7, c) for c in range(4)]
    assert torch.equal(chunks[0], first)
    assert all(torch.equal(a, sampler.initial_noise(shape, 7, c)) for c, a in enumerate(chunks))  # same seed
    flat = torch.stack([c.flatten() for c in chunks])
    corr = torch.corrcoef(flat)
    off = corr[~torch.eye(4, dtype=torch.bool)]
    assert off.abs().max() < 0.05  # independent draws (3072 samples: |r| ~ 0.02)
    assert not torch.equal(sampler.initial_noise(shape, 8, 1), chunks[1])  # the seed still matters
    assert sampler.chunk_seed(2**63 - 1, 5) < 2**63


def test_chunk_index_changes_the_chunk_and_only_the_chunk(model, small):  # noqa: F811
    a0 = model.generate(small, opts(seed=3, chunk_index=0))
    a1 = model.generate(small, opts(seed=3, chunk_index=1))
    b1 = model.generate(small, opts(seed=3, chunk_index=1))
    assert np.array_equal(a1, b1) and not np.array_equal(a0, a1)
    with pytest.raises(ValueError, match="options.chunk_index"):
        model.generate(small, opts(chunk_index=-1))


def test_default_negative_prompt_is_upstreams_and_empty_stays_possible():
    assert DEFAULT_NEGATIVE_PROMPT.startswith(UPSTREAM_NEGATIVE_START)
    assert DEFAULT_NEGATIVE_PROMPT.endswith("Overall, the video is of poor quality.")
    assert GenerateOptions().negative_prompt == DEFAULT_NEGATIVE_PROMPT
    unset = GenerateOptions.from_proto(diffusion_pb2.GenerateOptions(prompt="x"))
    empty = GenerateOptions.from_proto(diffusion_pb2.GenerateOptions(prompt="x", negative_prompt=""))
    own = GenerateOptions.from_proto(
        diffusion_pb2.GenerateOptions(prompt="x", negative_prompt="sky", chunk_index=2)
    )
    assert unset.negative_prompt == DEFAULT_NEGATIVE_PROMPT
    assert empty.negative_prompt == ""
    assert own.negative_prompt == "sky" and own.chunk_index == 2


def test_t5_runs_in_float32_and_feeds_the_dit_its_dtype(weights_dirs, small):  # noqa: F811
    m = Gen3cModel.from_pretrained(weights_dirs["t5"], device="cpu", dtype=torch.bfloat16)
    assert {p.dtype for p in m.prompt_encoder.encoder.parameters()} == {torch.float32}
    cond, uncond = m._prompt_pair("a red cube", DEFAULT_NEGATIVE_PROMPT)
    assert cond.dtype == torch.bfloat16 and uncond.dtype == torch.bfloat16
    ref = m.prompt_encoder.encode(["a red cube"])  # float32 encoder output, rounded once to bf16
    assert torch.equal(cond[0], ref[0].to(torch.bfloat16))


def _tok_dirs(tmp_path, state):
    both = synthetic.write_tokenizer_dir(tmp_path / "both", state, TOK_LAYOUT)
    synthetic.write_tokenizer_dir(tmp_path / "ae_only", state, TOK_LAYOUT, autoencoder=True)
    (both / "autoencoder.jit").write_bytes((tmp_path / "ae_only" / "autoencoder.jit").read_bytes())
    return both


def test_tokenizer_prefers_encoder_decoder_and_checks_the_autoencoder(tmp_path):
    state = synthetic.upstream_tokenizer_state(TOK_LAYOUT, seed=9)
    both = _tok_dirs(tmp_path, state)
    got, mean, std, files = conv.load_tokenizer_files(both)
    assert files[:2] == ["encoder.jit", "decoder.jit"] and "autoencoder.jit (checked)" in files
    assert set(got) == set(state) and all(torch.equal(got[k], state[k]) for k in state)
    # an autoencoder.jit from other weights is refused, naming the tensor
    other = dict(state)
    key = next(k for k in state if k.startswith("decoder."))
    other[key] = other[key] + 1
    synthetic.write_tokenizer_dir(tmp_path / "other", other, TOK_LAYOUT, autoencoder=True)
    (both / "autoencoder.jit").write_bytes((tmp_path / "other" / "autoencoder.jit").read_bytes())
    with pytest.raises(conv.ConversionError, match=f"{key} differs between autoencoder.jit"):
        conv.load_tokenizer_files(both)
    # autoencoder.jit alone is still read
    got, _, _, files = conv.load_tokenizer_files(tmp_path / "ae_only")
    assert files[0] == "autoencoder.jit" and torch.equal(got[key], state[key])
