"""The feed-forward's GELU in its GEMM's epilogue (objvid.diffusion.gen3c.gelu_epilogue) on CPU: the op's
arithmetic against the float64 tanh-GELU written out, the module swap in a tiny GEN3C net, and the op inside
``torch.compile``. The CUDA kernel (cuBLASLt epilogue) is compared in tests/test_cuda_paths.py."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from test_diffusion_gen3c_parts import net_inputs, tiny_net  # noqa: F401  (fixture)

from objvid.diffusion.gen3c import gelu_epilogue


def test_op_is_the_tanh_gelu_of_the_linear():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 33, 48, generator=g)
    w = torch.randn(80, 48, generator=g) / 6
    b = torch.randn(80, generator=g) / 4
    out = gelu_epilogue.linear_gelu_tanh(x, w, b)
    ref = gelu_epilogue.reference_linear_gelu_tanh(x, w, b)
    assert out.shape == (2, 33, 80) and out.dtype == torch.float32
    torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-5)
    erf = F.gelu(F.linear(x.double(), w.double(), b.double()))
    assert (ref - erf).abs().max() > 1e-4  # the reference is the tanh form, not upstream's erf


def test_fused_feed_forwards_keep_the_weights_and_stay_near_the_erf_net(tiny_net):  # noqa: F811
    args = net_inputs(batch=2)
    fused = copy.deepcopy(tiny_net)
    before = {k: v.clone() for k, v in fused.state_dict().items()}
    count = gelu_epilogue.fuse_ffn_gelu_(fused.transformer.transformer_blocks)
    assert count == len(tiny_net.transformer.transformer_blocks)
    assert gelu_epilogue.fuse_ffn_gelu_(fused.transformer.transformer_blocks) == 0  # already fused
    after = fused.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)
    with torch.no_grad():
        ref = tiny_net(*args, fps=24.0)
        out = fused(*args, fps=24.0)
        # tanh GELU written into the reference net's modules gives the same output as the fused op
        for block in tiny_net.transformer.transformer_blocks:
            block.ff.net[0].approximate = "tanh"
        try:
            tanh_ref = tiny_net(*args, fps=24.0)
        finally:
            for block in tiny_net.transformer.transformer_blocks:
                block.ff.net[0].approximate = "none"
    torch.testing.assert_close(out, tanh_ref, rtol=1e-5, atol=1e-5)
    rel = float((out - ref).norm() / ref.norm())
    assert 0 < rel < 1e-3  # it is a different GELU, and only just


def test_op_compiles_as_one_opaque_call():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 16, 32, generator=g)
    w = torch.randn(64, 32, generator=g) / 5
    b = torch.zeros(64)
    compiled = torch.compile(lambda t: gelu_epilogue.linear_gelu_tanh(t, w, b) * 2, dynamic=False)
    torch.testing.assert_close(compiled(x), gelu_epilogue.linear_gelu_tanh(x, w, b) * 2)
