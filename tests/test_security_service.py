"""Issue 13 regressions against a live cache server (real gRPC on 127.0.0.1, real files, real processes):
hostile requests get a clear status naming the field or file, the server stays responsive, acknowledged
changes survive kill -9, corrupt snapshots are quarantined, retries with idempotency keys never duplicate."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import grpc
import numpy as np
import object_files as of
import pytest
from cache_service_helpers import (
    cloud_msg,
    create_rgbd_scene,
    cube_cloud,
    decode_frame,
    matrix_transform,
    rgbd,
    running,
    stub_for,
    translation,
    view_msg,
    w2c_shift,
)

from objvid.cache.io_limits import LoadLimits
from objvid.runtime import channels, wire
from objvid.v1 import cache_pb2, cache_pb2_grpc, types_pb2


def _code(call):
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code(), info.value.details()


def _file(data: bytes, filename: str, samples: int = 0) -> cache_pb2.ObjectFile:
    return cache_pb2.ObjectFile(data=data, filename=filename, sample_points=samples)


def _render(stub, scene_id: str, w2c=None):
    from cache_service_helpers import H, W, intrinsics

    cam = wire.encode_camera(intrinsics(), np.eye(4) if w2c is None else w2c, W, H)
    req = cache_pb2.RenderRequest(scene_id=scene_id, camera=cam)
    return decode_frame(stub.Render(req, timeout=30).frame)


def test_random_bytes_to_every_rpc_are_invalid_argument():
    """Bytes that are no protobuf message: INVALID_ARGUMENT naming the message type (was INTERNAL plus a
    logged traceback per request)."""
    with running() as server:
        channel, _ = stub_for(server)
        service = cache_pb2.DESCRIPTOR.services_by_name["CacheService"]
        for method in service.methods:
            path = f"/{service.full_name}/{method.name}"
            call = (channel.unary_stream if method.server_streaming else channel.unary_unary)(path)
            with pytest.raises(grpc.RpcError) as info:
                out = call(b"\x0f\xff\xff", timeout=10)
                if method.server_streaming:
                    list(out)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, method.name
            assert f"not a valid {method.input_type.name} message" in info.value.details()


def test_scene_ids_are_matched_as_whole_strings():
    with running() as server:
        _, stub = stub_for(server)
        for bad in ("abc\n", "../etc", "a b", "x" * 65, "a\nb"):
            code, details = _code(lambda bad=bad: create_rgbd_scene(stub, scene_id=bad))
            assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("scene_id:"), (
                bad,
                details,
            )
        assert stub.ListScenes(cache_pb2.ListScenesRequest()).scenes == []


def test_idempotency_keys_make_retries_safe():
    pts, cols = cube_cloud()
    with running() as server:
        _, stub = stub_for(server)
        a = create_rgbd_scene(stub, idempotency_key="create-1")
        b = create_rgbd_scene(stub, idempotency_key="create-1")  # a retry after UNAVAILABLE
        assert a.scene_id == b.scene_id and len(stub.ListScenes(cache_pb2.ListScenesRequest()).scenes) == 1
        code, details = _code(lambda: create_rgbd_scene(stub, seed=5, idempotency_key="create-1"))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "idempotency_key" in details
        add = cache_pb2.AddObjectRequest(
            scene_id=a.scene_id, cloud=cloud_msg(pts, cols), idempotency_key="obj-1"
        )
        first = stub.AddObject(add).object
        again = stub.AddObject(add).object
        assert (
            first == again
            and len(stub.GetScene(cache_pb2.GetSceneRequest(scene_id=a.scene_id)).scene.objects) == 1
        )
        image, depth, K = rgbd(seed=1)
        upd = cache_pb2.UpdateSceneRequest(
            scene_id=a.scene_id,
            view=view_msg(image, depth, K, w2c_shift(0.02)),
            idempotency_key="view-1",
            skip_alignment=True,
        )
        r1 = stub.UpdateScene(upd, timeout=30)
        r2 = stub.UpdateScene(upd, timeout=30)
        assert r1.scene.num_buffer_slots == r2.scene.num_buffer_slots == 2
        assert r1.alignment == r2.alignment


def _slow_ply(faces: int = 300_000) -> bytes:
    """An ASCII PLY whose face lists vary in length: trimesh reads it row by row (seconds)."""
    lines = "".join(f"{i % 7} " + " ".join(str(j % 3) for j in range(i % 7)) + "\n" for i in range(faces))
    header = "ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\nproperty float z\n"
    header += (
        f"element face {faces}\nproperty list uchar int vertex_indices\nend_header\n0 0 0\n1 0 0\n0 1 0\n"
    )
    return (header + lines).encode()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(snap, port):
    cmd = [sys.executable, "-m", "objvid.cache.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
           "--snapshot-dir", str(snap), "--metrics-port", "0", "--device", "cpu"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    channel = channels.make_channel(f"127.0.0.1:{port}")
    end = time.monotonic() + 180
    while not channels.check_health(channel, timeout=1):
        if proc.poll() is not None or time.monotonic() > end:
            proc.kill()
            raise AssertionError(proc.stderr.read().decode()[-2000:])
        time.sleep(0.2)
    assert channels.check_health(channel, timeout=60)
    return proc, cache_pb2_grpc.CacheServiceStub(channel)


@pytest.mark.slow
def test_acknowledged_changes_survive_kill_9(tmp_path):
    """kill -9 right after acknowledged CreateScene / AddObject / UpdateObject calls loses none of them;
    the parser processes (one busy with a slow file) end with the server."""
    import psutil

    snap, port = tmp_path / "snap", _free_port()
    pts, cols = cube_cloud()
    proc, stub = _serve(snap, port)
    workers = []
    try:
        create_rgbd_scene(stub, scene_id="kept")
        oid = stub.AddObject(
            cache_pb2.AddObjectRequest(scene_id="kept", cloud=cloud_msg(pts, cols))
        ).object.object_id
        for k in range(5):
            T = matrix_transform(translation(0.01 * k, 0.3, 1.8))
            stub.UpdateObject(cache_pb2.UpdateObjectRequest(scene_id="kept", object_id=oid, transform=T))
        want = _render(stub, "kept")
        slow = cache_pb2.AddObjectRequest(scene_id="kept", file=_file(_slow_ply(), "slow.ply"))
        pending = stub.AddObject.future(slow, timeout=120)  # a parse in progress at the kill
        end = time.monotonic() + 60
        while len(workers) < 2 and time.monotonic() < end:
            workers = psutil.Process(proc.pid).children()
            time.sleep(0.2)
        time.sleep(1.0)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert len(workers) == 2  # warmed at start-up
    _, alive = psutil.wait_procs(workers, timeout=30)
    assert not alive, alive
    assert pending.exception() is not None
    proc, stub = _serve(snap, port)
    try:
        info = stub.GetScene(cache_pb2.GetSceneRequest(scene_id="kept")).scene
        np.testing.assert_allclose(
            np.reshape(info.objects[0].transform.values, (4, 4)), translation(0.04, 0.3, 1.8)
        )
        got = _render(stub, "kept")
        for name in want:
            np.testing.assert_array_equal(want[name], got[name], err_msg=name)
    finally:
        proc.terminate()
        proc.wait(60)


def test_corrupt_snapshot_is_quarantined_and_reported_not_found(tmp_path):
    with running(snapshot_dir=str(tmp_path)) as server:
        _, stub = stub_for(server)
        create_rgbd_scene(stub, scene_id="broken")
        create_rgbd_scene(stub, scene_id="fine")
    pt = tmp_path / "broken.pt"
    pt.write_bytes(pt.read_bytes()[:1000])  # truncated by a full disk or a bad copy
    with running(snapshot_dir=str(tmp_path)) as server:
        _, stub = stub_for(server)
        code, details = _code(lambda: _render(stub, "broken"))
        assert code == grpc.StatusCode.NOT_FOUND
        assert "unreadable snapshot" in details and "quarantine" in details
        code2, details2 = _code(lambda: stub.GetScene(cache_pb2.GetSceneRequest(scene_id="broken")))
        assert code2 == grpc.StatusCode.NOT_FOUND and "unreadable snapshot" in details2
        assert [s.scene_id for s in stub.ListScenes(cache_pb2.ListScenesRequest()).scenes] == ["fine"]
        assert _render(stub, "fine")["rgb"].shape[0] == 1
        create_rgbd_scene(stub, scene_id="broken")  # the id can be used again
        _render(stub, "broken")
    assert any(p.name.startswith("broken.") for p in (tmp_path / "quarantine").iterdir())


def test_snapshot_disk_budget_removes_least_recently_used(tmp_path):
    with running(snapshot_dir=str(tmp_path)) as server:
        _, stub = stub_for(server)
        create_rgbd_scene(stub, scene_id="probe")
    one = sum(p.stat().st_size for p in tmp_path.glob("probe.*"))
    (tmp_path / "probe.pt").unlink()
    (tmp_path / "probe.json").unlink()
    with running(snapshot_dir=str(tmp_path), snapshot_disk_budget=int(2.5 * one)) as server:
        _, stub = stub_for(server)
        for sid in ("a", "b"):
            create_rgbd_scene(stub, scene_id=sid)
        _render(stub, "a")  # "b" is now the least recently used
        create_rgbd_scene(stub, scene_id="c")
        listed = sorted(s.scene_id for s in stub.ListScenes(cache_pb2.ListScenesRequest()).scenes)
        assert listed == ["a", "c"]
        code, details = _code(lambda: stub.GetScene(cache_pb2.GetSceneRequest(scene_id="b")))
        assert code == grpc.StatusCode.NOT_FOUND and "--snapshot-disk-budget" in details
    assert sum(p.stat().st_size for p in tmp_path.iterdir() if p.is_file()) <= 2.5 * one


def test_hostile_files_leave_health_and_other_rpcs_responsive():
    """Slow parses (over --parse-timeout) and the negative-count PLY: clear statuses, while health,
    ListScenes and GetScene answer throughout (each within a generous 10 s guard)."""
    slow = _slow_ply()
    with running(parse_workers=2, parse_timeout=0.5) as server:
        channel, stub = stub_for(server)
        sid = create_rgbd_scene(stub).scene_id
        results = []

        def hostile(data, name):
            try:
                stub.AddObject(cache_pb2.AddObjectRequest(scene_id=sid, file=_file(data, name)), timeout=120)
                results.append(("OK", ""))
            except grpc.RpcError as exc:
                results.append((exc.code(), exc.details()))

        threads = [threading.Thread(target=hostile, args=(slow, f"slow{i}.ply")) for i in range(4)]
        threads += [threading.Thread(target=hostile, args=(of.negative_face_count_ply(), "negative.ply"))]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            assert channels.check_health(channel, timeout=10)
            stub.ListScenes(cache_pb2.ListScenesRequest(), timeout=10)
            stub.GetScene(cache_pb2.GetSceneRequest(scene_id=sid), timeout=10)
            time.sleep(0.05)
        slow_results = [(c, d) for c, d in results if d.startswith("slow")]
        assert len(slow_results) == 4, results
        for c, d in slow_results:
            assert c == grpc.StatusCode.RESOURCE_EXHAUSTED and "--parse-timeout" in d, (c, d)
        assert any(c == grpc.StatusCode.INVALID_ARGUMENT and "negative face count" in d for c, d in results)
        assert not stub.GetScene(cache_pb2.GetSceneRequest(scene_id=sid)).scene.objects


@pytest.mark.parametrize(
    "file,code,words",
    [
        (_file(of.glb(*of.triangle_doc()), "tiny.glb", 20_000_000), "RESOURCE_EXHAUSTED", "--max-sample-points"),
        (_file(of.instanced_glb(22), "instanced.glb"), "RESOURCE_EXHAUSTED", "--max-mesh-elements"),
        (_file(of.glb(*of.triangle_doc(image=of.png_header(9000, 9000))), "t.glb"), "RESOURCE_EXHAUSTED", "--max-texture-pixels"),
        (_file(b"", "empty.ply"), "INVALID_ARGUMENT", "file.data: empty (file 'empty.ply'"),
        (_file(b'{"asset": {"version": "2.0"}, "buffers": [{"byteLength": 8, "uri": "a.bin"}]}', "m.gltf"),
         "INVALID_ARGUMENT", "m.gltf: buffers[0].uri: refers to the external file 'a.bin'"),
        (_file(b"glTF\x02\x00\x00\x00\xff\x00\x00\x00" + bytes(8), "broken.glb"), "INVALID_ARGUMENT", "broken.glb: truncated GLB"),
        (_file(of.ply_cloud().replace(b"element vertex 8", b"element vertex 90000000000"), "big.ply"), "RESOURCE_EXHAUSTED", "--max-points"),
    ],
)  # fmt: skip
def test_object_file_limits_and_errors(file, code, words):
    with running(load_limits=LoadLimits(max_points=1_000_000)) as server:
        _, stub = stub_for(server)
        sid = create_rgbd_scene(stub).scene_id
        got, details = _code(lambda: stub.AddObject(cache_pb2.AddObjectRequest(scene_id=sid, file=file)))
        assert got.name == code and words in details, details
        assert "\n" not in details


def test_huge_coordinates_and_bombs_are_clear_errors():
    with running() as server:
        _, stub = stub_for(server)
        sid = create_rgbd_scene(stub).scene_id
        far = np.full((10, 3), 1e30, np.float32)
        code, details = _code(
            lambda: stub.AddObject(cache_pb2.AddObjectRequest(scene_id=sid, cloud=cloud_msg(far)))
        )
        assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith(
            "cloud.positions: values up to 1e+30"
        )
        image, depth, K = rgbd()
        view = view_msg(image, depth, K)
        view.image.Clear()
        view.image.encoded = of.png_header(30000, 30000)  # 900 M pixels in a few hundred bytes
        view.camera.width, view.camera.height = 64, 48
        code, details = _code(lambda: stub.CreateScene(cache_pb2.CreateSceneRequest(rgbd=view)))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "decompression bomb" in details


def test_host_memory_budget_refuses_before_allocating():
    with running(host_memory_budget=1) as server:
        _, stub = stub_for(server)
        code, details = _code(lambda: create_rgbd_scene(stub))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "--host-memory-budget" in details
        assert details.startswith("rgbd: needs about")
        server.servicer.host_guard.budget = None  # off: the scene is made
        sid = create_rgbd_scene(stub).scene_id
        server.servicer.host_guard.budget = 1  # a render reserves its peak first (CPU: ~200 B per pixel)
        code, details = _code(lambda: _render(stub, sid))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and details.startswith(
            "camera: needs about 614400 bytes"
        )


def test_stream_deadline_counts_as_deadline_exceeded():
    with running() as server:
        _, stub = stub_for(server)
        sid = create_rgbd_scene(stub).scene_id
        req = cache_pb2.RenderTrajectoryRequest(
            scene_id=sid, trajectory=types_pb2.TrajectorySpec(frame_count=4000)
        )
        code, _ = _code(lambda: list(stub.RenderTrajectory(req, timeout=0.3)))
        assert code == grpc.StatusCode.DEADLINE_EXCEEDED
        metrics = server.metrics

        def counted():
            return metrics.count("RenderTrajectory", "DEADLINE_EXCEEDED") == 1

        end = time.monotonic() + 30
        while not counted() and time.monotonic() < end:
            time.sleep(0.05)
        assert counted() and metrics.count("RenderTrajectory", "CANCELLED") == 0
