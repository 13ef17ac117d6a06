#!/usr/bin/env python
"""GEN3C's attention calls alone, per kernel, at a real chunk's shape (issue 18).

One DiT forward at 121 x 704 x 1280 makes 28 self-attentions over 56,320 tokens (32 heads x 128) and 28
cross-attentions onto 512 T5 tokens. For each kernel (SDPA cuDNN, SDPA flash, FlashAttention-4 through
``objvid.diffusion.gen3c.fa4``) this prints the median time per call, TFLOP/s, the first call (FA4 builds
its kernel then) and the error against a float32 reference computed for 512 sampled query rows.

    python bench/attention_bench.py                     # H100/H200, ~1 min
    python bench/attention_bench.py --small --device cpu  # checks the script
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import diffusion_bench as db  # noqa: E402  (bootstraps objvid from the checkout)
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from objvid.diffusion.gen3c import fa4  # noqa: E402
from objvid.diffusion.gen3c.transformer import sdpa_backend  # noqa: E402


def kernels(device: torch.device, dtype: torch.dtype, tile_sweep=()) -> dict:
    """name -> fn(q, k, v) on (B, S, H, D) tensors (the processor's layout), or the reason it cannot run."""

    def sdpa(name):
        def run(q, k, v):
            with sdpa_backend(name):
                return F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)).transpose(1, 2)  # fmt: skip

        return run

    out = (
        {"sdpa-cudnn": sdpa("cudnn"), "sdpa-flash": sdpa("flash")}
        if device.type == "cuda"
        else {"sdpa-math": sdpa("math")}
    )
    reason = fa4.unavailable_reason(device, dtype)
    out["fa4"] = fa4.fa4_attention if reason is None else reason
    for tiles in (
        tile_sweep if reason is None else ()
    ):  # FA4 forward tiles (tile_m, tile_n) other than its own

        def run(q, k, v, tiles=tiles):
            from flash_attn.cute.interface import _flash_attn_fwd

            return _flash_attn_fwd(q, k, v, tile_mn=tiles)[0]

        out[f"fa4-{tiles[0]}x{tiles[1]}"] = run
    return out


def reference_rows(q, k, v, rows: torch.Tensor) -> torch.Tensor:
    """float32 softmax(q k^T / sqrt(D)) v for the query rows ``rows`` only: (B, len(rows), H, D)."""
    qs = q[:, rows].float().transpose(1, 2)  # (B, H, r, D)
    kf, vf = k.float().transpose(1, 2), v.float().transpose(1, 2)
    p = torch.softmax(qs @ kf.transpose(-1, -2) / q.shape[-1] ** 0.5, dim=-1)
    return (p @ vf).transpose(1, 2)


def time_calls(fn, args, reps: int, device) -> tuple[float, float]:
    """(first call s, median of ``reps`` later calls s)."""
    clock = db.Clock(device)
    with torch.inference_mode():
        first = clock.once(lambda: fn(*args))
        median, _ = clock.median(lambda: fn(*args), reps=reps, warmup=0)
    return first, median


def main(argv=None) -> dict:
    p = db.bench_parser("attention_bench", __doc__, reps=10)
    p.add_argument("--fa4-tiles", default="", help="FA4 forward tiles to try, e.g. 128x176,192x128")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    dtype = torch.float32 if device.type == "cpu" else torch.bfloat16
    b, h, d = 1, (4 if args.small else 32), (32 if args.small else 128)
    tokens, text = (384, 16) if args.small else (56_320, 512)
    g = torch.Generator(device=device).manual_seed(0)

    def rand(s):
        return torch.randn(b, s, h, d, generator=g, device=device, dtype=dtype)

    q, k, v, kt, vt = rand(tokens), rand(tokens), rand(tokens), rand(text), rand(text)
    rows = torch.randperm(tokens, generator=g, device=device)[: min(512, tokens)]
    cases = {"self": (q, k, v), "cross": (q, kt, vt)}
    refs = {c: reference_rows(*a, rows) for c, a in cases.items()}
    res = db.result_header("attention_bench", device, shape={"batch": b, "heads": h, "head_dim": d, "tokens": tokens, "text_tokens": text}, kernels={})  # fmt: skip
    sweep = [tuple(int(x) for x in t.split("x")) for t in args.fa4_tiles.split(",") if t]
    for name, fn in kernels(device, dtype, sweep).items():
        if isinstance(fn, str):
            res["kernels"][name] = {"unavailable": fn}
            print(f"{name:<13s} unavailable: {fn}", flush=True)
            continue
        row = {}
        for case, a in cases.items():
            try:
                first, med = time_calls(fn, a, args.reps, device)
                with torch.inference_mode():
                    got = fn(*a)[:, rows].float()
            except Exception as exc:  # noqa: BLE001 - keep the other kernels' numbers
                row[case] = {"error": f"{type(exc).__name__}: {exc}"[:600]}
                continue
            err = (got - refs[case]).abs()
            flops = 4 * b * h * a[0].shape[1] * a[1].shape[1] * d
            row[case] = {"first_s": first, "median_ms": med * 1e3, "tflops": flops / med / 1e12,
                         "max_abs_err": float(err.max()), "mean_abs_err": float(err.mean())}  # fmt: skip
        res["kernels"][name] = row
        print(f"{name:<13s} " + "  ".join(
            f"{c}: {r['median_ms']:8.2f} ms {r['tflops']:6.1f} TFLOP/s first {r['first_s']:6.2f} s max|d| {r['max_abs_err']:.2e}"
            if "median_ms" in r else f"{c}: {r['error']}" for c, r in row.items()), flush=True)  # fmt: skip
    db.write_result(res, args.small, args.out)
    return res


if __name__ == "__main__":
    main()
