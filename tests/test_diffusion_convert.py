"""objvid-diffusion convert: synthetic upstream-format GEN3C + tokenizer files -> diffusers-format directory."""

from __future__ import annotations

import json

import pytest
import torch

from objvid.diffusion import convert as conv
from objvid.diffusion.gen3c import weights
from objvid.diffusion.gen3c.config import Gen3cConfig
from objvid.testing import gen3c as synthetic

TOK_LAYOUT = synthetic.TokenizerLayout(latent_frames_stored=2)
DIT_LAYOUT = synthetic.DitLayout()


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """Upstream-format inputs: model.pt ({"model": state}) and a tokenizer dir (encoder.jit + decoder.jit)."""
    root = tmp_path_factory.mktemp("gen3c_src")
    dit = synthetic.upstream_dit_state(DIT_LAYOUT, seed=3)
    tok = synthetic.upstream_tokenizer_state(TOK_LAYOUT, seed=4)
    model_pt = synthetic.write_gen3c_checkpoint(root / "model.pt", dit)
    tok_dir = synthetic.write_tokenizer_dir(root / "tok", tok, TOK_LAYOUT)
    return {"root": root, "dit": dit, "tok": tok, "model_pt": model_pt, "tok_dir": tok_dir}


def _convert(sources, out, **kw):
    kw.setdefault("chunk_frames", 9)
    kw.setdefault("text_max_length", 8)
    return conv.convert(sources["model_pt"], sources["tok_dir"], out, **kw)


def _no_leftovers(parent):
    return [p.name for p in parent.iterdir() if ".partial-" in p.name or ".old-" in p.name]


