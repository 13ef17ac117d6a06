"""CUDA fast paths against their references, on a GPU only (CI machines have none; on a CUDA machine run
`python -m pytest tests/test_cuda_paths.py`, results in docs/performance.md).

- the renderer's Triton-lang kernels vs the float64 PyTorch reference on random scenes and cameras;
- the cache service on `--device cuda` returns the library's render (bit for bit with the z-buffer; GEN3C's
  float atomic adds vary in the last bit between runs);
- GEN3C with the CUDA defaults (bf16, FA4 or cuDNN attention, compiled blocks) runs a tiny converted model
  deterministically.
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU (none visible to torch here)"
)

from test_render_reference import ALL, H, W, assert_matches_reference, random_setup  # noqa: E402

from objvid.cache import Scene  # noqa: E402


def _on_cuda(scene: Scene) -> Scene:
    return Scene.from_state_dict(scene.state_dict(), device="cuda")


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(
    "mode,splat",
    [
        ("scene", "gen3c"),
        ("fused", "gen3c"),
        ("fused", "zbuffer"),
        ("full", "zbuffer"),
        ("objects", "zbuffer"),
    ],
)
def test_triton_kernels_match_reference(seed, mode, splat):
    cpu_scene, cams, K = random_setup(seed, two_slots=seed == 1)
    scene = _on_cuda(cpu_scene)
    kw = dict(mode=mode, splat=splat, outputs=ALL, footprint=2, object_radius_px=0.75)
    fast = scene.render(cams, K, H, W, backend="triton", **kw)
    ref = cpu_scene.render(cams, K, H, W, backend="reference", **kw)
    fast = dataclasses.replace(
        fast,
        **{
            f.name: getattr(fast, f.name).cpu()
            for f in dataclasses.fields(fast)
            if torch.is_tensor(getattr(fast, f.name))
        },
    )
    assert_matches_reference(fast, ref, mode, splat)


@pytest.mark.parametrize("splat", ["gen3c", "zbuffer"])
def test_cache_service_on_cuda_equals_library(splat):
    """The service renders what the library renders. The z-buffer (integer atomic min) is reproducible bit
    for bit; GEN3C's splat sums float weights with atomic adds, whose order varies between two runs on a GPU
    (as upstream's scatter-add does), so its depth may differ in the last float bit and a colour by 1 level."""
    from cache_service_helpers import create_rgbd_scene, decode_frame, intrinsics, rgbd, running, stub_for

    from objvid.runtime import wire
    from objvid.v1 import cache_pb2

    kind = cache_pb2.SPLAT_KIND_ZBUFFER if splat == "zbuffer" else cache_pb2.SPLAT_KIND_GEN3C
    with running(device="cuda") as server:
        channel, stub = stub_for(server)
        info = create_rgbd_scene(stub)
        image, depth, K = rgbd()
        w2c = np.eye(4)
        w2c[0, 3] = 0.05
        h, w = image.shape[:2]
        req = cache_pb2.RenderRequest(
            scene_id=info.scene_id,
            camera=wire.encode_camera(K, w2c, w, h),
            options=cache_pb2.RenderOptions(
                outputs=[cache_pb2.RENDER_OUTPUT_RGB, cache_pb2.RENDER_OUTPUT_DEPTH], splat=kind
            ),
        )
        got = decode_frame(stub.Render(req, timeout=30).frame)
        channel.close()
    scene = Scene.from_rgbd(image, depth, intrinsics(), device="cuda")
    lib = scene.render(w2c[None], K[None], h, w, splat=splat)
    rgb, dep = lib.rgb[0].cpu().numpy(), lib.depth[0].cpu().numpy()
    if splat == "zbuffer":
        np.testing.assert_array_equal(got["rgb"], rgb)
        np.testing.assert_array_equal(got["depth"], dep)
    else:
        d = np.abs(got["rgb"].astype(np.int16) - rgb.astype(np.int16))
        assert d.max() <= 1 and (d > 0).mean() < 1e-3, (d.max(), (d > 0).mean())
        np.testing.assert_array_equal(got["depth"] > 0, dep > 0)
        np.testing.assert_allclose(got["depth"], dep, rtol=1e-6, atol=0)


def _tiny_gen3c_weights(tmp_path):
    """A tiny upstream-format GEN3C checkpoint and tokenizer, converted: the weights directory."""
    from test_diffusion_gen3c import TOK_LAYOUT, T

    from objvid.diffusion.convert import convert
    from objvid.testing import gen3c as synthetic

    model_pt = synthetic.write_gen3c_checkpoint(
        tmp_path / "src" / "model.pt", synthetic.upstream_dit_state(seed=5)
    )
    tok = synthetic.write_tokenizer_dir(
        tmp_path / "src" / "tok", synthetic.upstream_tokenizer_state(TOK_LAYOUT, seed=6), TOK_LAYOUT
    )
    weights = convert(model_pt, tok, tmp_path / "w", chunk_frames=T, text_max_length=8).out_dir
    return weights


def test_gen3c_cuda_defaults_are_deterministic(tmp_path):
    from test_diffusion_gen3c import T, make_chunk

    from objvid.diffusion.base import GenerateOptions
    from objvid.diffusion.gen3c.gelu_epilogue import LinearGeluTanh
    from objvid.diffusion.gen3c.model import Gen3cModel

    weights = _tiny_gen3c_weights(tmp_path)
    # the CUDA defaults: bf16, auto attention, compiled blocks, GELU epilogue
    model = Gen3cModel.from_pretrained(weights, device="cuda")
    blocks = model.net.transformer.transformer_blocks
    assert sum(isinstance(m, LinearGeluTanh) for m in blocks.modules()) == len(blocks)
    chunk = make_chunk(64, 96)
    opts = GenerateOptions(seed=3, num_steps=2, guidance=1.0)
    a = model.generate(chunk, opts)
    b = model.generate(chunk, opts)
    assert a.shape == (T, 64, 96, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert a.std() > 0


def _fa4_or_skip():
    from objvid.diffusion.gen3c import fa4

    reason = fa4.unavailable_reason("cuda", torch.bfloat16)
    if reason is not None:
        pytest.skip(f"FlashAttention-4 {reason}")
    return fa4


@pytest.mark.parametrize("kv_tokens", [1000, 77])  # self-attention, cross-attention onto text tokens
def test_fa4_attention_matches_reference(kv_tokens):
    """The FA4 op against float64 softmax attention, with cuDNN SDPA's error on the same inputs as the bar."""
    import torch.nn.functional as F

    from objvid.diffusion.gen3c.transformer import sdpa_backend

    fa4 = _fa4_or_skip()
    g = torch.Generator(device="cuda").manual_seed(0)
    q, k, v = (
        torch.randn(2, n, 4, 128, generator=g, device="cuda", dtype=torch.bfloat16)
        for n in (1000, kv_tokens, kv_tokens)
    )
    d = [t.double().transpose(1, 2) for t in (q, k, v)]
    want = (torch.softmax(d[0] @ d[1].transpose(-1, -2) / 128**0.5, dim=-1) @ d[2]).transpose(1, 2)
    got = fa4.fa4_attention(q, k, v)
    assert got.shape == q.shape and got.dtype == torch.bfloat16
    with sdpa_backend("cudnn"):
        bar = F.scaled_dot_product_attention(*(t.transpose(1, 2) for t in (q, k, v))).transpose(1, 2)
    err, bar_err = (got.double() - want).abs(), (bar.double() - want).abs()
    assert err.max() <= 2 * bar_err.max() + 1e-3, (err.max(), bar_err.max())
    assert err.mean() <= 1.5 * bar_err.mean() + 1e-5, (err.mean(), bar_err.mean())


def test_gen3c_fa4_compiled_matches_cudnn(tmp_path):
    """A tiny converted GEN3C: FA4 inside compiled blocks gives cuDNN's DiT output to bf16 noise, and the
    same video twice."""
    _fa4_or_skip()
    from test_diffusion_gen3c import make_chunk

    from objvid.diffusion.base import GenerateOptions
    from objvid.diffusion.gen3c.model import Gen3cModel

    weights = _tiny_gen3c_weights(tmp_path)
    fast = Gen3cModel.from_pretrained(weights, device="cuda", attention_backend="fa4")
    ref = Gen3cModel.from_pretrained(weights, device="cuda", attention_backend="cudnn", compile_blocks=False)
    assert fast.net.attention_backend == "fa4"
    assert fast.net.transformer.transformer_blocks[0].attn1.processor.kernel == "fa4"
    g = torch.Generator(device="cuda").manual_seed(1)
    x = torch.randn(1, 16, 3, 8, 12, generator=g, device="cuda", dtype=torch.bfloat16)
    text = torch.randn(1, 8, fast.config.text_embed_dim, generator=g, device="cuda", dtype=torch.bfloat16)
    cond = torch.zeros(1, 1, 3, 8, 12, device="cuda", dtype=torch.bfloat16)
    cache = torch.randn(
        1, fast.net.cache_channels, 3, 8, 12, generator=g, device="cuda", dtype=torch.bfloat16
    )
    step = torch.full((1,), -0.3, device="cuda", dtype=torch.bfloat16)
    with torch.no_grad():
        a = fast.net(x, step, text, cond, cache, fps=24.0).float()
        b = ref.net(x, step, text, cond, cache, fps=24.0).float()
    assert ((a - b).norm() / b.norm()).item() < 2e-2
    chunk = make_chunk(64, 96)
    opts = GenerateOptions(seed=3, num_steps=2, guidance=1.0)
    v1, v2 = fast.generate(chunk, opts), fast.generate(chunk, opts)
    np.testing.assert_array_equal(v1, v2)
    assert v1.std() > 0


def test_fp8_with_fa4_in_compiled_blocks():
    """`--fp8` where auto picks FA4: FP8 linears + FA4 self-attention inside compiled blocks (the calls and order
    of ``Gen3cModel.from_pretrained``) stay close to bf16 with cuDNN, and the FP8 matmuls really run."""
    _fa4_or_skip()
    from objvid.diffusion.gen3c import fp8, transformer
    from objvid.diffusion.gen3c.config import transformer_config_tiny

    if not fp8.fp8_matmul_available(torch.device("cuda")):
        pytest.skip("no FP8 tensor cores")
    cfg = transformer_config_tiny()  # made 256 wide, so its linears are FP8-sized
    cfg.update(num_attention_heads=2, attention_head_dim=128, adaln_lora_dim=256)
    torch.manual_seed(0)
    base = transformer.Gen3cNet(transformer.build_transformer(cfg, "cuda")).eval()
    for p in base.parameters():  # no zero-initialised layers: every path carries signal
        p.data.normal_(0, 0.05)
    base = base.to(torch.bfloat16)
    nets = [base, copy.deepcopy(base)]
    nets[0].attention_backend = "cudnn"
    transformer.use_fast_attention(nets[0].transformer)
    nets[1].attention_backend = "fa4"
    transformer.use_fast_attention(nets[1].transformer, kernel="fa4")
    assert fp8.quantize_linears_(nets[1].transformer.transformer_blocks) > 0
    transformer.compile_blocks(nets[1].transformer)
    g = torch.Generator(device="cuda").manual_seed(1)
    x = torch.randn(1, 16, 3, 16, 24, generator=g, device="cuda", dtype=torch.bfloat16)
    text = torch.randn(1, 8, cfg["text_embed_dim"], generator=g, device="cuda", dtype=torch.bfloat16)
    cond = torch.zeros(1, 1, 3, 16, 24, device="cuda", dtype=torch.bfloat16)
    cache = torch.randn(
        1, nets[0].cache_channels, 3, 16, 24, generator=g, device="cuda", dtype=torch.bfloat16
    )
    step = torch.full((1,), -0.3, device="cuda", dtype=torch.bfloat16)
    with torch.no_grad():
        ref, got = (net(x, step, text, cond, cache, fps=24.0).float() for net in nets)
    rel = ((got - ref).norm() / ref.norm()).item()
    assert 0 < rel < 0.1, rel  # FP8 rounding is visible (> 0) but small (7B: 2.9e-2)


def test_gelu_epilogue_gemm_matches_reference():
    """cuBLASLt's GEMM with the GELU epilogue is the tanh GELU of the linear (float32, TF32 off, tells it
    from the erf GELU), and within bf16 rounding of the float64 reference at bf16."""
    import torch.nn.functional as F

    from objvid.diffusion.gen3c import gelu_epilogue

    g = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn(3, 500, 256, device="cuda", generator=g)
    w = torch.randn(384, 256, device="cuda", generator=g) / 16
    b = torch.zeros(384, device="cuda")
    ref = gelu_epilogue.reference_linear_gelu_tanh(x, w, b)
    erf = F.gelu(F.linear(x.double(), w.double()))
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        out = gelu_epilogue.linear_gelu_tanh(x, w, b)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    assert (out.double() - ref).abs().max() < 2e-5 < (erf - ref).abs().max()
    xb, wb, bb = x.bfloat16(), w.bfloat16(), b.bfloat16()
    out_b = gelu_epilogue.linear_gelu_tanh(xb, wb, bb)
    ref_b = gelu_epilogue.reference_linear_gelu_tanh(xb, wb, bb)
    assert out_b.dtype == torch.bfloat16
    torch.testing.assert_close(out_b.double(), ref_b, rtol=1.6e-2, atol=1e-2)
