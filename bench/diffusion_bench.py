"""GEN3C speed on one GPU: DiT forward variants, CFG batched vs sequential, VAE, and a whole-chunk figure.

Full mode (GPU): the GEN3C-Cosmos-7B layout (28 blocks, 32 x 128 heads, AdaLN-LoRA 256, 82 input channels) and
the Cosmos-Tokenize1-CV8x8x8-720p layout with random bf16 weights, at 121 frames x 704 x 1280 (latent
16 x 88 x 160 = 56,320 tokens). Phases (``--phases``, each timed with CUDA events after warm-up, medians):

- ``ceiling``: bf16 matmul TFLOP/s (8192^3), the reference for "fraction of ceiling";
- ``dit``: one DiT forward at batch 1 per variant (``--variants``): diffusers' attention processor vs ours,
  SDPA backend default / flash / cudnn / efficient, and ``torch.compile`` of the blocks;
- ``cfg``: one CFG denoising step with the best variant: batch of 2 vs two batch-1 passes;
- ``vae``: VAE encode of one 121-frame video (x5 per chunk: first frame + 2 buffers x (renders, masks))
  and decode of one latent;
- ``pipeline``: ``Gen3cModel.generate`` end to end with ``--pipeline-steps`` steps; the whole-chunk figure
  adds the remaining steps at the measured per-step time.

Analytic FLOPs per forward: 28 x (28 N D^2 + 4 N^2 D + cross-attention) + embeddings (N tokens, D = 4096).
``--small`` runs everything on CPU at a tiny size (layout check, not a speed figure).
Writes ``diffusion_bench.json`` to ``$OUT`` when set, else ``bench/results/``; prints a table.

Usage: python bench/diffusion_bench.py [--small] [--phases ceiling,dit,cfg,vae,pipeline] [--variants ...]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import runpy
import statistics
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ALL_PHASES = ("ceiling", "dit", "cfg", "vae", "pipeline")
ALL_VARIANTS = (
    "diffusers-default",
    "fast-default",
    "fast-flash",
    "fast-cudnn",
    "fast-efficient",
    "fast-fa4",
    "fast-cudnn-compile",
)


def bootstrap_objvid() -> None:
    """Import objvid from this checkout when it is not installed (the GPU machine runs the bare tree)."""
    try:
        import objvid.diffusion  # noqa: F401

        return
    except ImportError:
        pass
    # The one package-dir mapper (also used through PYTHONPATH=bench/_path by spawned servers).
    runpy.run_path(str(ROOT / "bench" / "_path" / "sitecustomize.py"))


bootstrap_objvid()

import torch  # noqa: E402

from objvid.diffusion.base import GenerateOptions, validate_chunk  # noqa: E402
from objvid.diffusion.gen3c import conditioning, transformer  # noqa: E402
from objvid.diffusion.gen3c.config import (  # noqa: E402
    Gen3cConfig,
    transformer_config_7b,
    transformer_config_tiny,
    vae_config_720p,
    vae_config_tiny,
)

GIB = 1024**3


class Clock:
    """Wall time of a callable: CUDA events on GPU, perf_counter on CPU; median of ``reps`` after warm-up."""

    def __init__(self, device: torch.device):
        self.device = device

    def once(self, fn) -> float:
        if self.device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            return start.elapsed_time(end) / 1000
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    def median(self, fn, reps: int, warmup: int = 1) -> tuple[float, list[float]]:
        for _ in range(warmup):
            self.once(fn)
        times = [self.once(fn) for _ in range(reps)]
        return statistics.median(times), times


def peak_reset(device):
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def bench_parser(name: str, doc: str | None, reps: int | None = None) -> argparse.ArgumentParser:
    """The options every diffusion bench shares: ``--device``, ``--small`` (a tiny CPU check of the script),
    ``--out`` (default :func:`result_path`) and, given a default, ``--reps``."""
    p = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])
    p.add_argument("--device", default="cuda")
    if reps is not None:
        p.add_argument("--reps", type=int, default=reps)
    p.add_argument("--small", action="store_true", help="tiny shapes on a CPU (a check of the script)")
    p.add_argument("--out", help=f"JSON path (default $OUT/{name}.json or bench/results/)")
    return p


def result_header(name: str, device: torch.device | None = None, **extra) -> dict:
    """The first keys of a bench's JSON: its name, when, the torch version, the GPU (when on one), ``extra``."""
    res = {
        "benchmark": name,
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "torch": torch.__version__,
        **extra,
    }
    if device is not None and device.type == "cuda":
        res["gpu"] = torch.cuda.get_device_name(device)
    return res


