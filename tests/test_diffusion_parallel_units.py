"""Multi-GPU GEN3C settings without processes: layouts, the cp plan, Triton parameters, CLI flags and the
shipped configs/gpus<N>.pbtxt (which must equal config.pbtxt but for the instance group and world_size)."""

from __future__ import annotations

import pathlib
import re

import pytest

from objvid.diffusion import cli
from objvid.diffusion.parallel.plan import (
    ParallelLayout,
    choose_layout,
    cp_attention_backend,
    gen3c_cp_plan,
    rank_attention_backend,
)
from objvid.diffusion.registry import ModelSettings, settings_from_parameters
from objvid.runtime import config

GEN3C_DIR = (
    pathlib.Path(__file__).resolve().parents[1] / "services" / "diffusion" / "model_repository" / "gen3c"
)


@pytest.mark.parametrize(
    ("world", "cfg", "mode", "expected"),
    [
        (1, "auto", "auto", (1, 1, 1)),
        (2, "auto", "auto", (2, 1, 1)),
        (4, "auto", "auto", (2, 1, 2)),
        (8, "auto", "auto", (2, 1, 4)),
        (8, "1", "auto", (1, 1, 8)),
        (3, "auto", "auto", (1, 3, 1)),  # odd: no CFG groups; gcd(3, 32) = 1 -> ring 3
        (8, "2", "ring", (2, 4, 1)),
        (6, "1", "auto", (1, 3, 2)),  # Ulysses 2 (divides 32 heads) x ring 3
    ],
)
def test_choose_layout_for_the_7b_heads(world, cfg, mode, expected):
    layout = choose_layout(world, 32, cfg, mode)
    assert (layout.cfg, layout.ring, layout.ulysses) == expected
    assert layout.cp * layout.cfg == world


def test_layout_errors_name_the_setting():
    with pytest.raises(ValueError, match="cfg_parallel 2 needs an even world_size, got 3"):
        choose_layout(3, 32, "2")
    with pytest.raises(ValueError, match="cfg_parallel must be auto, 1 or 2, got '3'"):
        choose_layout(4, 32, "3")
    with pytest.raises(ValueError, match=r"context-parallel degree \(8\) to divide the 12 attention heads"):
        choose_layout(8, 12, "1", "ulysses")
    with pytest.raises(ValueError, match="cp_mode must be one of"):
        choose_layout(2, 32, "auto", "tree")
    with pytest.raises(ValueError, match="must equal world_size"):
        ParallelLayout(4, cfg=2, ring=1, ulysses=1)


def test_ring_needs_a_kernel_with_log_sum_exp():
    ulysses, ring = ParallelLayout(4, 1, 1, 4), ParallelLayout(4, 1, 2, 2)
    assert cp_attention_backend("cudnn", ulysses) == "native" == cp_attention_backend(None, ulysses)
    assert cp_attention_backend("cudnn", ring) == "_native_cudnn"
    assert cp_attention_backend("flash", ring) == "_native_flash"
    with pytest.raises(ValueError, match="ring attention .* needs attention_backend cudnn or flash"):
        cp_attention_backend("efficient", ring)
    with pytest.raises(ValueError, match="fa4 has no context-parallel path"):
        cp_attention_backend("fa4", ulysses)
    # an automatic fa4 (auto on an H100/H200 with flash-attn-4) falls back to cuDNN where tokens are split;
    # a named one is kept (and refused above); without context parallelism every rank keeps fa4
    assert (
        rank_attention_backend("fa4", True, ulysses) == "cudnn" == rank_attention_backend("fa4", True, ring)
    )
    assert rank_attention_backend("fa4", False, ulysses) == "fa4"
    assert rank_attention_backend("fa4", True, ParallelLayout(2, cfg=2)) == "fa4"
    assert rank_attention_backend("cudnn", True, ring) == "cudnn"


def test_cp_plan_splits_tokens_consistently():
    """RoPE, the learnable embedding and the block input are split along their token axis; the output
    projection is gathered along it."""
    plan = gen3c_cp_plan()
    assert set(plan) == {"rope", "learnable_pos_embed", "transformer_blocks.0", "proj_out"}
    assert [(p.split_dim, p.split_output) for p in plan["rope"].values()] == [(0, True), (0, True)]
    assert (plan["learnable_pos_embed"][0].split_dim, plan["learnable_pos_embed"][0].split_output) == (
        1,
        True,
    )
    block = plan["transformer_blocks.0"]["hidden_states"]
    assert (block.split_dim, block.split_output) == (1, False)
    assert plan["proj_out"].gather_dim == 1


def test_triton_parameters_and_settings():
    params = {"weights_dir": "/w", "world_size": "4", "cfg_parallel": "1", "cp_mode": "Ring"}
    settings = settings_from_parameters(params, "cuda:0")
    assert settings == ModelSettings(
        weights_dir="/w", device="cuda:0", world_size=4, cfg_parallel="1", cp_mode="ring"
    )
    with pytest.raises(ValueError, match="world_size must be an integer, got 'four'"):
        settings_from_parameters({"world_size": "four"}, "cpu")
    with pytest.raises(ValueError, match=r"world_size must be in \[1, 64\], got 0"):
        settings_from_parameters({"world_size": "0"}, "cpu")
    with pytest.raises(ValueError, match="cfg_parallel must be auto, 1 or 2"):
        ModelSettings(cfg_parallel="4")


def test_serve_flags_and_env(monkeypatch, capsys):
    args = config.parse(cli.cli, ["serve"])
    assert (args["gpus"], args["cfg_parallel"], args["cp_mode"]) == (1, "auto", "auto")
    monkeypatch.setenv("OBJVID_DIFFUSION_GPUS", "8")
    monkeypatch.setenv("OBJVID_DIFFUSION_CP_MODE", "ring")
    args = config.parse(cli.cli, ["serve", "--cfg-parallel", "2"])
    assert (args["gpus"], args["cfg_parallel"], args["cp_mode"]) == (8, "2", "ring")
    monkeypatch.setenv("OBJVID_DIFFUSION_CFG_PARALLEL", "3")
    assert cli.main(["serve"]) == 2
    assert "OBJVID_DIFFUSION_CFG_PARALLEL" in capsys.readouterr().err


def test_serve_with_too_many_gpus_exits_2(tmp_path, capsys):
    (tmp_path / "transformer").mkdir()
    (tmp_path / "transformer" / "config.json").write_text('{"num_attention_heads": 32}')
    argv = ["serve", "--models", "gen3c", "--gen3c-weights", str(tmp_path), "--device", "cuda", "--gpus", "4"]
    assert cli.main(argv) == 2
    assert "world_size 4 from cuda needs GPUs 0..3, but 0 are visible" in capsys.readouterr().err


def _without(text: str, *patterns: str) -> str:
    text = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
    for pattern in patterns:
        text = re.sub(pattern, "", text)
    return text


@pytest.mark.parametrize("gpus", [2, 4, 8])
def test_gpus_configs_differ_from_config_pbtxt_only_in_instances_and_world_size(gpus):
    base = (GEN3C_DIR / "config.pbtxt").read_text()
    custom = (GEN3C_DIR / "configs" / f"gpus{gpus}.pbtxt").read_text()
    world = r'parameters: \{ key: "world_size" value: \{ string_value: "%s" \} \}'
    assert re.search(world % gpus, custom) and re.search(world % 1, base)
    assert "instance_group [ { count: 1 kind: KIND_GPU gpus: [ 0 ] } ]" in custom
    instances = r"instance_group \[.*\]"
    assert _without(base, world % 1, instances) == _without(custom, world % gpus, instances)
