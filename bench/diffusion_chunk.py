#!/usr/bin/env python
"""A real GEN3C chunk end to end (121 x 704 x 1280, 35 steps, CFG) with random bf16 weights in the 7B layout,
plus the FP8 opt-in and compiled-artifact caching, side by side in one run (issue 18).

Phases (``--phases``):

- ``chunk``: ``Gen3cModel.generate`` (VAE encode of the first frame and 2 buffer slots, conditioning,
  ``--steps`` EDM steps with classifier-free guidance (two DiT passes per step unless ``--guidance 0``),
  VAE decode), per variant on the SAME weights and inputs (``VARIANTS``): ``bf16`` (fast attention, cuDNN
  SDPA, ``torch.compile`` of the blocks), ``fa4`` (the same with FlashAttention-4), ``fa4-prev`` (the
  previous default: fa4 with the whole padded chunk encoded for the condition latent), ``-tuned`` (Inductor's
  kernel tuning), ``-gelu`` (the feed-forward's GELU in its GEMM's epilogue: cuBLASLt's tanh GELU; run
  it after the variants without it), ``cfgbatch`` (both CFG passes in one batch: an output-preserving
  change, the yardstick for bf16 noise), then ``fp8`` (``objvid.diffusion.gen3c.fp8``: the blocks' linears as float8 rowwise
  ``_scaled_mm``). Reports seconds per stage, s/step, the 35-step extrapolation when ``--steps`` < 35, and
  each video's deviation from the first variant's (mean / max abs uint8 difference, PSNR) plus one DiT
  forward's relative error on identical inputs.
- ``compile-cache``: three fresh processes each build the net, ``torch.compile`` the blocks and time the
  first DiT forward (= compile + run) against the second: ``cold`` (empty Inductor cache), ``disk``
  (Inductor's on-disk cache from ``cold``, ``TORCHINDUCTOR_CACHE_DIR``), ``mega`` (an empty cache dir
  plus ``torch.compiler.load_cache_artifacts`` of the bytes ``cold`` saved with
  ``save_cache_artifacts``: what a restarted server or a new pod can ship beside the weights).

Full size needs diffusers (the lead's wheel) and a GPU; ``--small`` checks the script on a CPU (tiny
layout, float32, reference FP8 arithmetic). Writes ``diffusion_chunk.json`` to ``$OUT`` or bench/results/.

    python bench/diffusion_chunk.py --steps 4              # ~4 min on an H200, extrapolated to 35 steps
    python bench/diffusion_chunk.py --small --steps 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import diffusion_bench as db  # noqa: E402  (bootstraps objvid from the checkout when not installed)
import numpy as np  # noqa: E402
import torch  # noqa: E402

from objvid.diffusion.base import GenerateOptions, validate_chunk  # noqa: E402
from objvid.diffusion.gen3c import fp8, gelu_epilogue  # noqa: E402
from objvid.diffusion.gen3c.config import Gen3cConfig  # noqa: E402


def setup(args):
    small = args.small
    device = torch.device("cpu" if small else args.device)
    dtype = torch.float32 if small else torch.bfloat16
    frames, h, w = (9, 64, 96) if small else (args.frames, args.height, args.width)
    dit_cfg = db.transformer_config_tiny() if small else db.transformer_config_7b()
    vae_cfg = db.vae_config_tiny() if small else db.vae_config_720p()
    ctx = 8 if small else 512
    return device, dtype, (frames, h, w), dit_cfg, vae_cfg, ctx


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_chunk(model, chunk, args, device) -> tuple[np.ndarray, dict]:
    stamps = {}

    def progress(p):
        sync(device)
        stamps.setdefault((p.stage, p.step), time.perf_counter())

    sync(device)
    t0 = time.perf_counter()
    video = model.generate(
        chunk, GenerateOptions(num_steps=args.steps, guidance=args.guidance, seed=1), progress
    )
    sync(device)
    total = time.perf_counter() - t0
    d0, dn = stamps.get(("denoise", 0), t0), stamps.get(("denoise", args.steps), t0)
    step = (dn - d0) / max(1, args.steps)
    encode, decode = d0 - t0, t0 + total - stamps.get(("decode", 0), t0 + total)
    return video, {"seconds": total, "encode_s": encode, "step_s": step, "decode_s": decode,
                   "chunk_35_steps_s": encode + 35 * step + decode}  # fmt: skip


# variant -> (diffusion_bench variant of the DiT: attention kernel + compile (+ Inductor kernel tuning), CFG
# passes in one batch of 2, the condition latent from the whole padded chunk as upstream encodes it instead of
# from its first frame). fp8 keeps cuDNN attention and quantizes the linears (irreversibly: run it last).
# cfgbatch is bf16 with cond + uncond batched: an output-preserving change, a yardstick for bf16 noise.
# fa4-prev is the default of the previous version (FA4, whole-chunk condition encode, untuned kernels).
VARIANTS = {
    "bf16": ("fast-cudnn-compile", False, False),
    "fa4-prev": ("fast-fa4-compile", False, True),
    "fa4": ("fast-fa4-compile", False, False),
    "fa4-tuned": ("fast-fa4-compile-tuned", False, False),
    "fa4-tuned-cfgbatch": ("fast-fa4-compile-tuned", True, False),
    "fa4-autotune": ("fast-fa4-compile-autotune", False, False),
    "fa4-multikernel": ("fast-fa4-compile-multikernel", False, False),
    "fa4-gelu": ("fast-fa4-compile", False, False),  # + the FFN's GELU in the GEMM epilogue (irreversible)
    "cfgbatch": ("fast-cudnn-compile", True, False),
    "fa4-cfgbatch": ("fast-fa4-compile", True, False),
    "fp8": ("fast-cudnn-compile", False, False),
}


def bench_model_class():
    from objvid.diffusion.gen3c import conditioning
    from objvid.diffusion.gen3c.model import Gen3cModel

    class BenchModel(Gen3cModel):
        """Gen3cModel that can also build the condition latent as the previous version did."""

        whole_chunk_condition = False

        def _condition_latent(self, chunk):
            if not self.whole_chunk_condition:
                return super()._condition_latent(chunk)
            video = conditioning.first_frame_video(
                chunk.first_frame, chunk.num_frames, self.device, self.vae.dtype
            )
            return self.vae.encode(video)

    return BenchModel


def phase_chunk(args) -> dict:
    from objvid.diffusion.gen3c.text import ZeroPromptEncoder

    device, dtype, (f, h, w), dit_cfg, vae_cfg, ctx = setup(args)
    net = db.build_net(dit_cfg, device, dtype)
    config = Gen3cConfig(chunk_frames=f, text_max_length=ctx, text_embed_dim=dit_cfg["text_embed_dim"])
    vae = db.build_vae(vae_cfg, device, dtype, f)
    model = bench_model_class()(
        net, vae, ZeroPromptEncoder(ctx, config.text_embed_dim), config, device=device, dtype=dtype
    )
    rng = np.random.default_rng(0)
    renders = rng.integers(0, 256, (f, 2, h, w, 3), dtype=np.uint8)
    masks = (rng.random((f, 2, h, w)) > 0.3).astype(np.uint8)
    chunk = validate_chunk(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), renders, masks)
    latent = (1 + (f - 1) // 8, h // 8, w // 8)
    net_in = db.net_args(dit_cfg, latent, 1, device, dtype, ctx)
    rows, videos, forwards = {}, {}, {}
    for variant in args.variants.split(","):
        try:
            if variant not in VARIANTS:
                raise ValueError(f"unknown variant {variant!r}; known: {sorted(VARIANTS)}")
            dit_variant, model.cfg_batch, model.whole_chunk_condition = VARIANTS[variant]
            db.configure_variant(net, "fast-default" if args.small else dit_variant)
            if variant.endswith("-gelu"):  # swap the FFN modules, then compile afresh
                db.drop_compiled(net)
                n = gelu_epilogue.fuse_ffn_gelu_(net.transformer.transformer_blocks)
                print(f"gelu epilogue: {n} feed-forwards fused", flush=True)
                db.configure_variant(net, "fast-default" if args.small else dit_variant)
            if variant == "fp8":
                n = fp8.quantize_linears_(net.transformer.transformer_blocks, min_features=16 if args.small else 256,
                                          reference=True if args.small else None)  # fmt: skip
                print(f"fp8: {n} linears quantized", flush=True)
            warmup = None
            if not args.small:  # compile / autotune outside the timed run
                warmup = run_chunk(model, chunk, argparse.Namespace(**{**vars(args), "steps": 1}), device)[1]
            video, row = run_chunk(model, chunk, args, device)
            if warmup is not None:  # a 1-step chunk including the compile (and kernel tuning) of this variant
                row["warmup_chunk_s"] = warmup["seconds"]
            with torch.no_grad():
                forwards[variant] = net(*net_in, fps=24.0).float().cpu()
        except Exception:  # noqa: BLE001 - keep the other variant's numbers
            import traceback

            rows[variant] = {"error": traceback.format_exc()[-3000:]}
            print(f"{variant} failed:\n{rows[variant]['error']}", flush=True)
            continue
        rows[variant], videos[variant] = row, video
        print(f"{variant}: {json.dumps({k: round(v, 3) for k, v in row.items()})}", flush=True)
    base = args.variants.split(",")[0]  # deviations are measured against the first variant listed
    if base in videos:
        ref = videos[base].astype(np.int16)
        for variant, video in videos.items():  # variants that ran
            diff = np.abs(video.astype(np.int16) - ref)
            mse = float((diff.astype(np.float64) ** 2).mean())
            rows[variant]["video_mean_abs_diff"] = float(diff.mean())
            rows[variant]["video_max_abs_diff"] = int(diff.max())
            rows[variant]["video_psnr_db"] = float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)
            e = forwards[variant] - forwards[base]
            rows[variant]["dit_forward_rel_l2"] = float(e.norm() / forwards[base].norm().clamp(min=1e-12))
    return {
        "shape": [f, h, w],
        "latent": latent,
        "steps": args.steps,
        "guidance": args.guidance,
        "deviation_baseline": base,
        "variants": rows,
    }


CHILD = r"""
import json, sys, time, torch
sys.path.insert(0, {bench!r})
import diffusion_bench as db
mode, art = sys.argv[1], sys.argv[2]
if mode == "mega":
    torch.compiler.load_cache_artifacts(open(art, "rb").read())
