"""Load test of the cache service: N concurrent clients x M per-frame ``Render`` calls.

Against a running server (``--address host:port``) or one it starts itself (``--spawn``, a subprocess
``python -m objvid.cache serve`` on 127.0.0.1). Each client is a thread with its own channel; every call
renders a different camera of a GEN3C-like lateral path on a synthetic RGB-D scene (one point per pixel,
optionally with an object). Prints throughput, p50/p99 latency, errors and server memory (RSS from
/proc or /metrics, device bytes from GetScene and /metrics), and writes JSON to ``--out`` (default
``$OUT/cache_load.json`` when $OUT is set, else ``bench/results/cache_load-<device>-<H>x<W>.json``).

GPU target (lead runs it): ``--spawn --device cuda --height 704 --width 1280 --outputs rgb,mask,depth
--clients 1,8 --transports grpc,grpc-compact,shm,shm-compact``: over gRPC p50 <= 15 ms and >= 100
frames/s with one client; same-host over shared memory (issue 18) p50 <= 8 ms and >= 150 frames/s.
``--transports`` runs the variants side by side in one run (table at the end). Clients are threads of this process by
default; ``--procs`` gives each its own process, so 8 clients do not share one GIL for decoding 7 MB
responses. ``--small`` is a seconds-long CPU run.

A call's latency ends when the client holds the frame as numpy arrays: ``--decode wire`` (default) reads
the raw response bytes with ``objvid.runtime.frames.decode_frame_bytes`` (views, no protobuf objects);
``--decode protobuf`` parses a ``RenderResponse`` once and decodes its images / tensors with ``objvid.runtime.wire``.
Per run it also reports where the time goes (means): server stages from ``/metrics``
(``objvid_cache_render_stage_seconds``: decode, queue, render, to_host, encode; the handler total), the
client's call and decode, their difference (gRPC + transport: request, response copies, HTTP/2, TCP), and
Python GC pauses on both sides.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

from objvid.runtime import channels, wire
from objvid.v1 import cache_pb2, cache_pb2_grpc, types_pb2

_OUTPUT_CODES = {"rgb": 1, "mask": 2, "depth": 3, "object_mask": 4}
_MODES = {"fused": 1, "full": 2, "scene": 3, "objects": 4}
_SPLATS = {"gen3c": 1, "zbuffer": 2}


def synthetic_rgbd(height: int, width: int, seed: int = 0):
    """A floor + back wall depth map with texture; K with f = 0.9 W. -> (image, depth, K)."""
    rng = np.random.default_rng(seed)
    v, u = np.mgrid[0:height, 0:width].astype(np.float32)
    f = 0.9 * width
    K = np.array([[f, 0, (width - 1) / 2], [0, f, (height - 1) / 2], [0, 0, 1]], np.float64)
    wall = np.full((height, width), 4.0, np.float32)
    y = (v - K[1, 2]) / f  # ray slope downwards
    floor = np.where(y > 1e-3, 1.2 / np.maximum(y, 1e-3), np.inf).astype(
        np.float32
    )  # camera 1.2 above the floor
    depth = np.minimum(wall, floor) * (1 + 0.02 * np.sin(u / 7.0)).astype(np.float32)
    image = np.stack([u * 255 / width, v * 255 / height, rng.integers(0, 256, (height, width))], -1).astype(
        np.uint8
    )
    return image, depth.astype(np.float32), K


def camera_path(count: int, distance: float = 0.3) -> np.ndarray:
    """(count, 4, 4) w2c: the camera slides left by up to ``distance`` (pure translation)."""
    w2cs = np.tile(np.eye(4), (count, 1, 1))
    w2cs[:, 0, 3] = np.linspace(0, distance, count)  # camera moves -x => world shifts +x in camera frame
    return w2cs


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_from_proc(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _scrape_text(url: str | None) -> str:
    if not url:
        return ""
    try:
        return urllib.request.urlopen(url, timeout=5).read().decode()
    except OSError:
        return ""


def _scrape(url: str | None) -> dict[str, float]:
    text = _scrape_text(url)
    out = {}
    for name in (
        "process_resident_memory_bytes",
        "objvid_cache_device_bytes",
        "objvid_cache_evictions_total",
    ):
        m = re.search(rf"^{name} ([0-9.e+]+)$", text, re.M)
        if m:
            out[name] = float(m.group(1))
    return out


_STAGES = ("decode", "queue", "render", "to_host", "encode")
#: Untimed Render calls per client before the timed ones.
WARMUP_CALLS = 5


def _server_timings(url: str | None) -> dict[str, float]:
    """Cumulative server timing samples: stage / handler sums and counts, GC pauses (seconds)."""
    text = _scrape_text(url)
    out = {}
    for m in re.finditer(r'^(objvid_cache_[a-z_]+)\{([a-z]+)="([A-Za-z0-9_]+)"\} ([0-9.e+-]+)$', text, re.M):
        name, _key, label, value = m.groups()
        if name.startswith("objvid_cache_render_stage_seconds_") or name.startswith("objvid_cache_gc_"):
            out[f"{name}:{label}"] = float(value)
        elif name.startswith("objvid_cache_request_seconds_") and label == "Render":
            out[name] = float(value)
    return out


def _server_breakdown(before: dict, after: dict) -> dict:
    """Mean ms per Render call of each server stage and the handler, GC pauses, between two scrapes."""

    def delta(key):
        return after.get(key, 0.0) - before.get(key, 0.0)

    calls = delta("objvid_cache_request_seconds_count")
    if calls <= 0:
        return {}
    out = {"calls": int(calls), "handler_ms": delta("objvid_cache_request_seconds_sum") / calls * 1e3}
    for st in _STAGES:
        n = delta(f"objvid_cache_render_stage_seconds_count:{st}")
        if n > 0:
            out[f"{st}_ms"] = delta(f"objvid_cache_render_stage_seconds_sum:{st}") / n * 1e3
    for g in range(3):
        out[f"gc{g}_runs"] = int(delta(f"objvid_cache_gc_collections_total:{g}"))
        out[f"gc{g}_ms_total"] = delta(f"objvid_cache_gc_pause_seconds_total:{g}") * 1e3
    return out


class SpawnedServer:
    """``python -m objvid.cache serve`` on 127.0.0.1, ports 0; reads the bound ports from its ready line."""

    def __init__(self, device: str, memory_budget: str, extra: list[str] | None = None):
        cmd = [sys.executable, "-m", "objvid.cache", "serve", "--host", "127.0.0.1", "--port", "0",
               "--device", device, "--memory-budget", memory_budget, "--metrics-port", "0",
               "--log-level", "warning", *(extra or [])]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        try:
            ready = json.loads(line)
        except ValueError:
            self.proc.kill()
            raise RuntimeError(
                f"server did not start (first line: {line!r}, exit {self.proc.poll()})"
            ) from None
        self.metrics_port = ready["metrics_port"]
        self.address = f"127.0.0.1:{ready['port']}"
        self.metrics_url = f"http://127.0.0.1:{self.metrics_port}/metrics"

    def rss(self) -> int | None:
        return _rss_from_proc(self.proc.pid)

    def stop(self) -> int:
        self.proc.terminate()
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def _make_channel(args):
    ca = Path(args.tls_ca).read_bytes() if args.tls_ca else None
    return channels.make_channel(args.address, tls_ca=ca)


def create_scene(stub, args, metadata) -> cache_pb2.SceneInfo:
    image, depth, K = synthetic_rgbd(args.height, args.width)
    view = cache_pb2.RgbdView(
        image=wire.encode_image(image), depth=wire.encode_tensor(depth),
        camera=wire.encode_camera(K, np.eye(4), args.width, args.height),
    )  # fmt: skip
    info = stub.CreateScene(cache_pb2.CreateSceneRequest(rgbd=view), metadata=metadata, timeout=300).scene
    if args.object_points:
        rng = np.random.default_rng(1)
        pts = (rng.random((args.object_points, 3)) - 0.5).astype(np.float32) * 0.5
        cols = rng.integers(0, 256, (args.object_points, 3), dtype=np.uint8)
        pose = types_pb2.Transform(pose=types_pb2.Pose(translation=[0.0, 0.6, 2.5]))
        stub.AddObject(
            cache_pb2.AddObjectRequest(
                scene_id=info.scene_id,
                cloud=types_pb2.PointCloud(
                    positions=wire.encode_tensor(pts), colors=wire.encode_tensor(cols)
                ),
                transform=pose,
            ),
            metadata=metadata,
            timeout=300,
        )
    return stub.GetScene(
        cache_pb2.GetSceneRequest(scene_id=info.scene_id), metadata=metadata, timeout=60
    ).scene


def _decoder(kind: str):
    """bytes of a RenderResponse -> dict of arrays (``objvid.runtime.frames.decode_frame_bytes`` layout)."""
    if kind == "wire":
        from objvid.runtime.frames import decode_frame_bytes

        return decode_frame_bytes

    def decode_protobuf(data: bytes) -> dict:
        frame = cache_pb2.RenderResponse.FromString(data).frame
        out = {"index": frame.index, "num_slots": frame.num_slots}
        if len(frame.rgb):
            out["rgb"] = np.stack([wire.decode_image(m) for m in frame.rgb])
        if len(frame.mask):
            out["mask"] = np.stack([wire.decode_image(m, grayscale=True) for m in frame.mask])
        if frame.HasField("depth"):
            out["depth"] = wire.decode_tensor(frame.depth)
        if frame.HasField("object_mask"):
            out["object_mask"] = wire.decode_tensor(frame.object_mask)
        return out

    return decode_protobuf


class _GcClock:
    """Python GC pause time of this process (gc.callbacks)."""

    def __init__(self) -> None:
        import gc

        self.seconds, self.runs, self.longest, self._t0 = 0.0, 0, 0.0, 0.0
        gc.callbacks.append(self._cb)

    def _cb(self, phase, info) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
        else:
            dt = time.perf_counter() - self._t0
            self.seconds, self.runs, self.longest = self.seconds + dt, self.runs + 1, max(self.longest, dt)

    def close(self) -> None:
        import gc

        gc.callbacks.remove(self._cb)


def _options(args) -> cache_pb2.RenderOptions:
    """The benchmark's RenderOptions (warm-up and timed calls alike)."""
    return cache_pb2.RenderOptions(
        mode=_MODES[args.mode], splat=_SPLATS[args.splat],
        outputs=[_OUTPUT_CODES[o] for o in args.outputs.split(",")],
        encoding=2 if args.encoding == "png" else 1,
    )  # fmt: skip


