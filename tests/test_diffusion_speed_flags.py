"""Issue 18's speed settings reach the model: FP8 linears (``--fp8`` / ``fp8``), the feed-forward's GELU in
its GEMM (``--gelu-epilogue`` / ``gelu_epilogue``) and a persistent ``torch.compile`` cache
(``--compile-cache`` / ``compile_cache``), through the same settings path the
servers use, on a tiny random GEN3C loaded like a real checkpoint (CPU)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from objvid.diffusion.base import GenerateOptions, validate_chunk
from objvid.diffusion.cli import cli
from objvid.diffusion.convert import convert
from objvid.diffusion.gen3c import fp8, gelu_epilogue
from objvid.diffusion.gen3c.compile_cache import (
    FA4_ENABLE_ENV,
    FA4_ENV,
    INDUCTOR_ENV,
    TRITON_ENV,
    use_compile_cache,
)
from objvid.diffusion.registry import ModelSettings, load_model, settings_from_parameters
from objvid.testing import gen3c as synthetic

T = 9
LAYOUT = synthetic.TokenizerLayout(latent_frames_stored=2)


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("gen3c_fp8")
    model_pt = synthetic.write_gen3c_checkpoint(
        root / "src" / "model.pt", synthetic.upstream_dit_state(seed=3)
    )
    tok = synthetic.write_tokenizer_dir(
        root / "src" / "tok", synthetic.upstream_tokenizer_state(LAYOUT, seed=4), LAYOUT
    )
    return str(convert(model_pt, tok, root / "plain", chunk_frames=T, text_max_length=8).out_dir)


def _chunk():
    rng = np.random.default_rng(2)
    renders = rng.integers(0, 256, (T, 2, 32, 48, 3), dtype=np.uint8)
    masks = (rng.random((T, 2, 32, 48)) > 0.3).astype(np.uint8)
    renders[masks == 0] = 0
    return validate_chunk(rng.integers(0, 256, (32, 48, 3), dtype=np.uint8), renders, masks)


def test_fp8_setting_quantizes_the_blocks_and_stays_close(weights_dir, monkeypatch):
    monkeypatch.setattr(fp8, "MIN_FEATURES", 16)  # the tiny model's linears are 32 wide
    plain = load_model("gen3c", ModelSettings(weights_dir=weights_dir))
    quant = load_model("gen3c", settings_from_parameters({"weights_dir": weights_dir, "fp8": "true"}, "cpu"))
    blocks = quant.net.transformer.transformer_blocks
    n_fp8 = sum(isinstance(m, fp8.Fp8Linear) for m in blocks.modules())
    assert n_fp8 > 0 and not any(isinstance(m, fp8.Fp8Linear) for m in plain.net.modules())
    chunk, opts = _chunk(), GenerateOptions(num_steps=2, seed=1)
    a, b = plain.generate(chunk, opts), quant.generate(chunk, opts)
    assert a.shape == b.shape == (T, 32, 48, 3)
    d = np.abs(a.astype(np.int16) - b.astype(np.int16))
    assert d.max() > 0  # the quantized matmuls really ran
    assert d.mean() < 8.0, d.mean()  # ... and stay near the full-precision video


def test_gelu_epilogue_setting_fuses_the_feed_forwards(weights_dir):
    plain = load_model("gen3c", ModelSettings(weights_dir=weights_dir))  # auto: off on a CPU
    fused = load_model(
        "gen3c", settings_from_parameters({"weights_dir": weights_dir, "gelu_epilogue": "true"}, "cpu")
    )
    blocks = fused.net.transformer.transformer_blocks
    n = sum(isinstance(m, gelu_epilogue.LinearGeluTanh) for m in blocks.modules())
    assert n == len(blocks) > 0
    assert not any(isinstance(m, gelu_epilogue.LinearGeluTanh) for m in plain.net.modules())
    chunk, opts = _chunk(), GenerateOptions(num_steps=2, seed=1)
    a, b = plain.generate(chunk, opts), fused.generate(chunk, opts)
    d = np.abs(a.astype(np.int16) - b.astype(np.int16))
    assert d.mean() < 1.0, d.mean()  # the tanh GELU stays next to upstream's erf GELU
    with pytest.raises(ValueError, match="gelu_epilogue and fp8 are exclusive"):
        load_model("gen3c", ModelSettings(weights_dir=weights_dir, fp8=True, gelu_epilogue="true"))
    with pytest.raises(ValueError, match="gelu_epilogue must be auto, true or false"):
        settings_from_parameters({"gelu_epilogue": "fast"}, "cpu")
    assert settings_from_parameters({"gelu_epilogue": " FALSE "}, "cpu").gelu_epilogue == "false"


def test_fp8_and_compile_cache_parameters_are_checked(tmp_path):
    with pytest.raises(ValueError, match="fp8 must be true or false"):
        settings_from_parameters({"fp8": "fast"}, "cpu")
    s = settings_from_parameters({"fp8": "true", "compile_cache": f" {tmp_path} "}, "cpu")
    assert s.fp8 and s.compile_cache == str(tmp_path)
    assert settings_from_parameters({}, "cpu").compile_cache is None


def test_compile_cache_holds_what_torch_compile_writes(tmp_path, monkeypatch):
    for name in (INDUCTOR_ENV, TRITON_ENV, FA4_ENV, FA4_ENABLE_ENV):  # restored after the test
        monkeypatch.setenv(name, os.environ.get(name, ""))
    env = use_compile_cache(tmp_path / "cc")
    assert env[INDUCTOR_ENV] == str(tmp_path / "cc" / "inductor") == os.environ[INDUCTOR_ENV]
    # FlashAttention-4 keeps its compiled kernels there too (read by flash_attn.cute at import)
    assert os.environ[FA4_ENV] == str(tmp_path / "cc" / "fa4") and os.environ[FA4_ENABLE_ENV] == "1"
    assert (tmp_path / "cc" / "fa4").is_dir()
    torch._dynamo.reset()
    f = torch.compile(lambda x: torch.sin(x) * 2 + 1, dynamic=False)
    x = torch.randn(64)
    assert torch.allclose(f(x), torch.sin(x) * 2 + 1)
    written = [p for p in (tmp_path / "cc" / "inductor").rglob("*") if p.is_file()]
    assert written, "torch.compile wrote nothing into the compile cache"
    torch._dynamo.reset()


def test_compile_cache_that_cannot_be_written_is_refused(tmp_path, weights_dir):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ValueError, match=r"^compile_cache: cannot use .*file"):
        use_compile_cache(blocker / "cache")
    # at load, also where nothing is compiled (CPU): a bad path is a configuration error
    with pytest.raises(ValueError, match=r"^compile_cache: cannot use .*file"):
        load_model("gen3c", ModelSettings(weights_dir=weights_dir, compile_cache=str(blocker / "cache")))


def test_serve_help_documents_the_flags():
    from click.testing import CliRunner

    out = CliRunner().invoke(cli, ["serve", "--help"], terminal_width=200).output
    flags = ("--compile-cache", "OBJVID_DIFFUSION_COMPILE_CACHE", "--fp8", "OBJVID_DIFFUSION_FP8")
    for text in (*flags, "--gelu-epilogue", "OBJVID_DIFFUSION_GELU_EPILOGUE"):
        assert text in out, text
