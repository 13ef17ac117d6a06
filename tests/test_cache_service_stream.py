"""RenderTrajectory cancellation: a client that cancels mid-stream (or disappears) stops the server's work early,
measured by the server's rendered-frame counter, and the server stays healthy."""

from __future__ import annotations

import time

import grpc
import numpy as np
from cache_service_helpers import create_rgbd_scene, rgbd, running, stub_for, w2c_shift, wait_for

from objvid.cache.server import Limits
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