def warm_up(stub, args, scene_id: str, K: np.ndarray, metadata) -> None:
    """A few untimed Render calls at the benchmark's size (kernel compilation, allocator caches)."""
    options = _options(args)
    cam = wire.encode_camera(K, np.eye(4), args.width, args.height)
    for _ in range(3):
        stub.Render(cache_pb2.RenderRequest(scene_id=scene_id, camera=cam, options=options),
                    metadata=metadata, timeout=300)  # fmt: skip


class _shm_render:
    """``render(req)`` over shared memory: fills ``req.shm`` with this client's region, returns a memoryview
    of the serialized RenderResponse the server wrote there (decoded like the gRPC bytes)."""

    def __init__(self, call, cfg: dict, options: cache_pb2.RenderOptions):
        from objvid.runtime.shm import ClientRegion, frame_bytes_estimate

        self.call = call
        self.region = ClientRegion(frame_bytes_estimate(cfg["width"], cfg["height"], 4, options))

    def __call__(self, req, metadata=None, timeout=None):
        from objvid.runtime.shm import response_shm_bytes

        req.shm.name, req.shm.size, req.shm.key = self.region.name, self.region.size, self.region.key
        return self.region.view(response_shm_bytes(self.call(req, metadata=metadata, timeout=timeout)))

    def close(self):
        self.region.close()


