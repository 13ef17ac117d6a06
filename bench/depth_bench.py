"""Depth service speed: ms per image for the raw MoGe call vs the same call through the gRPC service.

Full run (GPU): a ViT-L-shaped MoGe v1 (the shape of Ruicheng/moge-vitl) with random weights, inference at
720x1280 in fp16, GEN3C working size 704x1280; the service runs as a real subprocess
(``objvid-depth serve``'s code) on loopback; inputs as raw uint8 tensors and as PNG bytes.
Target: service overhead (service ms - raw model ms) <= 10% of the raw model time.

Rows: the raw model call with upstream MoGe kernels (CUDA) and with the server's fast paths (``fast.py``;
their outputs compared), the in-process lift core; servers whose model answers at once (``NoopModel``)
give the service's own cost (decode, upload, GEN3C post-processing, downloads, encode, gRPC transport),
with and without glibc malloc tuning (``objvid.runtime.malloc.tune_malloc``) on server and client; the real server with one
client (sequential calls; server stage times scraped after the warm-up calls) and with ``--clients``
concurrent clients (throughput). The overhead of a service row is its time minus the raw model call
(with the fast paths, as the server runs it); a no-op row is all overhead. Bench and servers use the
same torch thread count. Diagnostics: the lift core's first calls on a fresh thread (cuDNN plans are
cached per thread) and, on CUDA, a profile of one model call (``depth_profile.txt``).

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

    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn, iters: int, warmup: int, device=None) -> list[float]:
    """Per-call wall times in ms (after ``warmup`` untimed calls)."""
    for _ in range(warmup):
        fn()
    _sync(device)
    out = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def _time_concurrent(fn, clients: int, iters: int, warmup: int) -> tuple[float, list[float]]:
    """``clients`` threads each make ``warmup`` untimed then ``iters`` timed calls of ``fn``.

    Returns (wall ms of the timed phase, per-call ms of every timed call)."""
    from concurrent.futures import ThreadPoolExecutor

    def loop(n: int) -> list[float]:
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            fn()
            out.append((time.perf_counter() - t0) * 1e3)
        return out

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(loop, [warmup] * clients))
        t0 = time.perf_counter()
        per_call = [ms for part in pool.map(loop, [iters] * clients) for ms in part]
        wall = (time.perf_counter() - t0) * 1e3
    return wall, per_call


def _stats(samples: list[float], per: int) -> dict:
    import numpy as np

    a = np.asarray(samples) / per
    return {"mean_ms": float(a.mean()), "p50_ms": float(np.median(a)), "p90_ms": float(np.percentile(a, 90))}


def _server_cmd(child: str, ckpt: str, args, settings: dict) -> list[str]:
    cmd = [sys.executable, str(pathlib.Path(__file__).resolve()), child, "--", "--model", ckpt]
    cmd += ["--host", "127.0.0.1", "--port", "0", "--metrics-host", "127.0.0.1", "--metrics-port", "0"]
    cmd += ["--device", args.device, "--dtype", args.dtype, "--micro-batch", str(max(args.batches))]
    cmd += ["--max-images", str(max(args.batches)), "--num-tokens", str(settings["num_tokens"])]
    cmd += ["--infer-height", str(settings["infer_hw"][0]), "--infer-width", str(settings["infer_hw"][1])]
    cmd += ["--height", str(settings["working_hw"][0]), "--width", str(settings["working_hw"][1])]
    cmd += ["--torch-threads", str(args.torch_threads)]
    return cmd


class _Server:
    """A depth server subprocess; ``ready()`` waits for its ``event=ready`` line."""

    def __init__(self, cmd: list[str], env: dict):
        self.proc = subprocess.Popen(
            cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env
        )
        self.lines: queue.Queue = queue.Queue()
        self.seen: list[str] = []
        self._ready: tuple[str, int, str] | None = None
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.proc.stderr:
            self.lines.put(line)
        self.lines.put(None)

    def ready(self, timeout: float = 600) -> tuple[str, int, str]:
        """(address, metrics port, the ready line); waits for it on the first call only."""
        if self._ready is None:
            self._ready = self._wait_ready(timeout)
        return self._ready

    def _wait_ready(self, timeout: float) -> tuple[str, int, str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            if line is None:
                raise RuntimeError("depth server exited:\n" + "".join(self.seen))
            self.seen.append(line)
            m = re.search(r"event=ready address=([\d.]+:\d+) metrics_port=(\d+)", line)
            if m:
                return m.group(1), int(m.group(2)), line.strip()
        raise RuntimeError("depth server did not become ready:\n" + "".join(self.seen))

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _stage_sums(metrics_port: int) -> dict[str, float]:
    """Server-side seconds spent per stage so far (objvid_depth_stage_seconds_sum)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as r:
        text = r.read().decode()
    found = re.findall(r'objvid_depth_stage_seconds_sum\{stage="(\w+)"\} ([0-9.e+-]+)', text)
    return {k: float(v) for k, v in found}


