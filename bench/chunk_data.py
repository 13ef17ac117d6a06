"""Bytes and seconds of one chunk's data path: renders + masks from the cache to the diffusion model.

Variants, side by side in one run (same scene, same cameras):

- ``client`` (before issue 18): the client streams ``RenderTrajectory`` with rgb, mask, object_mask for
  every slot, a byte per mask pixel, then sends RENDERS + MASKS (+ FIRST_FRAME) to Triton;
- ``client-compact``: the same detour with bit-packed masks and slot 0's object mask only (what
  ``objvid-client generate`` now asks for);
- ``direct``: the client sends FIRST_FRAME + a ``RenderSource`` (scene id + cameras, a few KB); the model's
  adapter fetches rgb + bit-packed masks from the cache itself (``objvid.diffusion.cache_source``), so
  nothing but the video comes back through the client.

Counted: bytes into / out of the client (gRPC message sizes of the cache stream; the Triton input and
output tensor bytes), bytes cache -> model, and the seconds of the measured hops: the cache stream (to
the client, or to the model's adapter, decoded into the arrays the model gets). The Triton hop itself
needs a Triton server and is not timed here (bytes only); the renders the model gets are checked equal
across variants. A real cache server runs on 127.0.0.1 (``--device cuda`` on a GPU).

    python bench/chunk_data.py --device cuda              # 121 frames, 2 slots, 704x1280
    python bench/chunk_data.py --small                    # seconds on a CPU
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from cache_load import camera_path, synthetic_rgbd  # noqa: E402

from objvid.cache.server import CacheServer, ServerConfig  # noqa: E402
from objvid.diffusion.cache_source import CacheSource  # noqa: E402
from objvid.runtime import channels, wire  # noqa: E402
from objvid.runtime.frames import decode_frame_bytes  # noqa: E402
from objvid.v1 import cache_pb2, cache_pb2_grpc, diffusion_pb2, types_pb2  # noqa: E402

ALL = [cache_pb2.RENDER_OUTPUT_RGB, cache_pb2.RENDER_OUTPUT_MASK, cache_pb2.RENDER_OUTPUT_OBJECT_MASK]


def make_scene(stub, height: int, width: int, object_points: int) -> tuple[str, np.ndarray]:
    """A 2-slot scene (seed view + one UpdateScene view) with an object; returns (scene id, K)."""
    image, depth, K = synthetic_rgbd(height, width)
    view = cache_pb2.RgbdView(image=wire.encode_image(image), depth=wire.encode_tensor(depth),
                              camera=wire.encode_camera(K, np.eye(4), width, height))  # fmt: skip
    sid = stub.CreateScene(cache_pb2.CreateSceneRequest(rgbd=view), timeout=300).scene.scene_id
    image2, depth2, _ = synthetic_rgbd(height, width, seed=1)
    w2c = camera_path(8)[4]
    view2 = cache_pb2.RgbdView(image=wire.encode_image(image2), depth=wire.encode_tensor(depth2),
                               camera=wire.encode_camera(K, w2c, width, height))  # fmt: skip
    stub.UpdateScene(cache_pb2.UpdateSceneRequest(scene_id=sid, view=view2, skip_alignment=True), timeout=300)
    rng = np.random.default_rng(1)
    pts = (rng.random((object_points, 3)) - 0.5).astype(np.float32) * 0.5
    cols = rng.integers(0, 256, (object_points, 3), dtype=np.uint8)
    stub.AddObject(cache_pb2.AddObjectRequest(
        scene_id=sid, cloud=types_pb2.PointCloud(positions=wire.encode_tensor(pts), colors=wire.encode_tensor(cols)),
        transform=types_pb2.Transform(pose=types_pb2.Pose(translation=[0.0, 0.6, 2.5]))), timeout=300)  # fmt: skip
    return sid, K


def via_client(channel, sid: str, cams, compact: bool, splat: int) -> dict:
    """The client's RenderTrajectory: (renders, masks, objects) as the client builds them + bytes, seconds."""
    stream = channel.unary_stream("/objvid.v1.CacheService/RenderTrajectory",
                                  request_serializer=cache_pb2.RenderTrajectoryRequest.SerializeToString,
                                  response_deserializer=None)  # fmt: skip
    options = cache_pb2.RenderOptions(outputs=ALL, encoding=cache_pb2.IMAGE_ENCODING_RAW, splat=splat)
    if compact:
        options.pack_masks, options.object_mask_slots = True, 1
    t0 = time.perf_counter()
    received = 0
    renders = masks = objects = None
    for data in stream(
        cache_pb2.RenderTrajectoryRequest(scene_id=sid, cameras=cams, options=options), timeout=600
    ):
        received += len(data)
        f = decode_frame_bytes(data)
        if renders is None:
            n, h, w = f["mask"].shape
            renders = np.empty((len(cams), n, h, w, 3), np.uint8)
            masks = np.empty((len(cams), n, h, w), np.uint8)
            objects = np.empty((len(cams), h, w), np.int16)
        renders[f["index"]], masks[f["index"]], objects[f["index"]] = f["rgb"], f["mask"], f["object_mask"][0]
    seconds = time.perf_counter() - t0
    return {"renders": renders, "masks": masks, "cache_to_client_bytes": received, "cache_seconds": seconds}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--frames", type=int, default=121)
    p.add_argument("--height", type=int, default=704)
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--object-points", type=int, default=500_000)
    p.add_argument("--repeats", type=int, default=2, help="timed repeats per variant (best kept)")
    p.add_argument("--small", action="store_true", help="CPU run in seconds: 9 frames, 48x64")
    p.add_argument(
        "--splat", choices=("gen3c", "zbuffer"), default="gen3c",
        help="scene splat: gen3c (float atomic adds: not bit-reproducible between two renders on a GPU) or "
        "zbuffer (integer atomic min: reproducible)",
    )  # fmt: skip
    p.add_argument("--out", help="JSON path (default $OUT/chunk_data.json or bench/results/)")
    args = p.parse_args(argv)
    if args.small:
        args.frames, args.height, args.width, args.object_points = 9, 48, 64, 500
    server = CacheServer(ServerConfig(host="127.0.0.1", port=0, device=args.device, memory_budget=16 << 30))
    channel = channels.make_channel(server.address)
    try:
        stub = cache_pb2_grpc.CacheServiceStub(channel)
        sid, K = make_scene(stub, args.height, args.width, args.object_points)
        cams = [wire.encode_camera(K, w2c, args.width, args.height) for w2c in camera_path(args.frames)]
        first = synthetic_rgbd(args.height, args.width)[0]
        video_bytes = args.frames * args.height * args.width * 3
        splat = cache_pb2.SPLAT_KIND_ZBUFFER if args.splat == "zbuffer" else cache_pb2.SPLAT_KIND_GEN3C
        rows, reference, repeat_diff = [], None, None
        for variant in ("client", "client-compact", "direct"):
            best = None
            for _ in range(max(1, args.repeats)):
                if variant == "direct":
                    source = diffusion_pb2.RenderSource(
                        scene_id=sid, cameras=cams, options=cache_pb2.RenderOptions(splat=splat)
                    )
                    t0 = time.perf_counter()
                    renders, masks = CacheSource(server.address).fetch(source)
                    seconds = time.perf_counter() - t0
                    r = {"renders": renders, "masks": masks, "cache_seconds": seconds, "cache_to_client_bytes": 0,
                         "client_to_model_bytes": first.nbytes + source.ByteSize(),
                         "cache_to_model_bytes": _stream_bytes(channel, source)}  # fmt: skip
                else:
                    r = via_client(channel, sid, cams, compact=variant == "client-compact", splat=splat)
                    r["client_to_model_bytes"] = first.nbytes + r["renders"].nbytes + r["masks"].nbytes
                    r["cache_to_model_bytes"] = 0
                if variant == "client" and best is not None:  # the renderer's own run-to-run difference
                    repeat_diff = _difference(r, (best["renders"], best["masks"]))
                if best is None or r["cache_seconds"] < best["cache_seconds"]:
                    best = r
            if reference is None:
                reference = (best["renders"], best["masks"])
            diff = _difference(best, reference)
            same = diff["rgb_max_abs"] == 0 and diff["mask_pixels"] == 0
            through = best["cache_to_client_bytes"] + best["client_to_model_bytes"] + video_bytes
            rows.append({"variant": variant, "through_client_bytes": through,
                         "cache_to_client_bytes": best["cache_to_client_bytes"],
                         "client_to_model_bytes": best["client_to_model_bytes"], "model_to_client_bytes": video_bytes,
                         "cache_to_model_bytes": best["cache_to_model_bytes"],
                         "render_fetch_seconds": best["cache_seconds"], "renders_equal_to_client": same,
                         "difference_to_client": diff})  # fmt: skip
    finally:
        channel.close()
        server.stop(0)
    mb = 1e6
    print(f"chunk: {args.frames} frames, 2 slots, {args.height}x{args.width}, device {args.device}")
    print(f"{'variant':<16s} {'through client MB':>17s} {'cache->client':>13s} {'client->model':>13s} "
          f"{'model->client':>13s} {'cache->model':>12s} {'fetch s':>8s} {'same':>5s}")  # fmt: skip
    for r in rows:
        print(f"{r['variant']:<16s} {r['through_client_bytes'] / mb:>17.1f} {r['cache_to_client_bytes'] / mb:>13.1f} "
              f"{r['client_to_model_bytes'] / mb:>13.1f} {r['model_to_client_bytes'] / mb:>13.1f} "
              f"{r['cache_to_model_bytes'] / mb:>12.1f} {r['render_fetch_seconds']:>8.3f} "
              f"{str(r['renders_equal_to_client']):>5s}")  # fmt: skip
    print(f"two renders of the client variant differ by: {repeat_diff}")
    result = {"benchmark": "chunk_data", "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "config": vars(args),
              "rows": rows, "client_repeat_difference": repeat_diff}  # fmt: skip
    out = args.out or (os.path.join(os.environ["OUT"], "chunk_data.json") if os.environ.get("OUT")
                       else str(Path(__file__).parent / "results" / f"chunk_data-{args.device}.json"))  # fmt: skip
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    # Encodings must not change a byte: a variant may differ from the client's renders only as much as two
    # renders of the same request differ (GEN3C's float atomics on a GPU); on the CPU, or with the z-buffer,
    # that is nothing.
    if any(not r["renders_equal_to_client"] for r in rows) and (repeat_diff is None or any(
        r["difference_to_client"]["rgb_max_abs"] > repeat_diff["rgb_max_abs"] + 1 for r in rows
    )):  # fmt: skip
        raise SystemExit("renders differ between variants beyond the renderer's own run-to-run difference")
    return result


