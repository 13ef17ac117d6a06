"""CreateVideoScene + frame-synchronous RenderTrajectory through a real cache server on 127.0.0.1."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
import torch
from cache_service_helpers import (
    cloud_msg,
    cube_cloud,
    decode_frame,
    matrix_transform,
    running,
    stub_for,
    translation,
    view_msg,
)

from objvid.cache.dynamic import DynamicScene
from objvid.testing.video import synthetic_rgbd_video
from objvid.v1 import cache_pb2, types_pb2


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def video_stream(video, scene_id="clip", per_msg=3, num_frames=None, **kw):
    n = len(video["rgb"])
    for a in range(0, n, per_msg):
        views = [view_msg(video["rgb"][i], video["depth"][i], video["K"][i], video["w2c"][i], video["mask"][i])
                 for i in range(a, min(n, a + per_msg))]  # fmt: skip
        first = {"scene_id": scene_id, "num_frames": num_frames or n, **kw} if a == 0 else {}
        yield cache_pb2.CreateVideoSceneRequest(frames=views, **first)


def test_video_scene_renders_frame_synchronously():
    video = synthetic_rgbd_video(frames=7, height=32, width=48)
    with running() as server:
        _, stub = stub_for(server)
        info = stub.CreateVideoScene(video_stream(video, float32_depth=True), timeout=60).scene
        assert info.scene_id == "clip" and info.num_points == 7 * 32 * 48 and info.num_buffer_slots == 1
        pts, cols = cube_cloud(size=0.1)
        oid = stub.AddObject(cache_pb2.AddObjectRequest(
            scene_id="clip", cloud=cloud_msg(pts, cols), transform=matrix_transform(translation(0.45, 0.2, 2.5))
        ), timeout=30).object.object_id  # fmt: skip
        spec = types_pb2.TrajectorySpec(
            preset=types_pb2.TRAJECTORY_PRESET_LEFT, frame_count=4, movement_distance=0.3
        )
        options = cache_pb2.RenderOptions(mode=cache_pb2.RENDER_MODE_FUSED, object_radius_px=1.5, outputs=[
            cache_pb2.RENDER_OUTPUT_RGB, cache_pb2.RENDER_OUTPUT_MASK, cache_pb2.RENDER_OUTPUT_OBJECT_MASK])  # fmt: skip
        req = cache_pb2.RenderTrajectoryRequest(
            scene_id="clip", trajectory=spec, start_frame=2, options=options
        )
        frames = [decode_frame(r.frame) for r in stub.RenderTrajectory(req, timeout=60)]
    assert len(frames) == 4
    # the same cameras and sources in-process: the service is a thin adapter over DynamicScene
    from objvid.runtime import trajectory as traj

    w2cs, Ks = traj.generate_camera_trajectory("left", video["w2c"][2:6], video["K"][2:6], 4, 0.3)
    local = DynamicScene(
        video["rgb"], video["depth"], video["K"], video["w2c"], video["mask"], depth_dtype="float32"
    )
    local.add_object(pts, cols, translation(0.45, 0.2, 2.5))
    want = local.render(w2cs, Ks, start=2, outputs=("rgb", "mask", "object_mask"), object_radius_px=1.5)
    for f, got in enumerate(frames):
        np.testing.assert_array_equal(got["rgb"][0], want.rgb[f, 0].numpy())
        np.testing.assert_array_equal(got["object_mask"][0], want.object_mask[f, 0].numpy())
        assert (got["object_mask"][0] == oid).sum() > 5


def test_bad_video_streams():
    video = synthetic_rgbd_video(frames=4, height=16, width=24)
    with running() as server:
        _, stub = stub_for(server)
        with pytest.raises(grpc.RpcError) as err:
            stub.CreateVideoScene(video_stream(video, num_frames=5), timeout=30)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "frames: 4 frames received, num_frames=5" in err.value.details()
        bad = dict(video, w2c=video["w2c"].copy())
        bad["w2c"][2, :3, :3] *= 1.3
        with pytest.raises(grpc.RpcError) as err:
            stub.CreateVideoScene(video_stream(bad), timeout=30)
        assert (
            err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "frames[2].camera" in err.value.details()
        )
        stub.CreateVideoScene(video_stream(video), timeout=30)
        spec = types_pb2.TrajectorySpec(frame_count=3)
        with pytest.raises(grpc.RpcError) as err:
            list(stub.RenderTrajectory(cache_pb2.RenderTrajectoryRequest(scene_id="clip", trajectory=spec,
                                                                          start_frame=2), timeout=30))  # fmt: skip
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "start_frame: frames 2..4 requested, the video has 4" in err.value.details()
        with pytest.raises(grpc.RpcError) as err:
            stub.UpdateScene(cache_pb2.UpdateSceneRequest(scene_id="clip", view=view_msg(
                video["rgb"][0], video["depth"][0], video["K"][0])), timeout=30)  # fmt: skip
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