small = {small}
device = torch.device("cpu" if small else "cuda")
dtype = torch.float32 if small else torch.bfloat16
cfg = db.transformer_config_tiny() if small else db.transformer_config_7b()
latent = (2, 8, 12) if small else (16, 88, 160)
net = db.build_net(cfg, device, dtype)
db.configure_variant(net, "fast-default-compile" if small else {variant!r})
x = db.net_args(cfg, latent, 1, device, dtype, 8 if small else 512)
times = []
for _ in range(2):
    if device.type == "cuda": torch.cuda.synchronize()
    t = time.perf_counter()
    with torch.no_grad(): net(*x, fps=24.0)
    if device.type == "cuda": torch.cuda.synchronize()
    times.append(time.perf_counter() - t)
if mode == "cold":
    blob = torch.compiler.save_cache_artifacts()
    open(art, "wb").write(blob[0] if blob else b"")
print(json.dumps({{"first_s": times[0], "second_s": times[1], "compile_s": times[0] - times[1]}}))
"""


def phase_compile_cache(args) -> dict:
    bench_dir = str(Path(__file__).parent)
    code = CHILD.format(bench=bench_dir, small=bool(args.small), variant=args.compile_variant)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        art = os.path.join(tmp, "mega_cache.bin")
        disk = os.path.join(tmp, "inductor-disk")
        modes = (("cold", disk), ("disk", disk), ("mega", os.path.join(tmp, "inductor-empty")))
        for mode, cache_dir in (m for m in modes if m[0] in args.compile_modes.split(",")):
            env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=cache_dir, TRITON_CACHE_DIR=cache_dir + "-triton",
                       FLASH_ATTENTION_CUTE_DSL_CACHE_ENABLED="1", FLASH_ATTENTION_CUTE_DSL_CACHE_DIR=cache_dir + "-fa4")  # fmt: skip
            proc = subprocess.run([sys.executable, "-c", code, mode, art], env=env, capture_output=True, text=True,
                                  timeout=600)  # fmt: skip
            if proc.returncode != 0:
                out[mode] = {"error": proc.stderr[-2000:]}
            else:
                out[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
                out[mode]["artifact_bytes"] = os.path.getsize(art) if os.path.exists(art) else 0
                fa4_dir = Path(cache_dir + "-fa4")
                out[mode]["fa4_cache_files"] = (
                    sum(1 for p in fa4_dir.rglob("*") if p.is_file()) if fa4_dir.is_dir() else 0
                )
            print(f"compile-cache {mode}: {out[mode]}", flush=True)
    return out


def main(argv=None) -> dict:
    p = db.bench_parser("diffusion_chunk", __doc__)
    p.add_argument("--steps", type=int, default=35, help="denoising steps run (35 = a real chunk)")
    p.add_argument(
        "--guidance", type=float, default=1.0, help="CFG g (GEN3C's default 1.0: two passes per step)"
    )
    p.add_argument("--variants", default="bf16,fa4,cfgbatch,fp8",
                   help=f"comma list of {list(VARIANTS)}, fp8 last")  # fmt: skip
    p.add_argument("--phases", default="chunk,compile-cache")
    p.add_argument(
        "--compile-variant", default="fast-fa4-compile", help="DiT variant of the compile-cache phase"
    )
    p.add_argument("--compile-modes", default="cold,disk,mega", help="compile-cache processes to run")
    p.add_argument("--frames", type=int, default=121)
    p.add_argument("--height", type=int, default=704)
    p.add_argument("--width", type=int, default=1280)
    args = p.parse_args(argv)
    res = db.result_header(
        "diffusion_chunk", None if args.small else torch.device(args.device), config=vars(args)
    )
    path = db.result_path("diffusion_chunk", args.small, args.out)
    for phase in args.phases.split(","):
        try:
            res[phase] = {"chunk": phase_chunk, "compile-cache": phase_compile_cache}[phase](args)
        except Exception as exc:  # noqa: BLE001 - keep the other phase's numbers
            import traceback

            res[phase] = {"error": traceback.format_exc()}
            print(f"{phase} failed: {exc!r}", flush=True)
        path.write_text(json.dumps(res, indent=2, default=str))  # after every phase: a timeout keeps the rest
    chunk = res.get("chunk", {})
    if "variants" in chunk:
        print(f"\n{'variant':<18s} {'total s':>8s} {'encode s':>9s} {'s/step':>8s} {'decode s':>9s} {'35-step s':>10s} "
              f"{'mean|d|':>8s} {'PSNR dB':>8s} {'DiT rel':>8s}")  # fmt: skip
        for v, r in chunk["variants"].items():
            if "error" in r:
                print(f"{v:<18s} failed (see JSON)")
                continue
            print(f"{v:<18s} {r['seconds']:>8.1f} {r['encode_s']:>9.2f} {r['step_s']:>8.3f} {r['decode_s']:>9.2f} "
                  f"{r['chunk_35_steps_s']:>10.1f} {r.get('video_mean_abs_diff', 0):>8.3f} "
                  f"{r.get('video_psnr_db', 0):>8.1f} {r.get('dit_forward_rel_l2', 0):>8.4f}")  # fmt: skip
    cc = res.get("compile-cache", {})
    for mode, r in cc.items() if isinstance(cc, dict) and "error" not in cc else ():
        if "first_s" in r:
            print(f"compile cache {mode:<5s}: first forward {r['first_s']:.1f} s, second {r['second_s']:.2f} s, "
                  f"compile {r['compile_s']:.1f} s, artifacts {r['artifact_bytes'] / 1e6:.1f} MB")  # fmt: skip
    print(f"wrote {path}")
    return res


if __name__ == "__main__":
    main()