def client_worker(cfg: dict, i: int, start_at: float) -> dict:
    """One client: its own channel, ``WARMUP_CALLS`` untimed calls, then ``requests`` timed Render calls from ``start_at``
    (a ``time.time()`` value shared by all clients), each until the frame is decoded into numpy arrays.
    Picklable, for threads and processes alike."""
    import gc

    import grpc  # noqa: F401 - imported here so a spawned process sets it up itself

    if cfg["procs"] and cfg["client_malloc_reuse"]:  # thread clients: main() did it for the process
        from objvid.cache.server import TRIM_THRESHOLD
        from objvid.runtime.malloc import MMAP_THRESHOLD, tune_malloc

        tune_malloc(MMAP_THRESHOLD, TRIM_THRESHOLD)
    channel = channels.make_channel(
        cfg["address"], tls_ca=Path(cfg["tls_ca"]).read_bytes() if cfg["tls_ca"] else None
    )
    render = channel.unary_unary(  # raw response bytes: decoded once, by ``decode``
        "/objvid.v1.CacheService/Render",
        request_serializer=cache_pb2.RenderRequest.SerializeToString,
        response_deserializer=None,
    )
    decode = _decoder(cfg["decode"])
    metadata = wire.bearer_metadata(cfg["token"])
    options = cache_pb2.RenderOptions.FromString(cfg["options"])
    if cfg["transport"] == "shm":  # this client's shared-memory region: the server writes frames there
        render = _shm_render(render, cfg, options)
    K = np.array(cfg["K"]).reshape(3, 3)
    path = camera_path(max(cfg["requests"], 2))
    cams = [wire.encode_camera(K, w2c, cfg["width"], cfg["height"]) for w2c in path]
    want = cfg["outputs"]
    lat, calls, decodes, errors, seq = [], [], [], [], []
    try:  # warm-up: connection, HTTP/2 flow-control windows, this process's heap
        for w in range(WARMUP_CALLS):
            decode(render(cache_pb2.RenderRequest(scene_id=cfg["scene_id"], camera=cams[w % len(cams)],
                                                  options=options), metadata=metadata, timeout=cfg["timeout"]))  # fmt: skip
    except Exception as exc:  # noqa: BLE001 - counted
        errors.append(f"warmup: {_describe_error(exc)}")
    gc_clock = None
    if cfg["procs"]:  # a process of its own: imports and set-up are not garbage, keep them out of full GCs
        gc.freeze()
        gc_clock = _GcClock()
    late = time.time() > start_at
    time.sleep(max(0.0, start_at - time.time()))
    for r in range(cfg["requests"]):
        req = cache_pb2.RenderRequest(
            scene_id=cfg["scene_id"], camera=cams[(r + i) % len(cams)], options=options
        )
        data = frame = None
        t0 = time.perf_counter()
        try:
            data = render(req, metadata=metadata, timeout=cfg["timeout"])
            t1 = time.perf_counter()
            frame = decode(data)
            ok = frame["num_slots"] >= 1 and all(o in frame for o in want)
            if not ok:
                errors.append(f"incomplete frame: {sorted(frame)}")
        except Exception as exc:  # noqa: BLE001
            ok = False
            errors.append(_describe_error(exc))
        if ok:
            t2 = time.perf_counter()
            lat.append(t2 - t0)
            seq.append(r)
            calls.append(t1 - t0)
            decodes.append(t2 - t1)
        del data, frame  # the response bytes go before the next call, as in an app that uses each frame once
    channel.close()
    if hasattr(render, "close"):
        render.close()
    gc_info = None
    if gc_clock is not None:
        gc_clock.close()
        gc_info = {
            "runs": gc_clock.runs,
            "ms_total": gc_clock.seconds * 1e3,
            "longest_ms": gc_clock.longest * 1e3,
        }
    return {"lat": lat, "call": calls, "decode": decodes, "seq": seq, "errors": errors, "end": time.time(),
            "late": late, "gc": gc_info}  # fmt: skip