# Upstream name -> diffusers name, one per rule family (written from the two codebases' module names).
TRANSFORMER_PAIRS = {
    "net.x_embedder.proj.1.weight": "patch_embed.proj.weight",
    "net.t_embedder.1.linear_1.weight": "time_embed.t_embedder.linear_1.weight",
    "net.t_embedder.1.linear_2.weight": "time_embed.t_embedder.linear_2.weight",
    "net.affline_norm.weight": "time_embed.norm.weight",
    "net.extra_pos_embedder.pos_emb_t": "learnable_pos_embed.pos_emb_t",
    "net.extra_pos_embedder.pos_emb_h": "learnable_pos_embed.pos_emb_h",
    "net.extra_pos_embedder.pos_emb_w": "learnable_pos_embed.pos_emb_w",
    "net.blocks.block1.blocks.0.adaLN_modulation.1.weight": "transformer_blocks.1.norm1.linear_1.weight",
    "net.blocks.block1.blocks.1.adaLN_modulation.2.weight": "transformer_blocks.1.norm2.linear_2.weight",
    "net.blocks.block0.blocks.2.adaLN_modulation.1.weight": "transformer_blocks.0.norm3.linear_1.weight",
    "net.blocks.block1.blocks.0.block.attn.to_q.0.weight": "transformer_blocks.1.attn1.to_q.weight",
    "net.blocks.block1.blocks.0.block.attn.to_q.1.weight": "transformer_blocks.1.attn1.norm_q.weight",
    "net.blocks.block1.blocks.0.block.attn.to_k.1.weight": "transformer_blocks.1.attn1.norm_k.weight",
    "net.blocks.block0.blocks.0.block.attn.to_v.0.weight": "transformer_blocks.0.attn1.to_v.weight",
    "net.blocks.block0.blocks.0.block.attn.to_out.0.weight": "transformer_blocks.0.attn1.to_out.0.weight",
    "net.blocks.block0.blocks.1.block.attn.to_k.0.weight": "transformer_blocks.0.attn2.to_k.weight",
    "net.blocks.block1.blocks.1.block.attn.to_out.0.weight": "transformer_blocks.1.attn2.to_out.0.weight",
    "net.blocks.block0.blocks.2.block.layer1.weight": "transformer_blocks.0.ff.net.0.proj.weight",
    "net.blocks.block1.blocks.2.block.layer2.weight": "transformer_blocks.1.ff.net.2.weight",
    "net.final_layer.adaLN_modulation.2.weight": "norm_out.linear_2.weight",
    "net.final_layer.linear.weight": "proj_out.weight",
}
VAE_PAIRS = {
    "encoder.conv_in.0.conv3d.weight": "encoder.conv_in.conv_s.weight",
    "encoder.conv_in.1.conv3d.bias": "encoder.conv_in.conv_t.bias",
    "encoder.down.0.block.1.conv2.1.conv3d.weight": "encoder.down_blocks.0.resnets.1.conv2.conv_t.weight",
    "encoder.down.1.block.0.nin_shortcut.conv3d.weight": "encoder.down_blocks.1.resnets.0.conv_shortcut.weight",
    "encoder.down.0.downsample.conv1.conv3d.weight": "encoder.down_blocks.0.downsamplers.0.conv1.weight",
    "encoder.mid.attn_1.0.q.conv3d.weight": "encoder.mid_block.attentions.0.to_q.weight",
    "encoder.mid.attn_1.1.proj_out.conv3d.bias": "encoder.mid_block.temp_attentions.0.to_out.0.bias",
    "encoder.mid.block_2.norm1.norm.weight": "encoder.mid_block.resnets.1.norm1.norm.weight",
    "encoder.conv_out.1.conv3d.weight": "encoder.conv_out.conv_t.weight",
    "quant_conv.conv3d.weight": "quant_conv.weight",
    "post_quant_conv.conv3d.bias": "post_quant_conv.bias",
    "decoder.up.0.block.2.conv1.0.conv3d.weight": "decoder.up_blocks.2.resnets.2.conv1.conv_s.weight",
    "decoder.up.2.block.0.norm2.norm.bias": "decoder.up_blocks.0.resnets.0.norm2.norm.bias",
    "decoder.up.1.upsample.conv1.conv3d.weight": "decoder.up_blocks.1.upsamplers.0.conv1.weight",
    "decoder.up.1.upsample.conv2.conv3d.weight": "decoder.up_blocks.1.upsamplers.0.conv2.weight",
    "decoder.mid.block_1.conv1.0.conv3d.weight": "decoder.mid_block.resnets.0.conv1.conv_s.weight",
    "decoder.norm_out.norm.weight": "decoder.norm_out.norm.weight",
    "decoder.conv_out.0.conv3d.weight": "decoder.conv_out.conv_s.weight",
}


def _assert_bijection_by_value(src: dict, dst: dict, skipped: set):
    """Every kept source tensor appears exactly once in dst with equal values (all tensors are distinct)."""
    remaining = dict(dst)
    for key, value in src.items():
        if key in skipped:
            continue
        hits = [k for k, v in remaining.items() if v.shape == value.shape and torch.equal(v, value)]
        assert len(hits) == 1, f"{key}: {len(hits)} matches"
        remaining.pop(hits[0])
    assert not remaining, f"converted tensors without a source: {sorted(remaining)}"


