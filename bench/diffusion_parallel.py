"""GEN3C on N GPUs: seconds per DiT forward and per 35-step chunk, scaling efficiency, peak memory per GPU.

For each N in ``--gpus`` (default 1,2,4,8; counts above the visible GPUs are reported as skipped) the script
starts N processes (``spawn``, one per GPU, NCCL; gloo on CPU) that run the production code of
``objvid.diffusion.parallel``: :class:`ParallelGen3cModel` with the layout the service would choose
(``--cfg-parallel``, ``--cp-mode``), diffusers' context-parallel hooks on the DiT. Weights are random (the
GEN3C-Cosmos-7B layout: 28 blocks, 32 x 128 heads) in bf16, at 121 frames x 704 x 1280 (56,320 tokens), with
the service defaults (cuDNN attention, compiled blocks). Measured after a warm-up call (compilation):

- ``forward_s``: one DiT forward (batch 1) on the group (context parallel over N / cfg ranks);
- ``step_s``: one sampler step as generation runs it (both CFG passes + exchange + progress/cancel check),
  from ``Gen3cModel._denoise`` over ``--steps`` steps; ``chunk_s`` = 35 x ``step_s`` (the DiT time of a chunk);
- ``efficiency`` = step_s(single process) / (N x step_s(N)); ``peak_gib``: max over ranks.

N = 1 is measured twice: the existing single-process path (``Gen3cModel`` in one process, no process group)
and the worker-group code on one rank; the two must match (the code runs unchanged on one GPU).
``--device cpu --tiny`` runs the same code with a tiny layout on CPU processes (a smoke run, not a speed
figure). Writes ``diffusion_parallel.json`` to ``$OUT`` when set, else ``bench/results/``; prints a table.

Usage: python bench/diffusion_parallel.py [--gpus 1,2,4,8] [--steps 2] [--reps 3]
       python bench/diffusion_parallel.py --device cpu --tiny --gpus 1,2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from diffusion_bench import bootstrap_objvid  # noqa: E402

bootstrap_objvid()

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
GIB = 1024**3
CHUNK_STEPS = 35


def shape_of(args) -> tuple[dict, object, tuple[int, int, int, int]]:
    """(transformer config, Gen3cConfig, (frames, latent frames, latent h, latent w))."""
    from objvid.diffusion.gen3c.config import Gen3cConfig, transformer_config_7b, transformer_config_tiny

    if args.tiny:
        cfg = transformer_config_tiny()
        cfg.update(num_attention_heads=4, attention_head_dim=16, text_embed_dim=16)
        config = Gen3cConfig(chunk_frames=9, text_max_length=8, text_embed_dim=16)
        return cfg, config, (9, 2, 4, 6)  # 12 tokens
    config = Gen3cConfig()
    return transformer_config_7b(), config, (121, config.latent_frames, args.height // 8, args.width // 8)


def build_model(args, rank: int, world: int, parallel: bool):
    """A Gen3cModel (single process) or an attached ParallelGen3cModel with random weights."""
    from diffusion_bench import build_net, build_vae

    from objvid.diffusion.gen3c import transformer
    from objvid.diffusion.gen3c.config import vae_config_tiny
    from objvid.diffusion.gen3c.model import Gen3cModel
    from objvid.diffusion.gen3c.text import ZeroPromptEncoder
    from objvid.diffusion.parallel import plan
    from objvid.diffusion.parallel.model import ParallelGen3cModel

    device = torch.device(f"cuda:{rank}" if args.device == "cuda" else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    cfg, config, (frames, *_rest) = shape_of(args)
    net = build_net(cfg, device, dtype)
    transformer.use_fast_attention(net.transformer)
    net.attention_backend = "cudnn" if device.type == "cuda" else None
    if device.type == "cuda" and not args.no_compile:
        transformer.compile_blocks(net.transformer)
    vae = build_vae(vae_config_tiny(), device, dtype, frames)  # the VAE is not timed here
    prompts = ZeroPromptEncoder(config.text_max_length, config.text_embed_dim)
    cls = ParallelGen3cModel if parallel else Gen3cModel
    model = cls(net, vae, prompts, config, device=device, dtype=dtype)
    if parallel:
        layout = plan.choose_layout(world, cfg["num_attention_heads"], args.cfg_parallel, args.cp_mode)
        model.attach(layout, plan.build_mesh(layout, device.type))
    return model


def measure(args, rank: int, world: int, parallel: bool) -> dict:
    from diffusion_bench import Clock, peak_gib, peak_reset

    from objvid.diffusion.base import GenerateOptions

    model = build_model(args, rank, world, parallel)
    dev, dt = model.device, model.dtype
    cfg, config, (_frames, t, h, w) = shape_of(args)
    g = torch.Generator().manual_seed(0)
    cond = torch.randn(1, 16, t, h, w, generator=g).to(dev)
    cache = torch.randn(1, cfg["in_channels"] - 17, t, h, w, generator=g).to(dev)
    text = torch.zeros(1, config.text_max_length, config.text_embed_dim, device=dev, dtype=dt)
    x = torch.randn(1, 16, t, h, w, generator=g).to(dev, dt)
    step = torch.full((1,), -0.3, device=dev, dtype=dt)
    cmask = torch.zeros(1, 1, t, h, w, device=dev, dtype=dt)
    cache_dt = cache.to(dt)
    emit = model._emitter(None)
    clock = Clock(dev)

    def barrier():
        if parallel and world > 1:
            torch.distributed.barrier()

    def forward():
        barrier()
        model.net(x, step, text, cmask, cache_dt, 24.0)

    def steps(n: int):
        barrier()
        model._denoise(cond, cache, text, text, GenerateOptions(num_steps=n, guidance=1.0), emit)

    out = {"rank": rank}
    with torch.inference_mode():
        peak_reset(dev)
        t0 = time.perf_counter()
        steps(1)  # warm-up: compilation, both passes
        out["warmup_s"] = time.perf_counter() - t0
        out["forward_s"], out["forward_all_s"] = clock.median(forward, args.reps, warmup=1)
        total, _ = clock.median(lambda: steps(args.steps), 1, warmup=0)
        out["step_s"] = total / args.steps
        out["peak_gib"] = peak_gib(dev)
    if parallel:
        out["layout"] = model.layout.describe()
    return out


def rank_main(rank: int, world: int, parallel: bool, args, store: str, results) -> None:
    import warnings

    warnings.filterwarnings("ignore", message=".*all_gather_tensor.* is deprecated", category=FutureWarning)
    try:
        if parallel:
            device = torch.device(f"cuda:{rank}" if args.device == "cuda" else "cpu")
            if device.type == "cuda":
                torch.cuda.set_device(device)
            else:
                torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
            torch.distributed.init_process_group(
                "nccl" if device.type == "cuda" else "gloo",
                init_method=f"file://{store}",
                rank=rank,
                world_size=world,
                device_id=device if device.type == "cuda" else None,
            )
        elif args.device == "cpu":
            torch.set_num_threads(max(1, (os.cpu_count() or 1)))
        results.put(measure(args, rank, world, parallel))
    except BaseException as exc:  # noqa: BLE001 - reported in the table
        results.put({"rank": rank, "error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()})
    finally:
        if parallel and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def run_group(args, world: int, parallel: bool) -> dict:
    """Start ``world`` processes, wait for them, merge their reports."""
    import torch.multiprocessing as mp

    from objvid.diffusion.parallel.group import python_executable

    ctx = mp.get_context("spawn")
    ctx.set_executable(python_executable())
    results = ctx.Queue()
    with tempfile.TemporaryDirectory(prefix="objvid-bench-") as tmp:
        procs = [
            ctx.Process(
                target=rank_main, args=(r, world, parallel, args, os.path.join(tmp, "store"), results)
            )
            for r in range(world)
        ]
        for p in procs:
            p.start()
        reports = [results.get(timeout=args.timeout) for _ in procs]
        for p in procs:
            p.join(30)
    errors = [r for r in reports if "error" in r]
    if errors:
        return {
            "world_size": world,
            "parallel": parallel,
            "error": errors[0]["error"],
            "trace": errors[0]["trace"],
        }
    zero = next(r for r in reports if r["rank"] == 0)
    peaks = [r["peak_gib"] for r in reports if r.get("peak_gib") is not None]
    return {
        "world_size": world,
        "parallel": parallel,
        "layout": zero.get("layout", "single process"),
        "warmup_s": zero["warmup_s"],
        "forward_s": zero["forward_s"],
        "step_s": zero["step_s"],
        "chunk_s": CHUNK_STEPS * zero["step_s"],
        "peak_gib": max(peaks) if peaks else None,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    p.add_argument("--tiny", action="store_true", help="tiny layout (checks the code, not speed)")
    p.add_argument("--gpus", default="1,2,4,8", help="comma list of world sizes")
    p.add_argument(
        "--steps", type=int, default=2, help="timed sampler steps per measurement (after 1 warm-up)"
    )
    p.add_argument("--reps", type=int, default=3, help="timed forwards (median)")
    p.add_argument("--height", type=int, default=704)
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--cfg-parallel", default="auto", choices=("auto", "1", "2"))
    p.add_argument("--cp-mode", default="auto", choices=("auto", "ulysses", "ring"))
    p.add_argument("--no-compile", action="store_true", help="do not torch.compile the blocks on CUDA")
    p.add_argument("--no-single", action="store_true", help="skip the single-process baseline")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds to wait for one group")
    p.add_argument("--out", default=os.environ.get("OUT") or str(ROOT / "bench" / "results"))
    args = p.parse_args(argv)
    visible = torch.cuda.device_count() if args.device == "cuda" else os.cpu_count() or 1
    worlds = [int(n) for n in args.gpus.split(",") if n.strip()]
    res = {
        "env": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "device": torch.cuda.get_device_name(0)
            if args.device == "cuda" and visible
            else platform.processor(),
            "visible_gpus": visible if args.device == "cuda" else 0,
            "tiny": args.tiny,
            "size": "tiny 9x32x48" if args.tiny else f"121x{args.height}x{args.width}",
            "steps_timed": args.steps,
        },
        "runs": [],
    }
    if not args.no_single:
        res["runs"].append(run_group(args, 1, parallel=False))
    for world in worlds:
        if args.device == "cuda" and world > visible:
            res["runs"].append(
                {"world_size": world, "parallel": True, "skipped": f"{visible} GPU(s) visible"}
            )
            continue
        res["runs"].append(run_group(args, world, parallel=True))
    base = next((r["step_s"] for r in res["runs"] if not r["parallel"] and "step_s" in r), None)
    if base is None:
        base = next((r["step_s"] for r in res["runs"] if r.get("world_size") == 1 and "step_s" in r), None)
    for r in res["runs"]:
        if base and "step_s" in r:
            r["speedup"] = base / r["step_s"]
            r["efficiency"] = base / (r["world_size"] * r["step_s"])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / ("diffusion_parallel_tiny.json" if args.tiny else "diffusion_parallel.json")
    path.write_text(json.dumps(res, indent=2) + "\n")
    print_table(res)
    print(f"saved {path}")
    return 1 if any("error" in r for r in res["runs"]) else 0


def print_table(res: dict) -> None:
    env = res["env"]
    print(f"# GEN3C DiT on N ranks, {env['size']}, {env['device']}, torch {env['torch']}")
    print(
        "| N | code | layout | forward s | step s | 35-step chunk s | speed-up | efficiency | peak GiB/GPU |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in res["runs"]:
        code = "worker group" if r["parallel"] else "single process"
        if "skipped" in r or "error" in r:
            print(f"| {r['world_size']} | {code} | {r.get('skipped') or 'ERROR ' + r['error']} |||||||")
            continue
        peak = "-" if r["peak_gib"] is None else f"{r['peak_gib']:.1f}"
        print(
            f"| {r['world_size']} | {code} | {r['layout']} | {r['forward_s']:.3f} | {r['step_s']:.3f} | "
            f"{r['chunk_s']:.1f} | {r.get('speedup', 0):.2f}x | {100 * r.get('efficiency', 0):.0f}% | {peak} |"
        )


if __name__ == "__main__":
    sys.exit(main())