def _difference(got: dict, reference: tuple[np.ndarray, np.ndarray]) -> dict:
    """How ``got``'s renders and masks differ from ``reference``: max |d| of rgb (0-255), pixels whose rgb
    or mask differ."""
    d = np.abs(got["renders"].astype(np.int16) - reference[0].astype(np.int16))
    return {"rgb_max_abs": int(d.max()), "rgb_pixels": int((d.max(axis=-1) > 0).sum()),
            "mask_pixels": int((got["masks"] != reference[1]).sum())}  # fmt: skip


def _stream_bytes(channel, source: diffusion_pb2.RenderSource) -> int:
    """Bytes of the cache stream the model's adapter receives for ``source`` (same request as CacheSource)."""
    stream = channel.unary_stream("/objvid.v1.CacheService/RenderTrajectory",
                                  request_serializer=cache_pb2.RenderTrajectoryRequest.SerializeToString,
                                  response_deserializer=None)  # fmt: skip
    options = cache_pb2.RenderOptions(outputs=ALL[:2], encoding=cache_pb2.IMAGE_ENCODING_RAW, pack_masks=True)
    req = cache_pb2.RenderTrajectoryRequest(scene_id=source.scene_id, cameras=source.cameras, options=options)
    return sum(len(d) for d in stream(req, timeout=600))


if __name__ == "__main__":
    main()