def test_round_trip_copies_every_weight_exactly(sources, tmp_path):
    out = tmp_path / "w"
    report = _convert(sources, out)
    assert report.transformer_tensors == 50 and report.vae_tensors == 310 and not report.text_encoder
    t_state = weights.read_state_dict(out / "transformer")
    v_state = weights.read_state_dict(out / "vae")
    for up, new in TRANSFORMER_PAIRS.items():
        assert torch.equal(t_state[new], sources["dit"][up]), up
    for up, new in VAE_PAIRS.items():
        assert torch.equal(v_state[new], sources["tok"][up]), up
    skipped = set(report.skipped)
    assert {"logvar.0.freqs", "logvar.0.phases", "logvar.1.weight", "net.pos_embedder.seq"} <= skipped
    assert "encoder.patcher3d.wavelets" in skipped and "decoder.unpatcher3d.patch_size_buffer" in skipped
    _assert_bijection_by_value(sources["dit"], t_state, skipped)
    _assert_bijection_by_value(sources["tok"], v_state, skipped)

    t_cfg = json.loads((out / "transformer" / "config.json").read_text())
    assert t_cfg["_class_name"] == "CosmosTransformer3DModel"
    assert t_cfg["in_channels"] == 81 and t_cfg["concat_padding_mask"] is True
    assert (t_cfg["num_layers"], t_cfg["num_attention_heads"], t_cfg["attention_head_dim"]) == (2, 2, 16)
    assert t_cfg["rope_scale"] == [2.0, 1.0, 1.0] and t_cfg["extra_pos_embed_type"] == "learnable"
    v_cfg = json.loads((out / "vae" / "config.json").read_text())
    mean, std = torch.load(sources["tok_dir"] / "mean_std.pt")
    assert v_cfg["latents_mean"] == mean.tolist() and v_cfg["latents_std"] == std.tolist()
    assert v_cfg["encoder_block_out_channels"] == [8, 16, 32, 32]
    assert v_cfg["decode_block_out_channels"] == [16, 32, 32, 32]
    cfg = Gen3cConfig.load(out)
    assert (cfg.chunk_frames, cfg.frame_buffer_max, cfg.text_embed_dim, cfg.has_text_encoder) == (
        9,
        2,
        16,
        False,
    )
    assert _no_leftovers(tmp_path) == []


def test_loaded_model_holds_the_converted_weights(sources, tmp_path):
    from objvid.diffusion.gen3c.model import Gen3cModel

    out = tmp_path / "w"
    _convert(sources, out)
    model = Gen3cModel.from_pretrained(out, device="cpu")
    params = dict(model.net.transformer.named_parameters())
    up = sources["dit"]
    assert torch.equal(
        params["transformer_blocks.1.attn2.to_k.weight"],
        up["net.blocks.block1.blocks.1.block.attn.to_k.0.weight"],
    )
    assert torch.equal(params["patch_embed.proj.weight"], up["net.x_embedder.proj.1.weight"])
    vae = dict(model.vae.autoencoder.named_parameters())
    assert torch.equal(
        vae["decoder.conv_out.conv_t.weight"], sources["tok"]["decoder.conv_out.1.conv3d.weight"]
    )
    assert model.net.transformer.transformer_blocks[0].attn1.norm_q.eps == 1e-6


def test_bare_state_dict_autoencoder_jit_and_bf16(sources, tmp_path):
    bare = synthetic.write_gen3c_checkpoint(tmp_path / "bare.pt", sources["dit"], wrap=None)
    tok_dir = synthetic.write_tokenizer_dir(tmp_path / "tok_ae", sources["tok"], TOK_LAYOUT, autoencoder=True)
    out = tmp_path / "w"
    conv.convert(bare, tok_dir, out, dtype="bf16", chunk_frames=9, text_max_length=8)
    t_state = weights.read_state_dict(out / "transformer")
    assert all(v.dtype == torch.bfloat16 for v in t_state.values())
    assert torch.equal(t_state["proj_out.weight"], sources["dit"]["net.final_layer.linear.weight"].bfloat16())
    v_state = weights.read_state_dict(out / "vae")
    assert torch.equal(v_state["quant_conv.bias"], sources["tok"]["quant_conv.conv3d.bias"])


