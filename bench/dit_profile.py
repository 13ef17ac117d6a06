#!/usr/bin/env python
"""Where one GEN3C DiT forward spends its GPU time (issue 18): median forward per variant, then a
``torch.profiler`` trace of one forward of each variant with kernel time summed by kind (attention, GEMM,
Triton fused elementwise / norms, other).

    python bench/dit_profile.py --variants fast-cudnn-compile,fast-fa4-compile   # H200, ~2 min
    python bench/dit_profile.py --small --device cpu --variants fast-default       # checks the script
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import diffusion_bench as db  # noqa: E402  (bootstraps objvid from the checkout)
import torch  # noqa: E402

KINDS = (  # first match wins; lower-case substrings of kernel names
    ("attention", ("flash", "fmha", "cudnn", "attention", "sdpa")),
    ("gemm", ("gemm", "nvjet", "xmma", "cutlass", "cublas", "matmul", "scaled_mm")),
    ("triton", ("triton",)),
)


def kind_of(name: str) -> str:
    low = name.lower()
    for kind, keys in KINDS:
        if any(k in low for k in keys):
            return kind
    return "other"


def profile_forward(net, args_, device) -> dict:
    """GPU (or CPU) kernel seconds of one forward, by kind, plus the ten largest kernels."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CUDA] if device.type == "cuda" else [ProfilerActivity.CPU]
    with torch.inference_mode(), profile(activities=acts) as prof:
        net(*args_, fps=24.0)
        if device.type == "cuda":
            torch.cuda.synchronize()
    by_kind, by_name = defaultdict(float), defaultdict(float)
    for ev in prof.key_averages():
        t = (ev.device_time_total if device.type == "cuda" else ev.self_cpu_time_total) / 1e6
        if t <= 0 or (device.type == "cuda" and ev.device_type != torch.autograd.DeviceType.CUDA):
            continue
        by_kind[kind_of(ev.key)] += t
        by_name[ev.key] += t
    top = sorted(by_name.items(), key=lambda kv: -kv[1])[:10]
    return {"seconds_by_kind": dict(by_kind), "top_kernels": [{"name": n[:120], "s": s} for n, s in top]}


def main(argv=None) -> dict:
    p = db.bench_parser("dit_profile", __doc__, reps=3)
    p.add_argument("--variants", default="fast-cudnn-compile,fast-fa4-compile")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    dtype = torch.float32 if args.small else torch.bfloat16
    cfg = db.transformer_config_tiny() if args.small else db.transformer_config_7b()
    latent, ctx = ((2, 8, 12), 8) if args.small else ((16, 88, 160), 512)
    net = db.build_net(cfg, device, dtype)
    x = db.net_args(cfg, latent, 1, device, dtype, ctx)
    clock = db.Clock(device)
    res = db.result_header("dit_profile", device, latent=latent, variants={})
    for name in args.variants.split(","):
        db.configure_variant(net, name)
        with torch.inference_mode():
            first = clock.once(lambda: net(*x, fps=24.0))
            med, times = clock.median(lambda: net(*x, fps=24.0), reps=args.reps)
        row = {"first_s": first, "forward_s": med, "times": times, **profile_forward(net, x, device)}
        res["variants"][name] = row
        kinds = "  ".join(f"{k} {v:.3f}" for k, v in sorted(row["seconds_by_kind"].items()))
        print(f"{name:<22s} forward {med:.3f} s (first {first:.1f} s)  kernel s by kind: {kinds}", flush=True)
        for k in row["top_kernels"][:6]:
            print(f"    {k['s']:.3f} s  {k['name']}", flush=True)
    db.write_result(res, args.small, args.out)
    return res


if __name__ == "__main__":
    main()
