"""Memory budget, LRU eviction, NOT_FOUND, snapshots across restarts, concurrency, deadlines and the FIFO
device queue of the cache service (real servers on 127.0.0.1)."""

from __future__ import annotations

import threading

import grpc
import numpy as np
import pytest
from cache_service_helpers import (
    H,
    W,
    cloud_msg,
    create_rgbd_scene,
    cube_cloud,
    decode_frame,
    matrix_transform,
    rgbd,
    running,
    stub_for,
    translation,
    w2c_shift,
    wait_for,
)

from objvid.cache import Scene
from objvid.cache.device_lock import FairLock
from objvid.runtime import wire
from objvid.v1 import cache_pb2, types_pb2


def _scene_bytes() -> int:
    image, depth, K = rgbd()
    return Scene.from_rgbd(image, depth, K).device_bytes()


def _render(stub, sid, w2c=None, timeout=30, outputs=(1, 2, 3, 4)):
    K = rgbd()[2]
    req = cache_pb2.RenderRequest(
        scene_id=sid,
        camera=wire.encode_camera(K, np.eye(4) if w2c is None else w2c, W, H),
        options=cache_pb2.RenderOptions(outputs=list(outputs)),
    )
    return decode_frame(stub.Render(req, timeout=timeout).frame)


def test_lru_eviction_and_not_found(tmp_path):
    size = _scene_bytes()
    with running(memory_budget=2 * size + size // 2) as server:
        _, stub = stub_for(server)
        for sid in ("a", "b"):
            create_rgbd_scene(stub, scene_id=sid)
        _render(stub, "a")  # "a" is now more recently used than "b"
        create_rgbd_scene(stub, scene_id="c")  # needs room: the LRU scene "b" goes
        with pytest.raises(grpc.RpcError) as exc:
            _render(stub, "b")
        assert exc.value.code() == grpc.StatusCode.NOT_FOUND
        assert "evicted" in exc.value.details() and "create it again with CreateScene" in exc.value.details()
        _render(stub, "a")
        _render(stub, "c")
        assert sorted(s.scene_id for s in stub.ListScenes(cache_pb2.ListScenesRequest()).scenes) == ["a", "c"]
        assert server.store.evictions == 1 and server.metrics.evictions._value.get() == 1
        assert server.store.bytes_in_use <= server.store.budget
        create_rgbd_scene(stub, scene_id="b")  # the caller re-creates it under the same id
        _render(stub, "b")


def test_scene_larger_than_the_budget_is_resource_exhausted():
    with running(memory_budget=_scene_bytes() // 2) as server:
        _, stub = stub_for(server)
        with pytest.raises(grpc.RpcError) as exc:
            create_rgbd_scene(stub)
        assert exc.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "more than the whole budget" in exc.value.details()
        assert stub.ListScenes(cache_pb2.ListScenesRequest()).scenes == []


def test_object_growth_evicts_other_scenes():
    size = _scene_bytes()
    with running(memory_budget=2 * size + 1000) as server:
        _, stub = stub_for(server)
        create_rgbd_scene(stub, scene_id="old")
        create_rgbd_scene(stub, scene_id="grow")
        pts = np.random.default_rng(0).random((size // 16 // 2, 3)).astype(np.float32)
        stub.AddObject(cache_pb2.AddObjectRequest(scene_id="grow", cloud=cloud_msg(pts)))
        names = [s.scene_id for s in stub.ListScenes(cache_pb2.ListScenesRequest()).scenes]
        assert names == ["grow"] and server.store.bytes_in_use <= server.store.budget


def test_snapshot_restart_serves_the_same_scene(tmp_path):
    snap = tmp_path / "snapshots"
    pts, cols = cube_cloud()
    w2c = w2c_shift(0.04, 0.0, 0.1, yaw_deg=2)
    with running(snapshot_dir=str(snap)) as server:
        _, stub = stub_for(server)
        create_rgbd_scene(stub, scene_id="keep")
        stub.AddObject(
            cache_pb2.AddObjectRequest(
                scene_id="keep",
                cloud=cloud_msg(pts, cols),
                transform=matrix_transform(translation(0, 0.3, 1.8)),
                name="cube",
            )
        )
        create_rgbd_scene(stub, scene_id="gone")
        stub.DeleteScene(cache_pb2.DeleteSceneRequest(scene_id="gone"))
        before = _render(stub, "keep", w2c)
    assert sorted(p.name for p in snap.iterdir()) == [
        "keep.json",
        "keep.pt",
    ]  # no temporaries, deleted is gone

    with running(snapshot_dir=str(snap)) as server:
        _, stub = stub_for(server)
        listed = stub.ListScenes(cache_pb2.ListScenesRequest()).scenes
        assert [s.scene_id for s in listed] == ["keep"] and listed[0].objects[0].name == "cube"
        assert server.store.entry("keep").resident is False  # loaded lazily on first use
        after = _render(stub, "keep", w2c)
        for name in before:
            np.testing.assert_array_equal(before[name], after[name], err_msg=name)
        moved = translation(0.2, 0.3, 1.8)
        stub.UpdateObject(
            cache_pb2.UpdateObjectRequest(scene_id="keep", object_id=0, transform=matrix_transform(moved))
        )
        stub.AddObject(cache_pb2.AddObjectRequest(scene_id="keep", cloud=cloud_msg(pts)))

    with running(snapshot_dir=str(snap)) as server:
        _, stub = stub_for(server)
        info = stub.GetScene(cache_pb2.GetSceneRequest(scene_id="keep")).scene
        assert [o.object_id for o in info.objects] == [0, 1]
        np.testing.assert_array_equal(np.array(info.objects[0].transform.values).reshape(4, 4), moved)
        obj = stub.AddObject(cache_pb2.AddObjectRequest(scene_id="keep", cloud=cloud_msg(pts))).object
        assert obj.object_id == 2  # ids are never reused, across restarts too


def test_snapshot_without_its_json_is_described_from_its_state_once_loaded(tmp_path):
    """A crash between the two renames of a first snapshot write leaves ``<id>.pt`` without ``<id>.json``."""
    with running(snapshot_dir=str(tmp_path)) as server:
        _, stub = stub_for(server)
        created = create_rgbd_scene(stub, scene_id="bare")
    (tmp_path / "bare.json").unlink()
    with running(snapshot_dir=str(tmp_path)) as server:
        _, stub = stub_for(server)
        _render(stub, "bare")  # loads the snapshot
        info = stub.GetScene(cache_pb2.GetSceneRequest(scene_id="bare")).scene
        assert info == created
        frames = stub.RenderTrajectory(
            cache_pb2.RenderTrajectoryRequest(
                scene_id="bare", trajectory=types_pb2.TrajectorySpec(frame_count=2)
            ),
            timeout=30,
        )
        assert [f.frame.index for f in frames] == [0, 1]  # the seed camera is known again


def test_snapshot_scenes_come_back_after_eviction(tmp_path):
    size = _scene_bytes()
    with running(snapshot_dir=str(tmp_path), memory_budget=size + size // 2) as server:
        _, stub = stub_for(server)
        create_rgbd_scene(stub, scene_id="first", seed=1)
        pts, cols = cube_cloud()
        T = matrix_transform(translation(0, 0.3, 1.8))
        stub.AddObject(cache_pb2.AddObjectRequest(scene_id="first", cloud=cloud_msg(pts, cols), transform=T))
        want = _render(stub, "first")
        assert (want["object_mask"] == 0).any()
        create_rgbd_scene(stub, scene_id="second", seed=2)  # evicts "first" from the device, not from disk
        assert not server.store.entry("first").resident
        got = _render(stub, "first")  # reloaded from its snapshot; "second" makes room
        for name in want:
            np.testing.assert_array_equal(want[name], got[name])
        assert not server.store.entry("second").resident and server.store.evictions == 2
        assert server.store.bytes_in_use <= server.store.budget


def test_bursts_of_changes_coalesce_and_the_newest_state_is_kept(tmp_path):
    pts, cols = cube_cloud()
    with running(snapshot_dir=str(tmp_path)) as server:
        _, stub = stub_for(server)
        create_rgbd_scene(stub, scene_id="anim")
        oid = stub.AddObject(
            cache_pb2.AddObjectRequest(scene_id="anim", cloud=cloud_msg(pts, cols))
        ).object.object_id
        for k in range(30):  # an app moving the object every frame
            T = matrix_transform(translation(0.01 * k, 0.3, 1.8))
            stub.UpdateObject(cache_pb2.UpdateObjectRequest(scene_id="anim", object_id=oid, transform=T))
        want = _render(stub, "anim")
    with running(snapshot_dir=str(tmp_path)) as server:
        _, stub = stub_for(server)
        info = stub.GetScene(cache_pb2.GetSceneRequest(scene_id="anim")).scene
        np.testing.assert_allclose(
            np.array(info.objects[0].transform.values).reshape(4, 4), translation(0.29, 0.3, 1.8)
        )
        got = _render(stub, "anim")
        for name in want:
            np.testing.assert_array_equal(want[name], got[name])


def test_concurrent_clients_get_correct_results():
    with running(workers=16) as server:
        _, stub = stub_for(server)
        refs = {}
        for seed, sid in enumerate(("x", "y")):
            create_rgbd_scene(stub, scene_id=sid, seed=seed)
            image, depth, K = rgbd(seed=seed)
            refs[sid] = Scene.from_rgbd(image, depth, K)
        K = rgbd()[2]
        errors, done = [], []

        def client(i):
            channel, st = stub_for(server)
            try:
                for j in range(4):
                    sid = "xy"[(i + j) % 2]
                    w2c = w2c_shift(0.01 * i, 0.0, 0.01 * j)
                    got = _render(st, sid, w2c)
                    out = refs[sid].render(w2c[None], K[None], H, W)
                    for name in got:
                        if not np.array_equal(got[name], getattr(out, name)[0].numpy()):
                            errors.append((i, j, name))
                    done.append(1)
            except Exception as exc:  # noqa: BLE001
                errors.append(repr(exc))
            finally:
                channel.close()

        def mutator():
            pts, _ = cube_cloud()
            oid = stub.AddObject(
                cache_pb2.AddObjectRequest(scene_id="y", cloud=cloud_msg(pts + [0, 0, 50]))
            ).object
            for k in range(5):
                T = translation(0.0, 0.0, 50.0 + k)  # far behind the wall: never visible
                stub.UpdateObject(
                    cache_pb2.UpdateObjectRequest(
                        scene_id="y", object_id=oid.object_id, transform=matrix_transform(T)
                    )
                )

        threads = [threading.Thread(target=client, args=(i,)) for i in range(6)] + [
            threading.Thread(target=mutator)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert errors == [] and len(done) == 24


def test_deadline_while_waiting_for_the_device_is_honoured():
    with running() as server:
        _, stub = stub_for(server)
        create_rgbd_scene(stub, scene_id="d")
        with server.store.device():  # someone else holds the device
            with pytest.raises(grpc.RpcError) as exc:
                _render(stub, "d", timeout=0.5)
            assert exc.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            # The server side gave up too (while the device is still held): its status is recorded.
            assert wait_for(lambda: server.metrics.count("Render", "DEADLINE_EXCEEDED") >= 1, 20.0)
        _render(stub, "d")
        assert server.metrics.count("Render", "OK") == 1


def test_bookkeeping_completes_when_the_deadline_passes_after_the_change():
    """AddObject gets the device and adds the object; its deadline then passes while a later request holds
    the device. The object is in the scene, so its size, description and snapshot must follow."""
    with running() as server:
        _, stub = stub_for(server)
        create_rgbd_scene(stub, scene_id="late")
        queue = server.store._device_lock
        pts, cols = cube_cloud()
        errors, release = [], threading.Event()

        def add():
            try:
                stub.AddObject(
                    cache_pb2.AddObjectRequest(scene_id="late", cloud=cloud_msg(pts, cols)), timeout=2
                )
            except grpc.RpcError as exc:
                errors.append(exc.code())

        def hold():
            with server.store.device():
                release.wait(60)

        with server.store.device():
            adder = threading.Thread(target=add)
            adder.start()
            assert wait_for(lambda: queue.waiting == 1)  # AddObject queued first ...
            holder = threading.Thread(target=hold)
            holder.start()
            assert wait_for(lambda: queue.waiting == 2)  # ... then a long request
        adder.join(30)  # the object was added, then the deadline passed behind the holder
        assert errors == [grpc.StatusCode.DEADLINE_EXCEEDED]
        entry = server.store.entry("late")
        # Let the server side see its deadline too (unless the bookkeeping is already under way).
        wait_for(
            lambda: (
                server.metrics.count("AddObject", "DEADLINE_EXCEEDED") == 1
                or entry.nbytes == entry.scene.device_bytes()
            )
        )
        release.set()
        holder.join(30)
        assert entry.scene.num_objects == 1
        assert wait_for(lambda: len(entry.info.get("objects", [])) == 1, 10.0)
        assert entry.nbytes == entry.scene.device_bytes() == server.store.bytes_in_use


def test_fair_lock_serves_waiters_in_arrival_order():
    lock = FairLock()
    lock.acquire()
    order = []

    def waiter(i):
        lock.acquire()
        order.append(i)
        lock.release()

    threads = []
    for i in range(5):
        t = threading.Thread(target=waiter, args=(i,))
        t.start()
        assert wait_for(lambda n=i + 1: lock.waiting == n, 20.0)
        threads.append(t)
    lock.release()
    for t in threads:
        t.join(10)
    assert order == [0, 1, 2, 3, 4]