def test_unmapped_and_missing_keys_are_listed_and_nothing_is_written(sources, tmp_path):
    dit = dict(sources["dit"])
    dit["net.blocks.block0.blocks.0.block.attn.to_q.0.bias"] = torch.zeros(32)  # unknown to GEN3C
    dit["net.mystery.weight"] = torch.zeros(3)
    del dit["net.blocks.block1.blocks.2.block.layer2.weight"]
    bad = synthetic.write_gen3c_checkpoint(tmp_path / "src" / "model.pt", dit)
    out = tmp_path / "out" / "w"
    out.parent.mkdir()  # present, so a partial or half-moved output would be seen
    with pytest.raises(conv.ConversionError) as err:
        conv.convert(bad, sources["tok_dir"], out, chunk_frames=9, text_max_length=8)
    msg = str(err.value)
    assert "net.blocks.block0.blocks.0.block.attn.to_q.0.bias" in msg and "net.mystery.weight" in msg
    assert "unmapped" in msg and "missing" in msg and "transformer_blocks.1.ff.net.2.weight" in msg
    assert not out.exists()
    assert _no_leftovers(out.parent) == [] and list(out.parent.iterdir()) == []


def test_wrong_shape_and_tokenizer_problems_are_reported_together(sources, tmp_path):
    dit = dict(sources["dit"])
    dit["net.blocks.block0.blocks.1.block.attn.to_v.0.weight"] = torch.zeros(32, 7)
    bad = synthetic.write_gen3c_checkpoint(tmp_path / "model.pt", dit)
    tok = dict(sources["tok"])
    tok["encoder.down.0.block.0.extra.conv3d.weight"] = torch.zeros(1)
    tok_dir = synthetic.write_tokenizer_dir(tmp_path / "tok", tok, TOK_LAYOUT)
    with pytest.raises(conv.ConversionError) as err:
        conv.convert(bad, tok_dir, tmp_path / "w", chunk_frames=9, text_max_length=8)
    msg = str(err.value)
    assert "transformer_blocks.0.attn2.to_v.weight: got (32, 7), want (32, 16)" in msg
    assert "encoder.down.0.block.0.extra.conv3d.weight" in msg and "nothing written" in msg
    assert not (tmp_path / "w").exists()


def test_tokenizer_dir_needs_jit_and_mean_std(sources, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(conv.ConversionError, match="autoencoder.jit, or encoder.jit and decoder.jit"):
        conv.convert(sources["model_pt"], empty, tmp_path / "w")
    no_stats = synthetic.write_tokenizer_dir(tmp_path / "tok", sources["tok"], TOK_LAYOUT)
    (no_stats / "mean_std.pt").unlink()
    with pytest.raises(conv.ConversionError, match="mean_std.pt"):
        conv.convert(sources["model_pt"], no_stats, tmp_path / "w")
    # The 9-frame chunk needs 2 latent frames of statistics; 121 frames need 16.
    with pytest.raises(conv.ConversionError, match="covers 2 latent frames"):
        conv.convert(sources["model_pt"], sources["tok_dir"], tmp_path / "w", chunk_frames=121)
    assert not (tmp_path / "w").exists()


def test_existing_output_needs_overwrite(sources, tmp_path):
    out = tmp_path / "w"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(conv.ConversionError, match="not empty"):
        _convert(sources, out)
    _convert(sources, out, overwrite=True)
    assert not (out / "keep.txt").exists() and (out / "gen3c.json").is_file()
    assert _no_leftovers(tmp_path) == []


def test_cli_main(sources, tmp_path, capsys):
    out = tmp_path / "w"
    argv = ["--gen3c", str(sources["model_pt"]), "--tokenizer", str(sources["tok_dir"]), "--out", str(out)]
    assert conv.main(argv + ["--chunk-frames", "9", "--text-max-length", "8"]) == 0
    assert "transformer: 50 tensors" in capsys.readouterr().out
    assert (
        conv.main(
            [
                "--gen3c",
                str(tmp_path / "nope.pt"),
                "--tokenizer",
                str(sources["tok_dir"]),
                "--out",
                str(tmp_path / "x"),
            ]
        )
        == 2
    )
    assert "nope.pt: no such file" in capsys.readouterr().err
    assert conv.main(["--gen3c", str(sources["model_pt"])]) == 2
    assert "missing required flags: --tokenizer --out" in capsys.readouterr().err