class NoopModel:
    """Stands in for MoGe in the no-op server: answers a fixed prediction at once, so the service's time
    is everything but the model (decode, upload, GEN3C post-processing, downloads, encode, transport)."""

    name = "noop"
    version = "noop"
    dtype_name = "-"

    def __init__(self, device):
        import torch

        self.device = torch.device(device)
        self._k = torch.tensor([[0.8, 0, 0.5], [0, 1.4, 0.5], [0, 0, 1]], device=self.device)

    def __call__(self, images):
        import torch

        from objvid.depth import lift

        b, _, h, w = images.shape
        depth = torch.full((b, h, w), 2.0, device=self.device)
        mask = torch.ones((b, h, w), dtype=torch.bool, device=self.device)
        return lift.Prediction(depth, mask, self._k.expand(b, 3, 3))


def _serve_noop_child(argv: list[str]) -> int:
    """The depth server with ``NoopModel`` instead of the checkpoint (same flags as ``serve``)."""
    _bootstrap()
    import logging

    from objvid.depth import cli
    from objvid.depth.model import pick_device
    from objvid.depth.server import DepthServer
    from objvid.runtime import config as cfg

    logging.basicConfig(level="INFO", format="%(asctime)s %(message)s", stream=sys.stderr)
    config = cli.config_from_options(cfg.parse(cli.cli, ["serve", *argv]))
    server = DepthServer(config).listen()
    server.load(model=NoopModel(pick_device(config.device)))
    threading.Event().wait()
    return 0