#: --transports variants: (transport, compact encodings: bit-packed masks + float16 depth).
TRANSPORTS = {"grpc": ("grpc", False), "grpc-compact": ("grpc", True), "shm": ("shm", False),
              "shm-compact": ("shm", True)}  # fmt: skip


def run_clients(
    args, scene_id: str, clients: int, requests: int, K: np.ndarray, variant: str = "grpc"
) -> dict:
    """``clients`` concurrent clients (threads, or processes with ``--procs``) x ``requests`` Render calls,
    over ``variant`` (a ``TRANSPORTS`` key)."""
    transport, compact = TRANSPORTS[variant]
    options = _options(args)
    options.pack_masks = options.depth_fp16 = compact
    cfg = {
        "address": args.address, "tls_ca": args.tls_ca, "token": args.token, "scene_id": scene_id,
        "K": np.asarray(K, np.float64).ravel().tolist(), "width": args.width, "height": args.height,
        "options": options.SerializeToString(), "requests": requests, "timeout": args.timeout,
        "decode": args.decode, "outputs": args.outputs.split(","), "procs": args.procs,
        "client_malloc_reuse": bool(args.client_malloc_reuse), "transport": transport,
    }  # fmt: skip
    if args.procs:
        import multiprocessing as mp

        pool = concurrent.futures.ProcessPoolExecutor(clients, mp_context=mp.get_context("spawn"))
        start_at = time.time() + 6.0 + 0.5 * clients  # spawned interpreters import numpy/grpc/torch first
    else:
        pool = concurrent.futures.ThreadPoolExecutor(clients)
        start_at = time.time() + 1.0 + 0.1 * clients
    with pool:
        futures = [pool.submit(client_worker, cfg, i, start_at) for i in range(clients)]
        time.sleep(max(0.0, start_at - 0.2 - time.time()))  # warm-up calls are done by now
        server_before = _server_timings(args.metrics_url)
        results = [f.result() for f in futures]
    server_after = _server_timings(args.metrics_url)
    wall = max(r["end"] for r in results) - start_at
    lat = (
        np.array([x for r in results for x in r["lat"]])
        if any(r["lat"] for r in results)
        else np.array([np.nan])
    )
    call = np.array([x for r in results for x in r["call"]] or [np.nan])
    dec = np.array([x for r in results for x in r["decode"]] or [np.nan])
    errors = [e for r in results for e in r["errors"]]
    frames = sum(len(r["lat"]) for r in results)
    server = _server_breakdown(server_before, server_after)
    client = {
        "call_ms": float(np.mean(call) * 1e3),
        "decode_ms": float(np.mean(dec) * 1e3),
        "call_p99_ms": float(np.percentile(call, 99) * 1e3),
        "decode_p99_ms": float(np.percentile(dec, 99) * 1e3),
        "slowest_ms": [round(float(x) * 1e3, 2) for x in np.sort(lat)[-5:][::-1]],
        # The 5 slowest calls: which client, which call of its sequence, and how their time split.
        "slowest": sorted(
            (
                {"ms": round(r["lat"][k] * 1e3, 2), "client": c, "call": r["seq"][k],
                 "call_ms": round(r["call"][k] * 1e3, 2), "decode_ms": round(r["decode"][k] * 1e3, 3)}
                for c, r in enumerate(results) for k in range(len(r["lat"]))
            ),
            key=lambda x: -x["ms"],
        )[:5],
    }  # fmt: skip
    if "handler_ms" in server:
        client["grpc_transport_ms"] = client["call_ms"] - server["handler_ms"]
    gcs = [r["gc"] for r in results if r["gc"]]
    if gcs:
        client["gc_runs"] = sum(g["runs"] for g in gcs)
        client["gc_ms_total"] = sum(g["ms_total"] for g in gcs)
        client["gc_longest_ms"] = max(g["longest_ms"] for g in gcs)
    return {
        "transport": variant,
        "clients": clients,
        "client_kind": "process" if args.procs else "thread",
        "decode": args.decode,
        "late_starts": sum(r["late"] for r in results),
        "requests_per_client": requests,
        "frames": int(frames),
        "errors": len(errors),
        "error_samples": errors[:5],
        "wall_s": wall,
        "throughput_fps": float(frames / wall) if wall > 0 else 0.0,
        "p50_ms": float(np.percentile(lat, 50) * 1e3),
        "p99_ms": float(np.percentile(lat, 99) * 1e3),
        "mean_ms": float(np.mean(lat) * 1e3),
        "server_ms": server,
        "client_ms": client,
    }


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = p.add_mutually_exclusive_group()
    where.add_argument("--address", help="host:port of a running server")
    where.add_argument("--spawn", action="store_true", help="start a server subprocess on 127.0.0.1")
    p.add_argument("--device", default="cpu", help="device of the spawned server")
    p.add_argument("--memory-budget", default="auto", help="budget of the spawned server")
    p.add_argument("--metrics-url", help="/metrics URL of a running server (memory readings)")
    p.add_argument("--clients", default="1,8", help="comma-separated client counts, one run each")
    p.add_argument(
        "--procs", action="store_true", help="one process per client (no shared GIL) instead of threads"
    )
    p.add_argument("--requests", type=int, help="Render calls per client (default 200, --small 20)")
    p.add_argument("--height", type=int, default=704)
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--outputs", default="rgb,mask,depth", help="comma-separated: rgb,mask,depth,object_mask")
    p.add_argument("--encoding", choices=("raw", "png"), default="raw")
    p.add_argument(
        "--transports", default="grpc",
        help="comma-separated variants, each run with every --clients count, side by side: grpc (bytes in "
        "the response), grpc-compact (bit-packed masks, float16 depth), shm (frame written into the "
        "client's /dev/shm region; same host only), shm-compact",
    )  # fmt: skip
    p.add_argument("--mode", choices=tuple(_MODES), default="fused")
    p.add_argument("--splat", choices=tuple(_SPLATS), default="gen3c")
    p.add_argument("--object-points", type=int, default=50_000, help="object added to the scene (0 = none)")
    p.add_argument("--timeout", type=float, default=60.0, help="per-call deadline, seconds")
    p.add_argument(
        "--decode", choices=("wire", "protobuf"), default="wire",
        help="client decoding of each frame: wire = objvid.runtime.frames.decode_frame_bytes (zero-copy views), "
        "protobuf = RenderResponse.FromString + wire.decode_image / decode_tensor",
    )  # fmt: skip
    p.add_argument(
        "--client-malloc-reuse", type=int, default=1,
        help="1 = clients call objvid.runtime.malloc.tune_malloc() (reuse freed multi-MB buffers), 0 = glibc defaults",
    )  # fmt: skip
    p.add_argument(
        "--server-arg", action="append", default=[],
        help="extra flag for the spawned server, e.g. --server-arg=--no-malloc-tuning (repeatable)",
    )  # fmt: skip
    p.add_argument("--token", help="bearer token")
    p.add_argument("--tls-ca", help="CA bundle (PEM) for a TLS server")
    p.add_argument("--out", help="JSON output path")
    p.add_argument("--small", action="store_true", help="tiny CPU run: 48x64, 2 clients, 20 calls each")
    return p


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    if args.small:
        args.height, args.width, args.object_points = 48, 64, 500
        args.requests = args.requests or 20
        args.clients = "1,2" if args.clients == "1,8" else args.clients
        if args.memory_budget == "auto":
            args.memory_budget = "256M"
    args.requests = args.requests or 200
    if args.client_malloc_reuse and not args.procs:
        from objvid.cache.server import TRIM_THRESHOLD
        from objvid.runtime.malloc import MMAP_THRESHOLD, tune_malloc

        tune_malloc(MMAP_THRESHOLD, TRIM_THRESHOLD)
    if not args.address and not args.spawn:
        args.spawn = True
    server = SpawnedServer(args.device, args.memory_budget, args.server_arg) if args.spawn else None
    if server is not None:
        args.address = server.address
        args.metrics_url = server.metrics_url
    metadata = wire.bearer_metadata(args.token)
    try:
        channel = _make_channel(args)
        stub = cache_pb2_grpc.CacheServiceStub(channel)
        info = create_scene(stub, args, metadata)
        K = np.array(info.seed_camera.intrinsics).reshape(3, 3)
        warm_up(stub, args, info.scene_id, K, metadata)
        memory_before = {"rss": server.rss() if server else None, **_scrape(args.metrics_url)}
        runs = []
        variants = [(v, int(c)) for v in args.transports.split(",") for c in args.clients.split(",")]
        for variant, n in variants:
            if variant not in TRANSPORTS:
                raise SystemExit(
                    f"--transports: unknown variant {variant!r} (one of {', '.join(TRANSPORTS)})"
                )
            run = run_clients(args, info.scene_id, n, args.requests, K, variant)
            info_now = stub.GetScene(
                cache_pb2.GetSceneRequest(scene_id=info.scene_id), metadata=metadata
            ).scene
            run["memory"] = {
                "rss": server.rss() if server else None,
                "scene_device_bytes": info_now.device_bytes,
                **_scrape(args.metrics_url),
            }
            runs.append(run)
            print(
                f"{variant:<13s} clients={n:<3d} frames={run['frames']:<6d} fps={run['throughput_fps']:8.1f} "
                f"p50={run['p50_ms']:7.2f}ms p99={run['p99_ms']:7.2f}ms errors={run['errors']} "
                f"rss={_mb(run['memory'].get('rss') or run['memory'].get('process_resident_memory_bytes'))} "
                f"device={_mb(run['memory'].get('objvid_cache_device_bytes', info_now.device_bytes))}",
                flush=True,
            )
            print("  " + _breakdown_line(run), flush=True)
            for e in run["error_samples"]:
                print(f"  error: {e}", flush=True)
        channel.close()
    finally:
        if server is not None:
            server.stop()
    print(f"\n{'transport':<13s} {'clients':>7s} {'fps':>8s} {'p50 ms':>8s} {'p99 ms':>8s} {'errors':>6s}")
    for run in runs:
        print(f"{run['transport']:<13s} {run['clients']:>7d} {run['throughput_fps']:>8.1f} {run['p50_ms']:>8.2f} "
              f"{run['p99_ms']:>8.2f} {run['errors']:>6d}")  # fmt: skip
    result = {
        "benchmark": "cache_load",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config": {k: v for k, v in vars(args).items() if k not in ("token",)},
        "scene": {
            "scene_id": info.scene_id,
            "num_points": info.num_points,
            "device_bytes": info.device_bytes,
        },
        "memory_before": memory_before,
        "runs": runs,
    }
    out = args.out or (
        os.path.join(os.environ["OUT"], "cache_load.json")
        if os.environ.get("OUT")
        else str(
            Path(__file__).parent / "results" / f"cache_load-{args.device}-{args.height}x{args.width}.json"
        )
    )
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(result, indent=2, default=str))
    print(f"wrote {out}", flush=True)
    return result


