"""Per-frame ``ObjvidClient.render`` latency through the SDK, one client, side by side with the previous
SDK's health check before every call (what an app that renders once per frame sees).

``cache_load.py`` times raw ``Render`` calls on its own channels; this one goes through the SDK
(transport negotiation, connection handling, zero-copy decode). Variants, interleaved in rounds:
  - ``sdk``: the SDK as shipped (a call on a READY channel sends no health check first);
  - ``sdk+check``: the same client with the previous behaviour restated: a health check with
    ``wait_for_ready`` before every call (``calls.wait_connected``).
Transports: ``shm`` (same host, the default on 127.0.0.1) and ``grpc`` (bytes in the response).

    python bench/sdk_render.py --device cuda --height 704 --width 1280     # GPU target shape
    python bench/sdk_render.py --small                                     # seconds, CPU
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from cache_load import SpawnedServer, camera_path, create_scene, synthetic_rgbd  # noqa: E402

from objvid.client import ObjvidClient  # noqa: E402
from objvid.client.calls import wait_connected  # noqa: E402
from objvid.v1 import cache_pb2_grpc  # noqa: E402

OUTPUTS = ("rgb", "mask", "depth")


def time_calls(client: ObjvidClient, scene_id: str, cams, K, args, check: bool) -> list[float]:
    """Seconds per ``client.render`` call (frame decoded to numpy), ``check``: health check first."""
    options = client.render_options("fused", OUTPUTS)
    channel = client._channel(client.cache_addr)
    out = []
    for i in range(args.requests):
        t0 = time.perf_counter()
        if check:
            wait_connected(channel, client.retry.connect_wait)
        frame = client.render(scene_id, K, cams[i % len(cams)], args.width, args.height, options, copy=False)
        out.append(time.perf_counter() - t0)
        assert frame.rgb is not None
    return out


def summary(seconds: list[float]) -> dict:
    s = sorted(seconds)
    return {"calls": len(s), "p50_ms": 1e3 * statistics.median(s), "p99_ms": 1e3 * s[int(0.99 * (len(s) - 1))],
            "frames_per_s": len(s) / sum(s)}  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", help="device of the spawned cache server")
    p.add_argument("--height", type=int, default=704)
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--requests", type=int, default=100, help="calls per variant per round")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds of every variant")
    p.add_argument("--transports", default="shm,grpc")
    p.add_argument("--small", action="store_true", help="48x64, 30 calls, 2 rounds (CPU smoke)")
    p.add_argument("--out", help="JSON output path")
    args = p.parse_args(argv)
    if args.small:
        args.height, args.width, args.requests, args.rounds = 48, 64, 30, 2
    args.object_points, args.address = 50_000 if not args.small else 500, None
    server = SpawnedServer(args.device, "auto")
    results: dict[str, list[float]] = {}
    try:
        scene = None
        for transport in args.transports.split(","):
            client = ObjvidClient(cache_addr=server.address, render_transport=transport)
            try:
                if scene is None:
                    scene = create_scene(cache_pb2_grpc.CacheServiceStub(client._channel(server.address)),
                                         args, ())  # fmt: skip
                K = synthetic_rgbd(args.height, args.width)[2]
                cams = camera_path(16)
                time_calls(client, scene.scene_id, cams, K, argparse.Namespace(**{**vars(args), "requests": 5}),
                           False)  # warm-up: kernels, regions, the READY channel  # fmt: skip
                for _ in range(args.rounds):
                    for check in (False, True):
                        name = f"{transport}/{'sdk+check' if check else 'sdk'}"
                        results.setdefault(name, []).extend(
                            time_calls(client, scene.scene_id, cams, K, args, check)
                        )
            finally:
                client.close()
    finally:
        server.stop()
    rows = {name: summary(s) for name, s in results.items()}
    print(f"{'variant':<20} {'p50 ms':>8} {'p99 ms':>8} {'frames/s':>9}")
    for name, r in rows.items():
        print(f"{name:<20} {r['p50_ms']:>8.3f} {r['p99_ms']:>8.3f} {r['frames_per_s']:>9.1f}")
    record = {"benchmark": "sdk_render", "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "device": args.device,
              "size": [args.height, args.width], "outputs": OUTPUTS, "variants": rows}  # fmt: skip
    out = args.out or (f"{os.environ['OUT']}/sdk_render.json" if os.environ.get("OUT") else None)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(record, indent=1))
        print("wrote", out)
    return record


if __name__ == "__main__":
    main()
