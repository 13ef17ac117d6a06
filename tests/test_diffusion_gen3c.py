"""GEN3C pipeline on CPU: a tiny random GEN3C (2 blocks, 32 wide, tiny VAE) converted from upstream-format
files and loaded like a real checkpoint, 9 frames at 64x96, 2 steps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from objvid.diffusion.base import GenerateOptions, validate_chunk
from objvid.diffusion.convert import convert
from objvid.diffusion.gen3c import conditioning
from objvid.diffusion.gen3c.memory import GpuMemoryError
from objvid.diffusion.gen3c.model import Gen3cModel
from objvid.testing import gen3c as synthetic

T, H, W = 9, 64, 96
TOK_LAYOUT = synthetic.TokenizerLayout(latent_frames_stored=2)


def make_tiny_t5(folder):
    """A 1-layer, 16-wide T5 encoder with a word-level tokenizer (appends </s>, pads with <pad>)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast, T5Config, T5EncoderModel

    vocab = {
        "<pad>": 0,
        "</s>": 1,
        "<unk>": 2,
        **{w: i + 3 for i, w in enumerate("a red cube on grass sky".split())},
    }
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )
    fast.save_pretrained(str(folder))
    torch.manual_seed(0)
    cfg = T5Config(
        vocab_size=16, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2, decoder_start_token_id=0
    )
    T5EncoderModel(cfg).save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def weights_dirs(tmp_path_factory):
    """Two converted tiny weights directories: without a text encoder (zeros) and with a tiny T5."""
    root = tmp_path_factory.mktemp("gen3c")
    model_pt = synthetic.write_gen3c_checkpoint(
        root / "src" / "model.pt", synthetic.upstream_dit_state(seed=5)
    )
    tok = synthetic.write_tokenizer_dir(
        root / "src" / "tok", synthetic.upstream_tokenizer_state(TOK_LAYOUT, seed=6), TOK_LAYOUT
    )
    t5 = make_tiny_t5(root / "src" / "t5")
    plain = convert(model_pt, tok, root / "plain", chunk_frames=T, text_max_length=8).out_dir
    with_t5 = convert(
        model_pt, tok, root / "t5", text_encoder_path=t5, chunk_frames=T, text_max_length=8
    ).out_dir
    return {"plain": plain, "t5": with_t5}


@pytest.fixture(scope="module")
def model(weights_dirs):
    return Gen3cModel.from_pretrained(weights_dirs["plain"], device="cpu")


def make_chunk(height: int, width: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    renders = rng.integers(0, 256, (T, 2, height, width, 3), dtype=np.uint8)
    masks = (rng.random((T, 2, height, width)) > 0.3).astype(np.uint8)
    renders[masks == 0] = 0  # holes are black, as the cache renders them
    return validate_chunk(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), renders, masks)


@pytest.fixture(scope="module")
def chunk():
    """The full test size: 9 frames at 64x96, two buffer slots."""
    return make_chunk(H, W)


@pytest.fixture(scope="module")
def small():
    """A cheaper 32x48 chunk for behaviour checks (the VAE dominates CPU time)."""
    return make_chunk(32, 48, seed=1)


def opts(**kw):
    kw.setdefault("num_steps", 2)
    return GenerateOptions(**kw)


def test_generate_shape_dtype_and_progress(model, chunk):
    events = []
    video = model.generate(chunk, opts(guidance=1.0), events.append)
    assert video.shape == (T, H, W, 3) and video.dtype == np.uint8
    stages = [e.stage for e in events]
    assert stages[0] == "encode" and stages[-1] == "decode"
    assert [e.step for e in events if e.stage == "encode"] == [
        0,
        1,
        2,
        3,
        4,
        5,
    ]  # first frame + 2 x (warp, mask)
    assert [(e.step, e.total) for e in events if e.stage == "denoise"] == [(0, 2), (1, 2), (2, 2)]
    assert model.name == "gen3c" and not model.preview


def test_seed_determinism(model, chunk):
    a = model.generate(chunk, opts(seed=7))
    b = model.generate(chunk, opts(seed=7))
    c = model.generate(chunk, opts(seed=8))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def _record_net_inputs(model):
    """Capture the transformer's (B, 82, T', h, w) inputs during generate (hook, no behaviour change)."""
    seen = []
    handle = model.net.transformer.register_forward_pre_hook(
        lambda _m, _a, kw: seen.append(kw["hidden_states"].clone()), with_kwargs=True
    )
    return seen, handle


