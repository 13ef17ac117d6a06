"""MoGe fast paths (objvid.depth.fast) against their references: nn.GroupNorm and the uncached DINOv2
position embedding, module by module and through whole small MoGe v1/v2 networks."""

import copy
import warnings

import pytest
import torch
from depth_checkpoints import one_torch_thread
from torch import nn

from objvid.depth.fast import FastGroupNorm, apply_fast_paths, cache_pos_embedding, use_fast_group_norm
from objvid.depth.model import MoGeDepthModel
from objvid.testing.depth_model import SMALL_V1_CONFIG, SMALL_V2_CONFIG, build_random


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    yield from one_torch_thread()


def _pair(groups: int, channels: int, affine: bool, seed: int):
    torch.manual_seed(seed)
    ref = nn.GroupNorm(groups, channels, eps=1e-5, affine=affine)
    if affine:
        with torch.no_grad():
            ref.weight.normal_()
            ref.bias.normal_()
    fast = copy.deepcopy(ref)
    assert use_fast_group_norm(fast) == 1 and type(fast) is FastGroupNorm
    return ref, fast


@pytest.mark.parametrize(
    "groups, channels, shape, affine",
    [(1, 64, (1, 64, 23, 41), True), (2, 64, (3, 64, 9, 17), True), (4, 32, (2, 32, 5, 7, 3), False)],
)
def test_fast_group_norm_matches_nn_group_norm(groups, channels, shape, affine):
    ref, fast = _pair(groups, channels, affine, seed=groups)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(7)) * 3 + 5  # offset: catches cancellation
    expected = ref(x.double().float())
    out = fast(x)
    assert out.dtype == expected.dtype == torch.float32
    err = torch.linalg.vector_norm(out - expected) / torch.linalg.vector_norm(expected)
    assert err < 1e-6
    # float64 reference: the fast path is as accurate as the native one
    ref64 = copy.deepcopy(ref).double()
    exact = ref64(x.double())
    assert (out.double() - exact).abs().max() < 1e-4


def test_fast_group_norm_keeps_the_input_dtype_without_autocast():
    _, fast = _pair(1, 16, True, seed=0)
    x = torch.randn(2, 16, 8, 8, dtype=torch.bfloat16)
    assert fast(x).dtype == torch.bfloat16


def test_fast_group_norm_state_dict_is_unchanged():
    ref, fast = _pair(2, 8, True, seed=1)
    assert ref.state_dict().keys() == fast.state_dict().keys()
    for k, v in ref.state_dict().items():
        assert torch.equal(v, fast.state_dict()[k])


class _Backbone(nn.Module):
    """Stands in for DINOv2: counts how often the embedding is interpolated."""

    def __init__(self):
        super().__init__()
        self.pos_embed = nn.Parameter(torch.randn(1, 5, 4))
        self.calls = 0

    def interpolate_pos_encoding(self, x, h, w):
        self.calls += 1
        return self.pos_embed * (h + w)


def test_pos_embedding_cache_hits_only_in_inference_mode_and_stays_bounded():
    bb = _Backbone()
    cache_pos_embedding(bb, size=2)
    x = torch.zeros(1, 5, 4)
    bb.interpolate_pos_encoding(x, 1, 2)
    bb.interpolate_pos_encoding(x, 1, 2)
    assert bb.calls == 2  # outside inference mode: no cache
    with torch.inference_mode():
        first = bb.interpolate_pos_encoding(x, 1, 2)
        again = bb.interpolate_pos_encoding(x, 1, 2)
        assert again is first and bb.calls == 3
        bb.interpolate_pos_encoding(x, 3, 4)
        bb.interpolate_pos_encoding(x, 5, 6)  # evicts (1, 2), the least recently used
        bb.interpolate_pos_encoding(x, 1, 2)
        assert bb.calls == 6
        torch.testing.assert_close(first, bb.pos_embed.detach() * 3)


@pytest.mark.parametrize("version, config", [("v1", SMALL_V1_CONFIG), ("v2", SMALL_V2_CONFIG)])
def test_fast_paths_through_a_whole_moge_network(version, config):
    net = build_random(config, version, seed=2).eval().requires_grad_(False)
    fast_net = copy.deepcopy(net)
    changed = apply_fast_paths(fast_net)
    assert changed["group_norms"] > 0 and changed["pos_embed_caches"] == 1
    cpu = torch.device("cpu")
    ref_model = MoGeDepthModel(net, name="ref", version=version, device=cpu, use_fp16=False, num_tokens=64)
    fast_model = MoGeDepthModel(
        fast_net, name="fast", version=version, device=cpu, use_fp16=False, num_tokens=64
    )
    x = torch.rand(2, 3, 72, 128, generator=torch.Generator().manual_seed(3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        ref = ref_model(x)
        out = fast_model(x)
        again = fast_model(x)  # second call: cached position embedding
    assert torch.equal(out.depth, again.depth)
    assert (ref.mask != out.mask).float().mean() < 1e-3
    both = ref.mask & out.mask
    torch.testing.assert_close(out.depth[both], ref.depth[both], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out.intrinsics, ref.intrinsics, rtol=1e-4, atol=1e-5)
