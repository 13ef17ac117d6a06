"""The FP8 opt-in's arithmetic (objvid.diffusion.gen3c.fp8) on a CPU: rowwise float8 e4m3 quantization and
the reference product, against an independent restatement; the swap replaces only eligible linears."""

from __future__ import annotations

import torch
from torch import nn

from objvid.diffusion.gen3c import fp8


def test_rowwise_quantization_round_trips_within_e4m3_precision():
    x = torch.randn(8, 64, generator=torch.Generator().manual_seed(0)) * torch.logspace(-3, 3, 8)[:, None]
    q, s = fp8.quantize_rows(x)
    assert q.dtype == torch.float8_e4m3fn and s.shape == (8, 1)
    assert torch.equal(x.abs().amax(1, keepdim=True) / 448.0, s)
    rel = ((q.float() * s - x).abs() / x.abs().amax(1, keepdim=True)).max()
    assert rel <= 2**-4  # 3 mantissa bits: half an ulp at the top of the range is 1/16 of it


def test_fp8_linear_reference_equals_the_dequantized_product_and_stays_near_fp32():
    g = torch.Generator().manual_seed(1)
    lin = nn.Linear(64, 32)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(32, 64, generator=g) * 0.05)
    x = torch.randn(3, 5, 64, generator=g)
    f = fp8.Fp8Linear(lin, reference=True)
    y = f(x)

    # independent restatement: per-row absmax scaling to 448, e4m3 rounding, fp32 product
    def q(t):
        s = t.abs().amax(-1, keepdim=True) / 448.0
        return (t / s).to(torch.float8_e4m3fn).float() * s

    want = q(x.reshape(-1, 64)) @ q(lin.weight).t() + lin.bias
    torch.testing.assert_close(y.reshape(-1, 32), want, rtol=1e-5, atol=1e-6)
    exact = lin(x)
    assert ((y - exact).norm() / exact.norm()) < 0.08


def test_quantize_swaps_only_large_aligned_linears():
    m = nn.Sequential(nn.Linear(256, 512), nn.ReLU(), nn.Sequential(nn.Linear(512, 250), nn.Linear(16, 16)))
    assert fp8.quantize_linears_(m, reference=True) == 1
    assert (
        isinstance(m[0], fp8.Fp8Linear) and isinstance(m[2][0], nn.Linear) and isinstance(m[2][1], nn.Linear)
    )
    assert m[0](torch.randn(2, 256)).shape == (2, 512)
