"""Soak: valid and hostile requests mixed against one live cache server, health checked throughout.

Three clients do real work (create a scene, add an object from a file, render, check the render, delete);
three send hostile requests (random bytes to every RPC, hanging and exploding object files, decompression
bombs, path-like ids, cancelled streams, passed deadlines, retried creations). Throughout, a checker calls
the health service, ListScenes and a render of a reference scene (10 s guards). At the end: every valid
call succeeded with correct results, every hostile call got a clear non-INTERNAL status, the reference
scene still renders bit for bit, no parser worker is left running beyond the pool, no scene leaked.
"""

from __future__ import annotations

import random
import threading

import grpc
import numpy as np
import object_files as of
import pytest
from cache_service_helpers import (
    H,
    W,
    create_rgbd_scene,
    decode_frame,
    intrinsics,
    rgbd,
    running,
    stub_for,
    view_msg,
)

from objvid.cache.io_limits import LoadLimits
from objvid.cache.requests import Limits
from objvid.runtime import channels, wire
from objvid.v1 import cache_pb2, types_pb2

ROUNDS = 12
CLEAN = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.FAILED_PRECONDITION,
}


# Slow enough to pass the soak's 1 s parse timeout on an idle fast machine too (200k faces parsed in < 1 s).
FACES = 2_000_000


def _slow_ply() -> bytes:
    lines = "".join(f"{i % 7} " + " ".join(str(j % 3) for j in range(i % 7)) + "\n" for i in range(FACES))
    head = "ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\nproperty float z\n"
    head += f"element face {FACES}\nproperty list uchar int vertex_indices\nend_header\n0 0 0\n1 0 0\n0 1 0\n"
    return (head + lines).encode()


def _render(stub, sid, timeout=10):
    cam = wire.encode_camera(intrinsics(), np.eye(4), W, H)
    return decode_frame(stub.Render(cache_pb2.RenderRequest(scene_id=sid, camera=cam), timeout=timeout).frame)


