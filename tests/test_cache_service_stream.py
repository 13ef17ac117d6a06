"""RenderTrajectory streaming: the batches ramp up (2, 4, 8, ...) without changing a pixel; a client that
cancels mid-stream (or disappears) stops the server's work early, measured by the server's rendered-frame
counter, and the server stays healthy."""

from __future__ import annotations

import time

import grpc
import numpy as np
import pytest
from cache_service_helpers import (
    create_rgbd_scene,
    decode_frame,
    rgbd,
    running,
    stub_for,
    w2c_shift,
    wait_for,
)

from objvid.cache.scene import Scene
from objvid.cache.server import Limits
from objvid.cache.trajectory_rpc import trajectory_batches
from objvid.runtime import channels, wire
from objvid.v1 import cache_pb2

TOTAL = 2000


def _long_request(sid: str, height=96, width=128) -> cache_pb2.RenderTrajectoryRequest:
    _, _, K = rgbd()
    K = K * [[width / 64], [height / 48], [1]]
    cams = [wire.encode_camera(K, w2c_shift(0.0001 * i), width, height) for i in range(TOTAL)]
    return cache_pb2.RenderTrajectoryRequest(
        scene_id=sid, cameras=cams, options=cache_pb2.RenderOptions(outputs=[1, 2, 3])
    )


@pytest.mark.parametrize("total, batch", [(1, 8), (13, 8), (121, 8), (10, 3), (7, 2), (5, 1), (40, 16)])
def test_trajectory_batches_ramp_up_and_start_at_even_cameras(total, batch):
    ranges = trajectory_batches(total, batch)
    assert ranges[0][0] == 0 and ranges[-1][1] == total
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:], strict=False))  # contiguous, in order
    sizes = [b - a for a, b in ranges]
    cap = batch - batch % 2 if batch > 1 else 1
    assert max(sizes) <= cap and sizes[0] == min(2, cap, total)
    if batch > 1:  # GEN3C's normaliser pairs views 2k, 2k+1: no range may split a pair
        assert all(a % 2 == 0 for a, _ in ranges)
    full = [b - a for a, b in ranges[:-1]]  # before the tail: doubling up to the cap
    assert full == [min(cap, 2 << i) if batch > 1 else 1 for i in range(len(full))]


def test_ramped_trajectory_equals_one_render_call():
    """Cameras that back away: each frame's max depth differs, so GEN3C's paired depth normaliser would
    change pixels if a batch split a pair (the first check shows the scene is sensitive to that)."""
    image, depth, K = rgbd()
    ref = Scene.from_rgbd(image, depth, K, np.eye(4))
    w2cs = np.stack([w2c_shift(0.05 + 0.02 * i, 0.0, 0.1 + 0.4 * i, yaw_deg=3 + 2 * i) for i in range(13)])
    Ks = np.repeat(K[None], 13, 0)
    whole = ref.render(w2cs, Ks, 48, 64)
    alone = ref.render(w2cs[:1], Ks[:1], 48, 64)  # frame 0 without its pair partner
    assert not np.array_equal(alone.rgb[0].numpy(), whole.rgb[0].numpy())
    with running(trajectory_batch=8) as server:
        channel, stub = stub_for(server)
        create_rgbd_scene(stub, scene_id="ramp")
        req = cache_pb2.RenderTrajectoryRequest(
            scene_id="ramp",
            cameras=[wire.encode_camera(K, T, 64, 48) for T in w2cs],
            options=cache_pb2.RenderOptions(outputs=[1, 2, 3]),
        )
        frames = [m.frame for m in stub.RenderTrajectory(req, timeout=60)]
        channel.close()
    assert [f.index for f in frames] == list(range(13))
    for t, f in enumerate(frames):
        got = decode_frame(f)
        for name in ("rgb", "mask", "depth"):
            np.testing.assert_array_equal(got[name], getattr(whole, name)[t].numpy(), err_msg=f"{name}[{t}]")


def test_cancel_mid_stream_stops_the_work():
    with running(limits=Limits(max_cameras=TOTAL)) as server:
        channel, stub = stub_for(server)
        create_rgbd_scene(stub, scene_id="long")
        call = stub.RenderTrajectory(_long_request("long"), timeout=120)
        got = [next(call).frame.index for _ in range(3)]
        assert got == [0, 1, 2]
        call.cancel()
        assert wait_for(lambda: server.metrics.count("RenderTrajectory", "CANCELLED") == 1)
        rendered = server.servicer.frames_rendered
        assert 3 <= rendered < TOTAL // 4, rendered  # stopped within a few batches, far from the end
        time.sleep(0.3)
        assert server.servicer.frames_rendered == rendered  # and nothing renders after that
        # Still healthy and serving.
        assert channels.check_health(channel)
        frames = list(stub.RenderTrajectory(cache_pb2.RenderTrajectoryRequest(
            scene_id="long", cameras=[wire.encode_camera(rgbd()[2], np.eye(4), 64, 48)] * 3)))  # fmt: skip
        assert [f.frame.index for f in frames] == [0, 1, 2]


def test_client_that_disappears_stops_the_work():
    with running(limits=Limits(max_cameras=TOTAL)) as server:
        _, stub = stub_for(server)
        create_rgbd_scene(stub, scene_id="long")
        channel = channels.make_channel(server.address)
        from objvid.v1 import cache_pb2_grpc

        call = cache_pb2_grpc.CacheServiceStub(channel).RenderTrajectory(_long_request("long"), timeout=120)
        next(call)
        channel.close()  # the whole connection goes away, as when a client process dies
        assert wait_for(lambda: server.metrics.count("RenderTrajectory", "CANCELLED") == 1)
        assert server.servicer.frames_rendered < TOTAL // 4
        assert channels.check_health(channels.make_channel(server.address))


def test_deadline_mid_stream_stops_the_work():
    with running(limits=Limits(max_cameras=TOTAL)) as server:
        _, stub = stub_for(server)
        create_rgbd_scene(stub, scene_id="long")
        call = stub.RenderTrajectory(_long_request("long"), timeout=1.0)
        n = 0
        try:
            for _ in call:
                n += 1
                time.sleep(0.05)  # a slow consumer: the deadline passes long before the end
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert n < TOTAL
        assert wait_for(lambda: server.metrics.count("RenderTrajectory", "OK") == 0 and
                         sum(server.metrics.count("RenderTrajectory", c) for c in ("CANCELLED", "DEADLINE_EXCEEDED")) == 1)  # fmt: skip
        assert server.servicer.frames_rendered < TOTAL // 4