def test_guidance_runs_the_unconditional_branch_with_zeroed_cache(model, small):
    seen, handle = _record_net_inputs(model)
    try:
        plain = model.generate(small, opts(guidance=0.0))
        calls_plain = len(seen)
        seen.clear()
        guided = model.generate(small, opts(guidance=2.0))
    finally:
        handle.remove()
    assert calls_plain == 2  # one conditional pass per step
    assert len(seen) == 4  # conditional + unconditional per step
    cond, uncond = seen[0], seen[1]
    cache = slice(17, 81)  # after 16 noisy-latent channels and the condition mask
    assert cond[:, cache].abs().sum() > 0
    assert torch.count_nonzero(uncond[:, cache]) == 0
    assert torch.equal(cond[:, :17], uncond[:, :17])  # same noisy latent and condition mask
    assert torch.count_nonzero(cond[:, 81]) == 0  # padding-mask channel
    assert not np.array_equal(plain, guided)


def test_batched_cfg_matches_sequential(model, small):
    seq = model.generate(small, opts(guidance=2.0))
    model.cfg_batch = True
    try:
        seen, handle = _record_net_inputs(model)
        batched = model.generate(small, opts(guidance=2.0))
        handle.remove()
    finally:
        model.cfg_batch = False
    assert [x.shape[0] for x in seen] == [2, 2]
    assert np.abs(batched.astype(int) - seq.astype(int)).max() <= 1


class FullChunkConditionModel(Gen3cModel):
    """Upstream's condition latent: the first frame padded with zeros to the whole chunk, all of it encoded."""

    def _condition_latent(self, chunk):
        video = conditioning.first_frame_video(
            chunk.first_frame, chunk.num_frames, self.device, self.vae.dtype
        )
        return self.vae.encode(video)


def test_one_frame_condition_encode_equals_the_whole_chunks_first_latent_frame(model, small):
    """The causal tokenizer's latent frame 0 sees pixel frame 0 only: encoding that one frame gives exactly
    the whole padded chunk's latent frame 0 (float64), and the frames after it stay zero."""
    vae = model.vae
    vae.autoencoder.double()
    try:
        full = vae.encode(conditioning.first_frame_video(small.first_frame, T, "cpu", torch.float64))
        cond = conditioning.encode_condition_latent(
            vae.encode_prefix, small.first_frame, 1, 8, full.shape[2], "cpu", torch.float64
        )
        two = conditioning.encode_condition_latent(
            vae.encode_prefix, small.first_frame, 2, 8, full.shape[2], "cpu", torch.float64
        )
    finally:
        vae.autoencoder.to(torch.float32)
    assert cond.shape == full.shape == (1, 16, 2, 4, 6) and cond.dtype == torch.float32
    assert torch.equal(cond[:, :, 0], full[:, :, 0].float())
    assert torch.count_nonzero(cond[:, :, 1:]) == 0
    assert torch.equal(two, full.float())  # 2 condition latents: all 9 frames, the first real, the rest zero


def test_generate_matches_upstreams_whole_chunk_condition_encode(weights_dirs, small):
    """The sampler uses only the condition frames of the condition latent, so the one-frame encode
    reproduces upstream's whole-chunk encode: the same video (the float32 frame 0 may differ in rounding)."""
    ours = Gen3cModel.from_pretrained(weights_dirs["plain"], device="cpu")
    upstream = FullChunkConditionModel.from_pretrained(weights_dirs["plain"], device="cpu")
    a = ours.generate(small, opts(guidance=1.0))
    b = upstream.generate(small, opts(guidance=1.0))
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_vae_prefix_encode_checks_the_frame_count(model):
    with pytest.raises(ValueError, match="1 \\+ k \\* 8"):
        model.vae.encode_prefix(torch.zeros(1, 3, 2, 32, 48))
    with pytest.raises(ValueError, match="at most 9 frames"):
        model.vae.encode_prefix(torch.zeros(1, 3, 17, 32, 48))