@pytest.mark.slow
def test_soak_mixed_valid_and_hostile_requests():
    slow = _slow_ply()
    box = of.box("glb")
    with running(
        parse_workers=2,
        parse_timeout=1.0,
        limits=Limits(max_image_pixels=256 * 256, max_cameras=64),
        load_limits=LoadLimits(max_sample_points=50_000, max_mesh_elements=1_000_000),
        memory_budget=64 << 20,
    ) as server:
        channel, stub = stub_for(server)
        reference = create_rgbd_scene(stub, scene_id="reference").scene_id
        want = _render(stub, reference)
        stop = threading.Event()
        failures: list[str] = []
        counts = {"valid": 0, "hostile": 0, "checks": 0}
        lock = threading.Lock()

        def fail(text):
            with lock:
                failures.append(text)

        def checker():
            while not stop.is_set():
                try:
                    assert channels.check_health(channel, timeout=10), "health not SERVING"
                    stub.ListScenes(cache_pb2.ListScenesRequest(), timeout=10)
                    got = _render(stub, reference)
                    if not all(np.array_equal(want[k], got[k]) for k in want):
                        fail("reference render changed")
                    with lock:
                        counts["checks"] += 1
                except Exception as exc:  # noqa: BLE001
                    fail(f"checker: {type(exc).__name__}: {exc}")
                stop.wait(0.05)

        def valid(worker: int):
            for r in range(ROUNDS):
                sid = f"valid-{worker}-{r}"
                try:
                    image, depth, K = rgbd(seed=r)
                    req = cache_pb2.CreateSceneRequest(
                        rgbd=view_msg(image, depth, K), scene_id=sid, idempotency_key=f"create-{sid}"
                    )
                    stub.CreateScene(req, timeout=30)
                    stub.CreateScene(req, timeout=30)  # a retry: same scene, no duplicate
                    add = cache_pb2.AddObjectRequest(
                        scene_id=sid,
                        file=cache_pb2.ObjectFile(data=box, filename="box.glb", sample_points=2000),
                        idempotency_key="box",
                    )
                    obj = stub.AddObject(add, timeout=60).object
                    assert obj.num_points == 2000 and stub.AddObject(add, timeout=60).object == obj
                    frame = _render(stub, sid, timeout=30)
                    assert frame["rgb"].shape == (1, H, W, 3)
                    info = stub.GetScene(cache_pb2.GetSceneRequest(scene_id=sid), timeout=10).scene
                    assert len(info.objects) == 1
                    stub.DeleteScene(cache_pb2.DeleteSceneRequest(scene_id=sid), timeout=10)
                    with lock:
                        counts["valid"] += 1
                except Exception as exc:  # noqa: BLE001
                    fail(f"valid {sid}: {type(exc).__name__}: {exc}")

        def hostile(worker: int):
            rng = random.Random(worker)
            service = cache_pb2.DESCRIPTOR.services_by_name["CacheService"]
            methods = list(service.methods)
            for _ in range(ROUNDS):
                kind = rng.choice(
                    ["bytes", "slow", "negative", "instanced", "bomb", "samples", "id", "cancel", "deadline"]
                )
                try:
                    if kind == "bytes":
                        m = rng.choice(methods)
                        path = f"/{service.full_name}/{m.name}"
                        call = (channel.unary_stream if m.server_streaming else channel.unary_unary)(path)
                        out = call(bytes(rng.randrange(256) for _ in range(rng.randint(1, 64))), timeout=10)
                        if m.server_streaming:
                            list(out)
                    elif kind in ("slow", "negative", "instanced", "samples"):
                        data, name, samples = {
                            "slow": (slow, "slow.ply", 0),
                            "negative": (of.negative_face_count_ply(), "neg.ply", 0),
                            "instanced": (of.instanced_glb(22), "inst.glb", 0),
                            "samples": (box, "box.glb", 20_000_000),
                        }[kind]
                        f = cache_pb2.ObjectFile(data=data, filename=name, sample_points=samples)
                        stub.AddObject(cache_pb2.AddObjectRequest(scene_id=reference, file=f), timeout=30)
                    elif kind == "bomb":
                        image, depth, K = rgbd()
                        view = view_msg(image, depth, K)
                        view.image.Clear()
                        view.image.encoded = of.png_header(30000, 30000)
                        stub.CreateScene(cache_pb2.CreateSceneRequest(rgbd=view), timeout=10)
                    elif kind == "id":
                        stub.GetScene(
                            cache_pb2.GetSceneRequest(scene_id=rng.choice(["reference\n", "../x", "a/b"])),
                            timeout=10,
                        )
                    elif kind == "cancel":
                        req = cache_pb2.RenderTrajectoryRequest(
                            scene_id=reference, trajectory=types_pb2.TrajectorySpec(frame_count=64)
                        )
                        stream = stub.RenderTrajectory(req, timeout=30)
                        next(stream)
                        stream.cancel()
                    else:
                        req = cache_pb2.RenderTrajectoryRequest(
                            scene_id=reference, trajectory=types_pb2.TrajectorySpec(frame_count=64)
                        )
                        list(stub.RenderTrajectory(req, timeout=0.01))
                    if kind not in ("bytes", "cancel"):
                        fail(f"hostile {kind}: accepted")
                except grpc.RpcError as exc:
                    if exc.code() not in CLEAN or not exc.details() or "\n" in exc.details():
                        fail(f"hostile {kind}: {exc.code()} {exc.details()!r}")
                except Exception as exc:  # noqa: BLE001
                    fail(f"hostile {kind}: {type(exc).__name__}: {exc}")
                with lock:
                    counts["hostile"] += 1

        threads = [threading.Thread(target=checker)]
        threads += [threading.Thread(target=valid, args=(i,)) for i in range(3)]
        threads += [threading.Thread(target=hostile, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads[1:]:
            t.join()
        stop.set()
        threads[0].join()
        assert not failures, failures[:10]
        assert counts["valid"] == 3 * ROUNDS and counts["hostile"] == 3 * ROUNDS and counts["checks"] > 0
        listed = [s.scene_id for s in stub.ListScenes(cache_pb2.ListScenesRequest()).scenes]
        assert listed == [reference]  # nothing leaked, no duplicate from the retries
        assert not stub.GetScene(cache_pb2.GetSceneRequest(scene_id=reference)).scene.objects
        pool = server.servicer.parse_pool
        assert len(pool._running) == 0 and len(pool._idle) <= pool.workers


@pytest.mark.slow
def test_soak_depth_service_mixed_requests(tmp_path):
    """The depth service under valid lifts and hostile requests (random bytes, decompression bombs, too
    many or too large images), health checked throughout; every hostile call gets a clear status."""
    import io

    from depth_checkpoints import one_torch_thread, small_checkpoint, start_small_server
    from PIL import Image

    from objvid.v1 import depth_pb2, depth_pb2_grpc

    threads_guard = one_torch_thread()
    next(threads_guard)
    server = start_small_server(small_checkpoint("v1", tmp_path), max_images=8, max_request_pixels=2_000_000)
    channel = channels.make_channel(server.address)
    stub = depth_pb2_grpc.DepthServiceStub(channel)
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (90, 120, 200)).save(buf, format="PNG")
    good = types_pb2.Image(encoded=buf.getvalue())
    failures, stop = [], threading.Event()

    def checker():
        while not stop.is_set():
            if not channels.check_health(channel, timeout=10):
                failures.append("health not SERVING")
            stop.wait(0.05)

    def valid():
        for _ in range(ROUNDS // 2):
            try:
                out = stub.Lift(depth_pb2.LiftRequest(images=[good], width=64, height=48), timeout=120)
                assert len(out.views) == 1
            except Exception as exc:  # noqa: BLE001
                failures.append(f"valid lift: {type(exc).__name__}: {exc}")

    def hostile(worker: int):
        rng = random.Random(worker)
        raw = channel.unary_unary("/objvid.v1.DepthService/Lift")
        for _ in range(ROUNDS):
            kind = rng.choice(["bytes", "bomb", "many", "pixels"])
            try:
                if kind == "bytes":
                    raw(bytes(rng.randrange(256) for _ in range(rng.randint(1, 64))), timeout=10)
                    continue  # some random bytes are a valid (empty-ish) request: its status is checked below
                images = {
                    "bomb": [types_pb2.Image(encoded=of.png_header(30000, 30000))],
                    "many": [good] * 9,
                    "pixels": [types_pb2.Image(encoded=of.png_header(6000, 6000))] * 2,
                }[kind]
                stub.Lift(depth_pb2.LiftRequest(images=images), timeout=30)
                failures.append(f"hostile {kind}: accepted")
            except grpc.RpcError as exc:
                if exc.code() not in CLEAN or "\n" in (exc.details() or "\n"):
                    failures.append(f"hostile {kind}: {exc.code()} {exc.details()!r}")

    threads = [threading.Thread(target=checker), threading.Thread(target=valid)]
    threads += [threading.Thread(target=hostile, args=(i,)) for i in range(2)]
    try:
        for t in threads:
            t.start()
        for t in threads[1:]:
            t.join()
    finally:
        stop.set()
        threads[0].join()
        channel.close()
        server.stop(0)
        next(threads_guard, None)
    assert not failures, failures[:10]