def _profile(model, x, out_dir: pathlib.Path, calls: int = 3) -> dict:
    """torch.profiler over ``calls`` model calls: device busy time per call and the top kernels."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        t0 = time.perf_counter()
        for _ in range(calls):
            model(x)
        torch.cuda.synchronize(model.device)
        wall = (time.perf_counter() - t0) * 1e3 / calls
    events = prof.key_averages()

    def dev(e):
        return getattr(e, "self_device_time_total", None) or getattr(e, "self_cuda_time_total", 0.0)

    # Count kernels only: an op's self device time repeats its kernels' time.
    kernels = [e for e in events if getattr(e, "device_type", None) == torch.autograd.DeviceType.CUDA]
    kernels = kernels or list(events)
    busy = sum(dev(e) for e in kernels) / 1e3 / calls
    top = sorted(kernels, key=dev, reverse=True)[:12]
    lines = [f"{dev(e) / 1e3 / calls:9.3f} ms/call  {e.count // calls:5d}x  {e.key[:90]}" for e in top]
    cpu_ops = sum(e.count for e in events if e.key.startswith("aten::")) // calls
    (out_dir / "depth_profile.txt").write_text(
        f"wall {wall:.2f} ms/call (profiled), device busy {busy:.2f} ms/call, aten ops {cpu_ops}/call\n"
        + "\n".join(lines)
        + "\n"
    )
    return {
        "wall_ms_profiled": round(wall, 2),
        "device_busy_ms": round(busy, 2),
        "aten_ops_per_call": cpu_ops,
        "top_device": lines[:6],
    }


def _compare(ref, out) -> dict:
    """Fast paths vs upstream on the same input: depth relative L2 over pixels valid in both, the share of
    mask pixels that differ, the largest relative intrinsics difference."""
    import torch

    both = ref.mask & out.mask
    d_ref, d_out = ref.depth[both].double(), out.depth[both].double()
    rel = (torch.linalg.vector_norm(d_out - d_ref) / torch.linalg.vector_norm(d_ref)).item()
    k_rel = ((out.intrinsics - ref.intrinsics).abs() / ref.intrinsics.abs().clamp_min(1e-6)).max().item()
    return {
        "depth_rel_l2": float(f"{rel:.3g}"),
        "mask_mismatch": float(f"{(ref.mask != out.mask).double().mean().item():.3g}"),
        "intrinsics_max_rel": float(f"{k_rel:.3g}"),
        "nan": bool(torch.isnan(out.depth).any().item()),
    }


def _fresh_thread_calls(fn, calls: int = 2) -> list[float]:
    """ms of the first ``calls`` calls of ``fn`` on a new thread (cuDNN plans are cached per thread)."""
    out: list[float] = []

    def body():
        for _ in range(calls):
            t0 = time.perf_counter()
            fn()
            out.append(round((time.perf_counter() - t0) * 1e3, 2))

    t = threading.Thread(target=body)
    t.start()
    t.join()
    return out


def run(args) -> dict:
    _bootstrap()
    import grpc
    import numpy as np
    import torch

    from objvid.depth import lift
    from objvid.depth.fast import apply_fast_paths
    from objvid.depth.model import load_model
    from objvid.depth.server import set_torch_threads
    from objvid.runtime import channels, wire
    from objvid.runtime.malloc import tune_malloc
    from objvid.testing.depth_model import SMALL_V1_CONFIG, VITL_V1_CONFIG, build_random, save_checkpoint
    from objvid.v1 import depth_pb2, depth_pb2_grpc

    out_dir = pathlib.Path(args.out or os.environ.get("OUT") or ROOT / "bench" / "results")
    out_dir.mkdir(parents=True, exist_ok=True)
    out_file = out_dir / ("depth_bench_small.json" if args.small else "depth_bench.json")
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

    model = load_model(
        ckpt, device=args.device, dtype=args.dtype, num_tokens=settings["num_tokens"], fast_kernels=False
    )
    dev = model.device
    # Same torch threads here as in the servers (--torch-threads: 0 = the server's auto rule).
    torch_threads = set_torch_threads(args.torch_threads, dev)
    ih, iw = settings["infer_hw"]
    wh, ww = settings["working_hw"]
    photo = synthetic_photo(ih, iw)
    rows: list[dict] = []
    result = {
        "bench": "depth",
        "date": time.strftime("%Y-%m-%d"),
        "mode": "small" if args.small else "full",
        "model": "MoGe v1 "
        + ("ViT-S small" if args.small else "ViT-L (moge-vitl shape)")
        + ", random weights",
        "params_m": round(sum(p.numel() for p in model.net.parameters()) / 1e6, 1),
        "device": str(dev),
        "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu",
        "host_cpus": os.cpu_count(),
        "dtype": model.dtype_name,
        "infer_hw": [ih, iw],
        "working_hw": [wh, ww],
        "num_tokens": model.num_tokens or f"level {model.resolution_level}",
        "torch": torch.__version__,
        "torch_threads": torch_threads,
        "iters": args.iters,
        "warmup": args.warmup,
        "clients": args.clients,
        "build_and_save_s": round(build_s, 2),
        "rows": rows,
        "diagnostics": {},
    }
    diag = result["diagnostics"]

    def save():
        out_file.write_text(json.dumps(result, indent=2) + "\n")

    # Raw model: the MoGe call alone on an input already on the device at the inference size; first with
    # upstream's kernels (reference), then with the fast paths the server uses on CUDA (fast.py).
    inputs_dev = {b: lift.images_to_tensor([photo] * b, dev) for b in args.batches}
    upstream = {}
    if dev.type == "cuda":
        for b, x in inputs_dev.items():
            upstream[b] = model(x)
            raw = _time(lambda x=x, m=model: m(x), args.iters, args.warmup, dev)
            rows.append({"path": "raw model call, upstream kernels", "batch": b, **_stats(raw, b)})
            save()
        diag["fast_paths"] = apply_fast_paths(model.net)
        diag["fast_vs_upstream"] = {b: _compare(upstream[b], model(x)) for b, x in inputs_dev.items()}
        del upstream
    for b, x in inputs_dev.items():
        raw = _time(lambda x=x, m=model: m(x), args.iters, args.warmup, dev)
        core = _time(
            lambda b=b, m=model: lift.lift_batch(m, [photo] * b, (wh, ww), dev), args.iters, args.warmup, dev
        )
        rows.append({"path": "raw model call", "batch": b, **_stats(raw, b)})
        rows.append(
            {"path": "lift core in-process (upload+model+GEN3C post+download)", "batch": b, **_stats(core, b)}
        )
        save()
    # Why a dedicated inference thread: the first calls of the warm lift core on a fresh thread.
    diag["lift_core_b1_fresh_thread_first_calls_ms"] = _fresh_thread_calls(
        lambda m=model: lift.lift_batch(m, [photo], (wh, ww), dev)
    )
    if dev.type == "cuda" and args.profile:
        try:
            diag["profile_b1"] = _profile(model, inputs_dev[min(args.batches)], out_dir)
        except Exception as exc:  # the profiler is a diagnostic; never lose the run to it
            diag["profile_b1"] = f"failed: {type(exc).__name__}: {exc}"
    del inputs_dev
    save()
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

    # Through the service, all servers subprocesses on loopback: two no-op-model servers (glibc malloc
    # untuned / tuned, see objvid.runtime.malloc.tune_malloc), then the real one. The bench client tunes its own malloc only after
    # the first two no-op rows, so those rows show what the tuning is worth on either side.
    env = dict(os.environ)
    if dev.type == "cpu":
        env["OMP_NUM_THREADS"] = str(torch_threads)
    servers = {
        "noop-untuned": _Server(
            _server_cmd("--serve-noop-child", ckpt, args, settings) + ["--no-malloc-tuning"], env
        ),
        "noop": _Server(_server_cmd("--serve-noop-child", ckpt, args, settings), env),
        "model": _Server(_server_cmd("--serve-child", ckpt, args, settings), env),
    }
    inputs = {"raw": wire.encode_image(photo), "png": wire.encode_image(photo, png=True)}
    result["png_bytes"] = len(inputs["png"].encoded)
    phases = [  # (server, row label, input kinds, tune the client's malloc first)
        ("noop-untuned", "service, no-op model, raw input, malloc untuned", ["raw"], False),
        ("noop", "service, no-op model, raw input, client malloc untuned", ["raw"], False),
        ("noop", "service, no-op model, raw input", ["raw"], True),
        ("model", "service, {kind} input", ["raw", "png"], True),
    ]
    client_tuned = False
    try:
        for server in servers.values():  # all loaded and warm before anything is timed
            server.ready()
        for name, label, kinds, tune_client in phases:
            if tune_client and not client_tuned and args.client_malloc_tuning:
                client_tuned = diag["client_malloc_tuned"] = tune_malloc()
            address, metrics_port, ready = servers[name].ready()
            diag[f"server_ready_{name}"] = ready.split("event=ready ", 1)[-1]
            channel = channels.make_channel(address)
            grpc.channel_ready_future(channel).result(timeout=60)
            stub = depth_pb2_grpc.DepthServiceStub(channel)
            for b in args.batches:
                for kind in kinds:
                    req = depth_pb2.LiftRequest(images=[inputs[kind]] * b)

                    def call(req=req, stub=stub):
                        _lift_and_read(stub, req)

                    for _ in range(args.warmup):
                        call()
                    before = _stage_sums(metrics_port)
                    samples = _time(call, args.iters, 0)
                    stages = _stage_delta(before, _stage_sums(metrics_port), args.iters * b)
                    row = {"path": label.format(kind=kind), "batch": b, **_stats(samples, b)}
                    rows.append({**row, "server_stage_ms": stages})
                    save()
                if name == "model" and args.clients > 1:
                    req = depth_pb2.LiftRequest(images=[inputs["raw"]] * b)
                    before = _stage_sums(metrics_port)
                    wall, per_call = _time_concurrent(
                        lambda req=req, stub=stub: _lift_and_read(stub, req),
                        args.clients,
                        args.iters,
                        args.warmup,
                    )
                    images = args.clients * args.iters * b
                    stages = _stage_delta(before, _stage_sums(metrics_port), None)
                    stats = _stats(per_call, b)
                    stats["mean_ms"] = wall / images  # throughput: wall time per image
                    stats["server_stage_ms"] = {k: round(v * 1e3 / images, 3) for k, v in stages.items()}
                    rows.append({"path": f"service, raw input, {args.clients} clients", "batch": b, **stats})
                    save()
            channel.close()
    finally:
        for server in servers.values():
            server.stop()
    os.remove(ckpt)
    os.rmdir(tmp)

    for b in args.batches:
        model_ms = next(r["mean_ms"] for r in rows if r["path"] == "raw model call" and r["batch"] == b)
        for r in rows:
            if r["batch"] != b or r["path"].startswith("raw model call"):
                continue
            # A no-op-model row is all overhead: its whole time, as a share of the raw model time.
            r["overhead_ms"] = r["mean_ms"] if "no-op" in r["path"] else r["mean_ms"] - model_ms
            r["overhead_pct"] = 100.0 * r["overhead_ms"] / model_ms
            if "server_stage_ms" in r and "clients" not in r["path"]:
                r["client_minus_stages_ms"] = round(r["mean_ms"] - sum(r["server_stage_ms"].values()), 3)
    seq = [r for r in rows if r["path"] == "service, raw input"]
    conc = [r for r in rows if r["path"].startswith("service, raw input, ")]
    result["target"] = "service overhead <= 10% of the raw model time (raw input)"
    result["target_met"] = all(r["overhead_pct"] <= 10.0 for r in seq)
    result["target_met_one_client"] = result["target_met"]
    result["target_met_concurrent_clients"] = bool(conc) and all(r["overhead_pct"] <= 10.0 for r in conc)
    save()
    return result


def _lift_and_read(stub, request) -> None:
    """One Lift call and what a client does with the answer: zero-copy array views of every output."""
    from objvid.runtime import wire

    for v in stub.Lift(request, timeout=120).views:
        wire.decode_tensor(v.depth)
        wire.decode_tensor(v.mask)
        wire.decode_tensor(v.image.pixels)


def _stage_delta(before: dict, after: dict, images: int | None) -> dict:
    """Server stage seconds between two scrapes: ms per image when ``images`` is given, else seconds."""
    delta = {k: v - before.get(k, 0.0) for k, v in after.items()}
    if images is None:
        return delta
    return {k: round(1e3 * v / images, 3) for k, v in delta.items()}


def print_table(result: dict) -> None:
    print(
        f"\ndepth bench: {result['model']} ({result['params_m']}M params), {result['device']} {result['gpu']}, "
        f"{result['dtype']}, infer {result['infer_hw'][0]}x{result['infer_hw'][1]} -> "
        f"{result['working_hw'][0]}x{result['working_hw'][1]}, {result['iters']} iters, "
        f"torch threads {result['torch_threads']}"
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
            rest = r.get("client_minus_stages_ms")
            rest = f"; client - stages {rest:.2f}" if rest is not None else ""
            print(f"{'':<6}server stages ms/img: {stages}{rest}")
    print(
        "(rows with N clients: ms/img = wall time / images (throughput); p50/p90 = per-call latency / batch)"
    )
    enc = result["encode_one_view_ms"]
    print(
        f"encode one view: protobuf objects {enc['protobuf_objects']:.2f} ms, direct {enc['direct']:.2f} ms"
    )
    for k, v in result["diagnostics"].items():
        print(f"{k}: {v}")
    print(
        f"target ({result['target']}): one client {'met' if result['target_met'] else 'NOT met'}; "
        f"{result['clients']} concurrent clients {'met' if result['target_met_concurrent_clients'] else 'NOT met'}"
    )


def main(argv=None) -> dict | int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["--serve-child"], ["--serve-noop-child"]):
        child = _serve_child if argv[0] == "--serve-child" else _serve_noop_child
        return child(argv[2:] if argv[1:2] == ["--"] else argv[1:])
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
        "--torch-threads",
        type=int,
        default=None,
        help="torch CPU threads, bench and servers alike (default: 1 on CPU; on CUDA 0 = the server's auto)",
    )
    parser.add_argument(
        "--clients", type=int, default=2, help="concurrent clients for the pipelined rows (1 = skip them)"
    )
    parser.add_argument(
        "--profile",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="CUDA: profile one model call (device busy time, top kernels)",
    )
    parser.add_argument(
        "--client-malloc-tuning",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="tune this client's glibc malloc too (after the untuned no-op rows)",
    )
    parser.add_argument("--out", default=None, help="output folder (default $OUT or bench/results)")
    args = parser.parse_args(argv)
    args.iters = args.iters or (5 if args.small else 30)
    args.warmup = args.warmup or (2 if args.small else 5)
    args.batches = [int(b) for b in (args.batches or ("1,2" if args.small else "1,4")).split(",")]
    if args.torch_threads is None:
        on_cpu = args.device == "cpu" or (args.device == "auto" and not _cuda_available())
        args.torch_threads = 1 if on_cpu else 0
    result = run(args)
    print_table(result)
    return result


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


if __name__ == "__main__":
    out = main()
    sys.exit(out if isinstance(out, int) else 0)