def test_condition_mask_channel_marks_first_latent_frame(model, small):
    seen, handle = _record_net_inputs(model)
    try:
        model.generate(small, opts(num_steps=1))
    finally:
        handle.remove()
    mask = seen[0][0, 16]  # (T', h, w)
    assert torch.all(mask[0] == 1) and torch.all(mask[1:] == 0)


def test_zero_prompt_encoder_ignores_prompts(model, small):
    a = model.generate(small, opts(prompt="a red cube", negative_prompt="sky", guidance=2.0))
    b = model.generate(small, opts(prompt="grass", guidance=2.0))
    assert np.array_equal(a, b)


def test_t5_prompt_changes_the_video(weights_dirs, small):
    t5_model = Gen3cModel.from_pretrained(weights_dirs["t5"], device="cpu")
    emb = t5_model.prompt_encoder.encode(["a red cube", ""])
    assert emb.shape == (2, 8, 16)
    assert emb[0, :4].abs().sum(-1).min() > 0 and torch.count_nonzero(emb[0, 4:]) == 0  # 3 words + </s>
    assert emb[1, :1].abs().sum() > 0 and torch.count_nonzero(emb[1, 1:]) == 0
    a = t5_model.generate(small, opts(prompt="a red cube"))
    b = t5_model.generate(small, opts(prompt="grass sky"))
    c = t5_model.generate(small, opts(prompt="a red cube", negative_prompt="sky", guidance=3.0))
    assert not np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_one_buffer_slot_is_accepted(model, small):
    one = validate_chunk(small.first_frame, small.renders[:, :1].copy(), small.masks[:, :1].copy())
    assert model.generate(one, opts(num_steps=1)).shape == (T, 32, 48, 3)


def test_bad_inputs_are_rejected(model, chunk):
    assert model.chunk_frames == T
    model.check_frames(T)
    with pytest.raises(ValueError, match=r"frame count T must be 9 \(one GEN3C chunk\), got 121"):
        model.check_frames(121)
    big = np.zeros((T, 1, 272, 96, 3), np.uint8)
    with pytest.raises(ValueError, match="exceeds GEN3C's maximum of 256x256"):
        model.generate(validate_chunk(np.zeros((272, 96, 3), np.uint8), big, big[..., 0]), opts())
    with pytest.raises(ValueError, match="num_steps"):
        model.generate(chunk, opts(num_steps=0))


def test_out_of_memory_becomes_gpu_memory_error(model, small):
    def fail(*_a, **_k):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    handle = model.net.transformer.register_forward_pre_hook(fail)
    try:
        with pytest.raises(
            GpuMemoryError, match=r"during denoising: offload: vae \(0.0 GiB\) \(offload option names"
        ):
            model.generate(small, opts())
    finally:
        handle.remove()
    assert model.generate(small, opts(num_steps=1)).shape == (T, 32, 48, 3)  # still serves


def test_attention_backend_is_checked(weights_dirs, tmp_path):
    with pytest.raises(ValueError, match="attention_backend must be one of"):
        Gen3cModel.from_pretrained(weights_dirs["plain"], device="cpu", attention_backend="turbo")
    # Checked before the (for the 7B: slow) weight loading: a directory without weights fails on the name.
    (tmp_path / "gen3c.json").write_text((weights_dirs["plain"] / "gen3c.json").read_text())
    with pytest.raises(ValueError, match="attention_backend must be one of"):
        Gen3cModel.from_pretrained(tmp_path, device="cpu", attention_backend="turbo")
    # FlashAttention-4 named where it cannot run (no CUDA here) fails before loading, naming why.
    with pytest.raises(ValueError, match="attention_backend fa4 needs a CUDA device"):
        Gen3cModel.from_pretrained(tmp_path, device="cpu", attention_backend="fa4")
    # "auto" on a CPU is PyTorch's SDPA choice, with the fast processor.
    model = Gen3cModel.from_pretrained(weights_dirs["plain"], device="cpu")
    assert model.net.attention_backend is None and model.net.attention_auto
    proc = model.net.transformer.transformer_blocks[0].attn1.processor
    assert type(proc).__name__ == "FastCosmosAttnProcessor" and proc.kernel == "sdpa"


def test_missing_weights_dir(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Gen3cModel.from_pretrained(tmp_path / "nope", device="cpu")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="gen3c.json"):
        Gen3cModel.from_pretrained(tmp_path / "empty", device="cpu")