def _describe_error(exc: Exception) -> str:
    details = getattr(exc, "details", None)
    code = getattr(exc, "code", None)
    if callable(details) and callable(code):
        return f"{code().name}: {details()}"
    return repr(exc)


def _breakdown_line(run: dict) -> str:
    """Means per call: server stages, gRPC + transport, client decode; GC pauses."""
    sv, cl = run["server_ms"], run["client_ms"]
    parts = []
    if sv:
        stages = " ".join(f"{st}={sv[st + '_ms']:.2f}" for st in _STAGES if st + "_ms" in sv)
        parts.append(f"server[{stages} handler={sv['handler_ms']:.2f}]")
    if "grpc_transport_ms" in cl:
        parts.append(f"grpc+transport={cl['grpc_transport_ms']:.2f}")
    parts.append(f"client[call={cl['call_ms']:.2f} decode={cl['decode_ms']:.3f}]")
    if sv:
        parts.append(f"server_gc2={sv.get('gc2_runs', 0)}x/{sv.get('gc2_ms_total', 0.0):.1f}ms")
    if "gc_runs" in cl:
        parts.append(f"client_gc={cl['gc_runs']}x/{cl['gc_ms_total']:.1f}ms(max {cl['gc_longest_ms']:.1f})")
    parts.append(
        "slowest=[" + ", ".join(f"{x['ms']}@c{x['client']}#{x['call']}" for x in cl["slowest"]) + "]"
    )
    return "ms/call: " + " ".join(parts)


def _mb(x) -> str:
    return "n/a" if x is None else f"{float(x) / 2**20:.0f}MiB"


if __name__ == "__main__":
    res = main()
    sys.exit(1 if any(r["errors"] for r in res["runs"]) else 0)
