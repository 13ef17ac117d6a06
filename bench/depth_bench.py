"""Depth service speed: ms per image for the raw MoGe call vs the same call through the gRPC service.

Full run (GPU): a ViT-L-shaped MoGe v1 (the shape of Ruicheng/moge-vitl) with random weights, inference at
720x1280 in fp16, GEN3C working size 704x1280; the service runs as a real subprocess
(``python -m objvid.depth serve``) on loopback; inputs as raw uint8 tensors and as PNG bytes.
Target: service overhead (service ms - raw model ms) <= 10% of the raw model time.

    python bench/depth_bench.py                      # GPU, full size
    python bench/depth_bench.py --small --device cpu # CPU smoke run at tiny size

Works from a plain checkout (no ``pip install``): if ``objvid`` is not importable it is mapped from
protos/ and services/; a missing ``huggingface_hub`` is replaced by a stub (local checkpoints only).
Writes JSON to $OUT (if set) or bench/results/, and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import queue
import re
import subprocess
import sys
import tempfile
import threading
import time
import types
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _bootstrap() -> None:
    """Make ``objvid.depth`` and ``moge`` importable without installing this repository."""
    try:
        import huggingface_hub  # noqa: F401
    except ImportError:
        stub = types.ModuleType("huggingface_hub")

        def hf_hub_download(*_args, **_kwargs):
            raise RuntimeError("huggingface_hub is not installed (bench stub): use a local checkpoint path")

        stub.hf_hub_download = hf_hub_download
        stub.constants = types.SimpleNamespace(HF_HUB_CACHE="~/.cache/huggingface/hub")
        sys.modules["huggingface_hub"] = stub
    try:
        import objvid.depth  # noqa: F401
    except ImportError:
        sys.path.insert(0, str(ROOT / "protos"))
        import objvid

        objvid.__path__.append(str(ROOT / "services"))  # objvid.depth -> services/depth


def _serve_child(argv: list[str]) -> int:
    """Run ``objvid-depth serve`` in this process (used for the server subprocess)."""
    _bootstrap()
    from objvid.depth.cli import main

    return main(["serve", *argv])


# ---------------------------------------------------------------------------------------------------


def synthetic_photo(h: int, w: int, seed: int = 0):
    """A photo-like (H, W, 3) uint8 image: smooth gradients, blobs and mild noise (PNG compresses it like
    a real photo rather than like white noise)."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    base = np.stack([xx / w, yy / h, 0.5 + 0.5 * np.sin(xx / 37.0 + yy / 53.0)], -1) * 180
    blobs = cv2.resize(
        rng.random((h // 40 + 1, w // 40 + 1, 3), dtype=np.float32), (w, h), interpolation=cv2.INTER_CUBIC
    )
    img = base + 60 * blobs + rng.normal(0, 4, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn, iters: int, warmup: int, device=None) -> list[float]:
    """Per-call wall times in ms (after ``warmup`` untimed calls)."""
    for _ in range(warmup):
        fn()
    if device is not None:
        _sync(device)
    out = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        if device is not None:
            _sync(device)
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def _stats(samples: list[float], per: int) -> dict:
    import numpy as np

    a = np.asarray(samples) / per
    return {"mean_ms": float(a.mean()), "p50_ms": float(np.median(a)), "p90_ms": float(np.percentile(a, 90))}


def _start_server(ckpt: str, args, settings: dict) -> tuple[subprocess.Popen, str, int]:
    cmd = [sys.executable, str(pathlib.Path(__file__).resolve()), "--serve-child", "--", "--model", ckpt]
    cmd += ["--host", "127.0.0.1", "--port", "0", "--metrics-host", "127.0.0.1", "--metrics-port", "0"]
    cmd += ["--device", args.device, "--dtype", args.dtype, "--micro-batch", str(max(args.batches))]
    cmd += ["--max-images", str(max(args.batches)), "--num-tokens", str(settings["num_tokens"])]
    cmd += ["--infer-height", str(settings["infer_hw"][0]), "--infer-width", str(settings["infer_hw"][1])]
    cmd += ["--height", str(settings["working_hw"][0]), "--width", str(settings["working_hw"][1])]
    env = dict(os.environ)
    if args.cpu_threads:  # CPU runs: the same torch threads as the raw-model rows
        env["OMP_NUM_THREADS"] = str(args.cpu_threads)
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    lines: queue.Queue = queue.Queue()

    def pump():
        for line in proc.stderr:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    seen = []
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        if line is None:
            raise RuntimeError("depth server exited:\n" + "".join(seen))
        seen.append(line)
        m = re.search(r"event=ready address=([\d.]+:\d+) metrics_port=(\d+)", line)
        if m:
            return proc, m.group(1), int(m.group(2))
    raise RuntimeError("depth server did not become ready:\n" + "".join(seen))


def _stage_sums(metrics_port: int) -> dict[str, float]:
    """Server-side seconds spent per stage so far (objvid_depth_stage_seconds_sum)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as r:
        text = r.read().decode()
    found = re.findall(r'objvid_depth_stage_seconds_sum\{stage="(\w+)"\} ([0-9.e+-]+)', text)
    return {k: float(v) for k, v in found}


def run(args) -> dict:
    _bootstrap()
    import grpc
    import numpy as np
    import torch

    from objvid import wire
    from objvid.depth import lift
    from objvid.depth.model import load_model
    from objvid.depth.random_model import SMALL_V1_CONFIG, VITL_V1_CONFIG, build_random, save_checkpoint
    from objvid.v1 import depth_pb2, depth_pb2_grpc

    if args.small:
        config, settings = (
            SMALL_V1_CONFIG,
            {"infer_hw": (144, 256), "working_hw": (128, 256), "num_tokens": 64},
        )
    else:
        config, settings = (
            VITL_V1_CONFIG,
            {"infer_hw": (720, 1280), "working_hw": (704, 1280), "num_tokens": 0},
        )
    tmp = tempfile.mkdtemp(prefix="depth-bench-")
    ckpt = os.path.join(tmp, "moge-random.pt")
    t0 = time.perf_counter()
    save_checkpoint(build_random(config, "v1", seed=0), config, ckpt)
    build_s = time.perf_counter() - t0

    on_cpu = args.device == "cpu" or (args.device == "auto" and not torch.cuda.is_available())
    if on_cpu:
        torch.set_num_threads(args.cpu_threads)
    else:
        args.cpu_threads = None  # GPU runs keep the default CPU threading, bench and server alike
    model = load_model(ckpt, device=args.device, dtype=args.dtype, num_tokens=settings["num_tokens"])
    dev = model.device
    ih, iw = settings["infer_hw"]
    wh, ww = settings["working_hw"]
    photo = synthetic_photo(ih, iw)
    rows: list[dict] = []
    result = {
        "bench": "depth",
        "mode": "small" if args.small else "full",
        "model": "MoGe v1 "
        + ("ViT-S small" if args.small else "ViT-L (moge-vitl shape)")
        + ", random weights",
        "params_m": round(sum(p.numel() for p in model.net.parameters()) / 1e6, 1),
        "device": str(dev),
        "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu",
        "dtype": model.dtype_name,
        "infer_hw": [ih, iw],
        "working_hw": [wh, ww],
        "num_tokens": model.num_tokens or f"level {model.resolution_level}",
        "torch": torch.__version__,
        "cpu_threads": args.cpu_threads,
        "iters": args.iters,
        "build_and_save_s": round(build_s, 2),
        "rows": rows,
    }

    # Raw model: the MoGe call alone on an input already on the device at the inference size.
    for b in args.batches:
        x = lift.images_to_tensor([photo] * b, dev)
        raw = _time(lambda x=x, m=model: m(x), args.iters, args.warmup, dev)
        core = _time(
            lambda b=b, m=model: lift.lift_batch(m, [photo] * b, (wh, ww), dev), args.iters, args.warmup, dev
        )
        rows.append({"path": "raw model call", "batch": b, **_stats(raw, b)})
        rows.append(
            {"path": "lift core in-process (upload+model+GEN3C post+download)", "batch": b, **_stats(core, b)}
        )
    del model
    if dev.type == "cuda":
        torch.cuda.empty_cache()

    # Response encoding alone, one view at the working size: protobuf objects vs the direct encoder.
    from objvid.depth.encode import build_response, encode_response

    view = lift.LiftedView(
        np.full((wh, ww), 3.0, np.float32),
        np.ones((wh, ww), bool),
        np.eye(3),
        np.zeros((wh, ww, 3), np.uint8),
    )
    result["encode_one_view_ms"] = {
        "protobuf_objects": _stats(_time(lambda: build_response([view], "m").SerializeToString(), 20, 3), 1)[
            "p50_ms"
        ],
        "direct": _stats(_time(lambda: encode_response([view], "m"), 20, 3), 1)["p50_ms"],
    }

    # Through the service: subprocess server on loopback, end-to-end client calls.
    proc, address, metrics_port = _start_server(ckpt, args, settings)
    try:
        channel = wire.make_channel(address)
        grpc.channel_ready_future(channel).result(timeout=60)
        stub = depth_pb2_grpc.DepthServiceStub(channel)
        inputs = {"raw": wire.encode_image(photo), "png": wire.encode_image(photo, png=True)}
        result["png_bytes"] = len(inputs["png"].encoded)
        for b in args.batches:
            for kind, image in inputs.items():
                req = depth_pb2.LiftRequest(images=[image] * b)

                def call(req=req):
                    resp = stub.Lift(req, timeout=120)
                    for v in resp.views:  # what a client does with the answer (zero-copy views)
                        wire.decode_tensor(v.depth)
                        wire.decode_tensor(v.mask)
                        wire.decode_tensor(v.image.pixels)

                before = _stage_sums(metrics_port)
                samples = _time(call, args.iters, args.warmup)
                after = _stage_sums(metrics_port)
                calls = (args.iters + args.warmup) * b
                stages = {k: round(1e3 * (v - before.get(k, 0.0)) / calls, 3) for k, v in after.items()}
                rows.append(
                    {
                        "path": f"service, {kind} input",
                        "batch": b,
                        **_stats(samples, b),
                        "server_stage_ms": stages,
                    }
                )
        channel.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    os.remove(ckpt)
    os.rmdir(tmp)

    for b in args.batches:
        model_ms = next(r["mean_ms"] for r in rows if r["path"] == "raw model call" and r["batch"] == b)
        for r in rows:
            if r["batch"] == b and r["path"] != "raw model call":
                r["overhead_ms"] = r["mean_ms"] - model_ms
                r["overhead_pct"] = 100.0 * r["overhead_ms"] / model_ms
    raw_rows = [r for r in rows if r["path"] == "service, raw input"]
    result["target"] = "service overhead <= 10% of the raw model time (raw input)"
    result["target_met"] = all(r["overhead_pct"] <= 10.0 for r in raw_rows)
    return result


def print_table(result: dict) -> None:
    print(
        f"\ndepth bench: {result['model']} ({result['params_m']}M params), {result['device']} {result['gpu']}, "
        f"{result['dtype']}, infer {result['infer_hw'][0]}x{result['infer_hw'][1]} -> "
        f"{result['working_hw'][0]}x{result['working_hw'][1]}, {result['iters']} iters"
    )
    header = f"{'path':<58} {'batch':>5} {'ms/img':>9} {'p50':>9} {'p90':>9} {'overhead':>16}"
    print(header)
    print("-" * len(header))
    for r in result["rows"]:
        over = f"{r['overhead_ms']:+.2f} ({r['overhead_pct']:+.1f}%)" if "overhead_ms" in r else ""
        print(
            f"{r['path']:<58} {r['batch']:>5} {r['mean_ms']:>9.2f} {r['p50_ms']:>9.2f} {r['p90_ms']:>9.2f} {over:>16}"
        )
        if "server_stage_ms" in r:
            stages = ", ".join(f"{k} {v:.2f}" for k, v in r["server_stage_ms"].items())
            print(f"{'':<6}server stages ms/img: {stages}")
    enc = result["encode_one_view_ms"]
    print(
        f"encode one view: protobuf objects {enc['protobuf_objects']:.2f} ms, direct {enc['direct']:.2f} ms"
    )
    print(f"target ({result['target']}): {'met' if result['target_met'] else 'NOT met'}")


def main(argv=None) -> dict | int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--serve-child"]:
        return _serve_child(argv[2:] if argv[1:2] == ["--"] else argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="ViT-S model at 144x256 (CPU smoke run)")
    parser.add_argument("--device", default="auto", help="auto, cuda, cpu")
    parser.add_argument("--dtype", default="auto", help="auto (fp16 on CUDA), float16, float32")
    parser.add_argument(
        "--iters", type=int, default=None, help="timed calls per row (default 30; 5 with --small)"
    )
    parser.add_argument(
        "--warmup", type=int, default=None, help="untimed calls first (default 5; 2 with --small)"
    )
    parser.add_argument(
        "--batches", default=None, help="comma-separated batch sizes (default 1,4; 1,2 with --small)"
    )
    parser.add_argument(
        "--cpu-threads",
        type=int,
        default=1,
        help="CPU runs: torch threads, bench and server alike (default 1)",
    )
    parser.add_argument("--out", default=None, help="output folder (default $OUT or bench/results)")
    args = parser.parse_args(argv)
    args.iters = args.iters or (5 if args.small else 30)
    args.warmup = args.warmup or (2 if args.small else 5)
    args.batches = [int(b) for b in (args.batches or ("1,2" if args.small else "1,4")).split(",")]
    result = run(args)
    out_dir = pathlib.Path(args.out or os.environ.get("OUT") or ROOT / "bench" / "results")
    out_dir.mkdir(parents=True, exist_ok=True)
    name = "depth_bench_small.json" if args.small else "depth_bench.json"
    (out_dir / name).write_text(json.dumps(result, indent=2) + "\n")
    print_table(result)
    print(f"wrote {out_dir / name}")
    return result


if __name__ == "__main__":
    out = main()
    sys.exit(out if isinstance(out, int) else 0)
