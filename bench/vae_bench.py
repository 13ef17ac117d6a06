#!/usr/bin/env python
"""The GEN3C VAE's part of a chunk (issue 18): encode and decode of one 121 x 704 x 1280 video with cuDNN's
heuristic convolution choice (the default) and with ``torch.backends.cudnn.benchmark`` (cuDNN times its
algorithms once per shape), same weights and input, outputs compared.

    python bench/vae_bench.py                     # H100/H200, ~1 min
    python bench/vae_bench.py --small --device cpu
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import diffusion_bench as db  # noqa: E402  (bootstraps objvid from the checkout)
import torch  # noqa: E402


def main(argv=None) -> dict:
    p = db.bench_parser("vae_bench", __doc__, reps=3)
    args = p.parse_args(argv)
    device = torch.device(args.device)
    dtype = torch.float32 if args.small else torch.bfloat16
    cfg = db.vae_config_tiny() if args.small else db.vae_config_720p()
    f, h, w = (9, 64, 96) if args.small else (121, 704, 1280)
    vae = db.build_vae(cfg, device, dtype, f)
    g = torch.Generator(device=device).manual_seed(0)
    video = torch.rand(1, 3, f, h, w, generator=g, device=device, dtype=dtype) * 2 - 1
    clock = db.Clock(device)
    res = db.result_header("vae_bench", device, shape=[f, h, w], modes={})
    outs = {}
    for mode in ("heuristic", "benchmark"):
        torch.backends.cudnn.benchmark = mode == "benchmark"
        with torch.inference_mode():
            first_enc = clock.once(lambda: vae.encode(video))
            enc, enc_times = clock.median(lambda: vae.encode(video), reps=args.reps, warmup=0)
            latent = vae.encode(video)
            first_dec = clock.once(lambda lat=latent: vae.decode(lat))
            dec, dec_times = clock.median(lambda lat=latent: vae.decode(lat), reps=args.reps, warmup=0)
            outs[mode] = (latent.float().cpu(), vae.decode(latent).float().cpu())
        res["modes"][mode] = {"encode_s": enc, "decode_s": dec, "first_encode_s": first_enc,
                              "first_decode_s": first_dec, "chunk_vae_s": 5 * enc + dec}  # fmt: skip
        print(f"{mode:<10s} encode {enc:.3f} s (first {first_enc:.1f})  decode {dec:.3f} s (first {first_dec:.1f})"
              f"  per chunk (5 encodes + 1 decode) {5 * enc + dec:.2f} s", flush=True)  # fmt: skip
    torch.backends.cudnn.benchmark = False
    (la, va), (lb, vb) = outs["heuristic"], outs["benchmark"]
    res["latent_rel_l2"] = float((la - lb).norm() / la.norm())
    res["video_max_abs_diff"] = float((va - vb).abs().max())
    print(f"benchmark vs heuristic: latent rel L2 {res['latent_rel_l2']:.2e}, video max |d| "
          f"{res['video_max_abs_diff']:.2e} (of [-1, 1])")  # fmt: skip
    db.write_result(res, args.small, args.out)
    return res


if __name__ == "__main__":
    main()