def result_path(name: str, small: bool, out: str | None = None) -> Path:
    """Where a bench writes its JSON: ``out``, else ``$OUT/<name>[_small].json``, else bench/results/ (parent made)."""
    if out:
        path = Path(out)
    else:
        folder = Path(os.environ["OUT"]) if os.environ.get("OUT") else ROOT / "bench" / "results"
        path = folder / f"{name}{'_small' if small else ''}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def write_result(res: dict, small: bool, out: str | None = None) -> Path:
    """Write ``res`` (from :func:`result_header`) to :func:`result_path` and say where."""
    path = result_path(res["benchmark"], small, out)
    path.write_text(json.dumps(res, indent=2, default=str))
    print(f"wrote {path}")
    return path


def peak_gib(device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / GIB if device.type == "cuda" else None


def dit_flops(cfg: dict, latent: tuple[int, int, int], batch: int, ctx_tokens: int) -> float:
    """Matmul FLOPs of one forward (2 per multiply-add)."""
    t, h, w = latent
    pt, ph, pw = cfg["patch_size"]
    n = (t // pt) * (h // ph) * (w // pw)
    d = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    dc = cfg["text_embed_dim"]
    mlp = int(cfg["mlp_ratio"] * d)
    per_block = (
        2 * n * d * 3 * d  # self-attn q, k, v
        + 4 * n * n * d  # QK^T and AV
        + 2 * n * d * d  # self-attn out
        + 2 * n * d * d * 2  # cross-attn q and out
        + 2 * ctx_tokens * dc * d * 2  # cross-attn k, v
        + 4 * n * ctx_tokens * d  # cross attention
        + 2 * n * d * mlp * 2  # MLP
    )
    embed = (
        2 * n * (cfg["in_channels"] + 1) * pt * ph * pw * d + 2 * n * d * pt * ph * pw * cfg["out_channels"]
    )
    return batch * (cfg["num_layers"] * per_block + embed)


def random_init_(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Fill every parameter in place: norms ~1, everything else N(0, 0.02) (timing needs finite values only)."""
    gen = torch.Generator(device=next(module.parameters()).device).manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.ndim == 1 and "norm" in name:
                p.fill_(1.0)
            else:
                p.normal_(0.0, 0.02, generator=gen)
    return module


def build_net(cfg: dict, device, dtype) -> transformer.Gen3cNet:
    model = transformer.build_transformer(cfg, device="meta")
    torch.nn.Module.to(model, dtype=dtype)  # on meta: free; upstream runs every module in bf16
    model.to_empty(device=device)
    random_init_(model)
    return transformer.Gen3cNet(model.eval().requires_grad_(False))


def build_vae(cfg: dict, device, dtype, chunk_frames: int):
    from diffusers import AutoencoderKLCosmos

    from objvid.diffusion.gen3c.vae import Gen3cVae

    with torch.device(device):
        ae = AutoencoderKLCosmos(**cfg)  # default latents_mean/std: 16 x 16 latent frames
    torch.nn.Module.to(ae, dtype=dtype)
    return Gen3cVae(ae.eval().requires_grad_(False), chunk_frames, 0.5).to(device)


def is_compiled(net: transformer.Gen3cNet) -> bool:
    return getattr(net.transformer.transformer_blocks[0], "_compiled_call_impl", None) is not None


def drop_compiled(net: transformer.Gen3cNet) -> None:
    """Back to eager blocks (the next ``compile_blocks`` compiles afresh)."""
    for block in net.transformer.transformer_blocks:
        block._compiled_call_impl = None
    torch._dynamo.reset()


#: Inductor's kernel tuning: coordinate-descent search of each generated Triton kernel's launch configuration
#: (block sizes, warps) at compile time. Same arithmetic per element; a reduction's float32 summation order
#: may change with its block size.
TUNED_KERNEL_OPTIONS = {"coordinate_descent_tuning": True}
#: Inductor's GEMM autotuning: cuBLAS and Triton templates timed per shape, fusion of epilogues (GELU).
GEMM_AUTOTUNE_OPTIONS = {
    "max_autotune_gemm": True,
    "max_autotune_gemm_backends": "ATEN,TRITON",
    "triton.enable_persistent_tma_matmul": True,
}


def configure_variant(net: transformer.Gen3cNet, name: str) -> None:
    """Set the attention processor / SDPA backend / compile of one variant on ``net``: ``PROC-BACKEND``
    plus ``-compile`` (compiled blocks) and ``-tuned`` (Inductor's kernel tuning), ``-multikernel`` (that plus
    persistent and looped reductions both generated, the faster picked) or ``-autotune`` (tuning plus Triton
    GEMM templates benchmarked against cuBLAS, epilogues fused into them). Compiled blocks are kept
    while the next variant compiles the same way, and dropped otherwise."""
    proc, backend, *rest = name.split("-")
    want_compile = "compile" in rest
    tuned = next((t for t in ("autotune", "multikernel", "tuned") if t in rest), "")
    if is_compiled(net) and (not want_compile or getattr(net, "_bench_tuned", "") != tuned):
        drop_compiled(net)
    transformer.use_fast_attention(
        net.transformer, proc == "fast", kernel="fa4" if backend == "fa4" else "sdpa"
    )
    net.attention_backend = None if backend == "default" else backend
    if want_compile and not is_compiled(net):
        options = {
            "": None,
            "tuned": TUNED_KERNEL_OPTIONS,
            "autotune": {**TUNED_KERNEL_OPTIONS, **GEMM_AUTOTUNE_OPTIONS},
            "multikernel": {**TUNED_KERNEL_OPTIONS, "triton.multi_kernel": 1},
        }[tuned]
        transformer.compile_blocks(net.transformer, options=options)
        net._bench_tuned = tuned


def net_args(cfg: dict, latent, batch, device, dtype, ctx_tokens):
    g = torch.Generator(device=device).manual_seed(1)
    t, h, w = latent
    x = torch.randn(batch, 16, t, h, w, generator=g, device=device, dtype=dtype)
    step = torch.full((batch,), -0.3, device=device, dtype=dtype)
    text = torch.randn(batch, ctx_tokens, cfg["text_embed_dim"], generator=g, device=device, dtype=dtype)
    ind = conditioning.condition_indicator(t, 1, device)
    cmask = conditioning.condition_mask(ind, h, w).to(dtype).expand(batch, -1, -1, -1, -1)
    cache = torch.randn(batch, cfg["in_channels"] - 17, t, h, w, generator=g, device=device, dtype=dtype)
    return x, step, text, cmask, cache


class Bench:
    def __init__(self, args):
        self.args = args
        self.small = args.small
        self.device = torch.device("cpu" if self.small else args.device)
        self.dtype = torch.float32 if self.device.type == "cpu" else torch.bfloat16
        self.clock = Clock(self.device)
        self.t0 = time.perf_counter()
        self.frames, self.height, self.width = (
            (9, 64, 96) if self.small else (args.frames, args.height, args.width)
        )
        self.latent = (1 + (self.frames - 1) // 8, self.height // 8, self.width // 8)
        self.ctx_tokens = 8 if self.small else 512
        self.dit_cfg = transformer_config_tiny() if self.small else transformer_config_7b()
        self.vae_cfg = vae_config_tiny() if self.small else vae_config_720p()
        self.results: dict = {
            "mode": "small-cpu" if self.small else "full",
            "env": self.env(),
            "shape": {
                "frames": self.frames,
                "height": self.height,
                "width": self.width,
                "latent": self.latent,
            },
            "phases": {},
        }
        self.net = None

    def env(self) -> dict:
        info = {"python": platform.python_version(), "torch": torch.__version__}
        try:
            import diffusers

            info["diffusers"] = diffusers.__version__
        except ImportError:
            pass
        if self.device.type == "cuda":
            info["gpu"] = torch.cuda.get_device_name(self.device)
            info["cuda"] = torch.version.cuda
            info["cudnn"] = torch.backends.cudnn.version()
        return info

    def left(self) -> float:
        return self.args.budget_s - (time.perf_counter() - self.t0)

    def save(self) -> Path:
        out = Path(os.environ["OUT"]) if os.environ.get("OUT") else ROOT / "bench" / "results"
        out.mkdir(parents=True, exist_ok=True)
        path = out / ("diffusion_bench_small.json" if self.small else "diffusion_bench.json")
        path.write_text(json.dumps(self.results, indent=2, default=str) + "\n")
        return path

    def phase(self, name: str, fn, need_s: float) -> None:
        if self.left() < need_s:
            self.results["phases"][name] = {
                "skipped": f"time budget: {self.left():.0f} s left, needs ~{need_s:.0f}"
            }
            print(f"[{name}] skipped (budget)", flush=True)
            return
        t = time.perf_counter()
        try:
            self.results["phases"][name] = fn()
        except Exception as exc:  # keep going: one failed phase must not lose the others
            self.results["phases"][name] = {
                "error": f"{type(exc).__name__}: {exc}",
                "trace": traceback.format_exc(-3),
            }
        self.results["phases"][name]["phase_seconds"] = round(time.perf_counter() - t, 1)
        print(f"[{name}] {json.dumps(self.results['phases'][name], default=str)[:400]}", flush=True)
        self.save()

    # -- phases -----------------------------------------------------------------------------------------------

    def ceiling(self) -> dict:
        n = 512 if self.small else 8192
        a = torch.randn(n, n, device=self.device, dtype=self.dtype)
        b = torch.randn(n, n, device=self.device, dtype=self.dtype)
        med, _ = self.clock.median(lambda: a @ b, reps=10 if self.small else 30, warmup=3)
        self.results["ceiling_tflops"] = 2 * n**3 / med / 1e12
        return {"n": n, "seconds": med, "tflops": self.results["ceiling_tflops"]}

    def get_net(self):
        if self.net is None:
            self.net = build_net(self.dit_cfg, self.device, self.dtype)
        return self.net

    def dit(self) -> dict:
        net = self.get_net()
        args = net_args(self.dit_cfg, self.latent, 1, self.device, self.dtype, self.ctx_tokens)
        flops = dit_flops(self.dit_cfg, self.latent, 1, self.ctx_tokens)
        ceiling = self.results.get("ceiling_tflops")
        out = {"flops_per_forward": flops, "variants": {}}
        variants = [
            v
            for v in self.args.variants
            if not (self.small and "compile" in v and not self.args.compile_small)
        ]
        best = None
        for name in variants:
            per = 4.3 * (1 if not self.small else 0.01)
            need = per * (self.args.reps + 1) + (150 if "compile" in name else 0)
            if self.left() < need:
                out["variants"][name] = {"skipped": "time budget"}
                continue
            try:
                configure_variant(net, name)
                peak_reset(self.device)
                compile_s = None
                if "compile" in name:
                    compile_s = self.clock.once(lambda: net(*args, fps=24.0))
                with torch.inference_mode():
                    med, times = self.clock.median(lambda: net(*args, fps=24.0), reps=self.args.reps)
                tflops = flops / med / 1e12
                rec = {
                    "seconds": med,
                    "times": times,
                    "tflops": tflops,
                    "fraction_of_ceiling": tflops / ceiling if ceiling else None,
                    "peak_gib": peak_gib(self.device),
                }
                if compile_s is not None:
                    rec["first_call_seconds"] = compile_s
                out["variants"][name] = rec
                if best is None or med < out["variants"][best]["seconds"]:
                    best = name
            except Exception as exc:
                out["variants"][name] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
        out["best"] = best
        self.results["best_variant"] = best
        return out

    def cfg(self) -> dict:
        net = self.get_net()
        best = self.results.get("best_variant") or "fast-default"
        configure_variant(net, best)
        one = net_args(self.dit_cfg, self.latent, 1, self.device, self.dtype, self.ctx_tokens)
        two = net_args(self.dit_cfg, self.latent, 2, self.device, self.dtype, self.ctx_tokens)
        res = {"variant": best}
        with torch.inference_mode():
            peak_reset(self.device)
            med, times = self.clock.median(lambda: net(*two, fps=24.0), reps=self.args.reps)
            res["batched_seconds"], res["batched_times"], res["batched_peak_gib"] = (
                med,
                times,
                peak_gib(self.device),
            )
            peak_reset(self.device)

            def sequential():
                net(*one, fps=24.0)
                net(*one, fps=24.0)

            med, times = self.clock.median(sequential, reps=self.args.reps)
            res["sequential_seconds"], res["sequential_times"], res["sequential_peak_gib"] = (
                med,
                times,
                peak_gib(self.device),
            )
        res["best_step_seconds"] = min(res["batched_seconds"], res["sequential_seconds"])
        res["best_mode"] = "batched" if res["batched_seconds"] <= res["sequential_seconds"] else "sequential"
        self.results["step_seconds"] = res["best_step_seconds"]
        self.results["cfg_batch_faster"] = res["best_mode"] == "batched"
        return res

    def vae(self) -> dict:
        vae = build_vae(self.vae_cfg, self.device, self.dtype, self.frames)
        video = (
            torch.rand(1, 3, self.frames, self.height, self.width, device=self.device, dtype=self.dtype) * 2
            - 1
        )
        res = {}
        with torch.inference_mode():
            peak_reset(self.device)
            med, times = self.clock.median(lambda: vae.encode(video), reps=2 if not self.small else 3)
            res["encode_seconds"], res["encode_times"], res["encode_peak_gib"] = (
                med,
                times,
                peak_gib(self.device),
            )
            latent = vae.encode(video)
            peak_reset(self.device)
            med, times = self.clock.median(lambda: vae.decode(latent), reps=2 if not self.small else 3)
            res["decode_seconds"], res["decode_times"], res["decode_peak_gib"] = (
                med,
                times,
                peak_gib(self.device),
            )
        res["encodes_per_chunk"] = 5
        res["vae_weights_gib"] = sum(p.numel() * p.element_size() for p in vae.parameters()) / GIB
        self.results["vae_chunk_seconds"] = 5 * res["encode_seconds"] + res["decode_seconds"]
        vae = video = latent = None  # free before the next phase
        peak_reset(self.device)
        return res

    def pipeline(self) -> dict:
        import numpy as np

        from objvid.diffusion.gen3c.model import Gen3cModel
        from objvid.diffusion.gen3c.text import ZeroPromptEncoder

        net = self.get_net()
        configure_variant(net, self.results.get("best_variant") or "fast-default")
        config = Gen3cConfig(
            chunk_frames=self.frames,
            text_max_length=self.ctx_tokens,
            text_embed_dim=self.dit_cfg["text_embed_dim"],
        )
        vae = build_vae(self.vae_cfg, self.device, self.dtype, self.frames)
        model = Gen3cModel(
            net,
            vae,
            ZeroPromptEncoder(config.text_max_length, config.text_embed_dim),
            config,
            device=self.device,
            dtype=self.dtype,
            cfg_batch=bool(self.results.get("cfg_batch_faster", False)),
        )
        rng = np.random.default_rng(0)
        f, h, w = self.frames, self.height, self.width
        renders = rng.integers(0, 256, (f, 2, h, w, 3), dtype=np.uint8)
        masks = (rng.random((f, 2, h, w)) > 0.3).astype(np.uint8)
        chunk = validate_chunk(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), renders, masks)
        steps = self.args.pipeline_steps
        stamps = {}

        def progress(p):
            if self.device.type == "cuda":
                torch.cuda.synchronize()
            stamps.setdefault((p.stage, p.step), time.perf_counter())

        peak_reset(self.device)
        t0 = time.perf_counter()
        video = model.generate(chunk, GenerateOptions(num_steps=steps, guidance=1.0), progress)
        total = time.perf_counter() - t0
        step_s = (stamps[("denoise", steps)] - stamps[("denoise", 0)]) / steps
        full = total + (35 - steps) * step_s
        self.results["chunk_seconds_measured_estimate"] = full
        return {
            "steps_run": steps,
            "seconds": total,
            "encode_seconds": stamps[("denoise", 0)] - t0,
            "step_seconds": step_s,
            "decode_seconds": t0 + total - stamps[("decode", 0)],
            "chunk_seconds_35_steps": full,
            "peak_gib": peak_gib(self.device),
            "output": list(video.shape),
            "cfg_batch": model.cfg_batch,
        }

    def run(self) -> dict:
        budgets = {"ceiling": 10, "dit": 30, "cfg": 40, "vae": 40, "pipeline": 60}
        for name in self.args.phases:
            self.phase(name, getattr(self, name), 0 if self.small else budgets[name])
        step = self.results.get("step_seconds")
        vae_s = self.results.get("vae_chunk_seconds")
        if step is not None and vae_s is not None:
            self.results["chunk_seconds_component_estimate"] = 35 * step + vae_s
        self.save()
        return self.results


def print_table(res: dict) -> None:
    print(f"\nGEN3C bench ({res['mode']}) {res['env']}")
    print(
        f"shape: {res['shape']}  bf16 matmul ceiling: {res.get('ceiling_tflops', float('nan')):.1f} TFLOP/s"
    )
    dit = res["phases"].get("dit", {})
    if "variants" in dit:
        print(f"{'variant':<22} {'s/forward':>10} {'TFLOP/s':>9} {'of ceiling':>10} {'peak GiB':>9}")
        for name, v in dit["variants"].items():
            if "seconds" in v:
                frac = v["fraction_of_ceiling"]
                peak = v["peak_gib"]
                print(
                    f"{name:<22} {v['seconds']:>10.3f} {v['tflops']:>9.1f} "
                    f"{(f'{frac:.0%}' if frac else '-'):>10} {(f'{peak:.1f}' if peak else '-'):>9}"
                )
            else:
                print(f"{name:<22} {v.get('error') or v.get('skipped')}")
    cfg = res["phases"].get("cfg", {})
    if "batched_seconds" in cfg:
        print(
            f"CFG step ({cfg['variant']}): batched {cfg['batched_seconds']:.3f} s, sequential {cfg['sequential_seconds']:.3f} s"
        )
    vae = res["phases"].get("vae", {})
    if "encode_seconds" in vae:
        print(f"VAE: encode {vae['encode_seconds']:.3f} s x5, decode {vae['decode_seconds']:.3f} s")
    pipe = res["phases"].get("pipeline", {})
    if "chunk_seconds_35_steps" in pipe:
        print(
            f"pipeline: {pipe['steps_run']} steps in {pipe['seconds']:.1f} s -> 35-step chunk "
            f"{pipe['chunk_seconds_35_steps']:.1f} s (peak {pipe['peak_gib']} GiB)"
        )
    if "chunk_seconds_component_estimate" in res:
        print(f"component estimate, 35 steps with CFG: {res['chunk_seconds_component_estimate']:.1f} s")
    for name, p in res["phases"].items():
        if "error" in p or "skipped" in p:
            print(f"[{name}] {p.get('error') or p.get('skipped')}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--small", action="store_true", help="tiny layout on CPU (checks the script, not speed)")
    p.add_argument("--device", default="cuda")
    p.add_argument("--phases", default=",".join(ALL_PHASES), help=f"comma list of {ALL_PHASES}")
    p.add_argument("--variants", default=",".join(ALL_VARIANTS), help=f"comma list of {ALL_VARIANTS}")
    p.add_argument("--reps", type=int, default=3, help="timed repetitions per measurement (after 1 warm-up)")
    p.add_argument("--frames", type=int, default=121)
    p.add_argument("--height", type=int, default=704)
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--pipeline-steps", type=int, default=2)
    p.add_argument(
        "--budget-s", type=float, default=540.0, help="skip phases that would not fit in this time"
    )
    p.add_argument("--compile-small", action="store_true", help="also try torch.compile in --small mode")
    args = p.parse_args(argv)
    args.phases = [x for x in args.phases.split(",") if x]
    args.variants = [x for x in args.variants.split(",") if x]
    bad = [x for x in args.phases if x not in ALL_PHASES] + [
        x for x in args.variants if x not in ALL_VARIANTS
    ]
    if bad:
        p.error(f"unknown phases/variants: {bad}")
    if not args.small and not torch.cuda.is_available():
        p.error("no CUDA device: use --small for the CPU check")
    bench = Bench(args)
    res = bench.run()
    print_table(res)
    print(f"wrote {bench.save()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
