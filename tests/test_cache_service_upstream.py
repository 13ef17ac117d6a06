"""Issue 11 over a real gRPC server on 127.0.0.1: RenderOptions.foreground_masking renders what the library
renders, SceneInfo reports clamped depth (CreateScene, UpdateScene), bad combinations are INVALID_ARGUMENT."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from cache_service_helpers import H, W, decode_frame, rgbd, start, stub_for, view_msg, w2c_shift

from objvid.cache import Scene
from objvid.runtime import wire
from objvid.v1 import cache_pb2


@pytest.fixture(scope="module")
def stub():
    srv = start()
    channel, s = stub_for(srv)
    yield s
    channel.close()
    srv.stop(0)


def _edgy():
    image, depth, K = rgbd()
    depth = depth.copy()
    depth[10:30, 20:40] = 0.8  # a near box: depth edges for the boundary mesh
    return image, depth, K


def test_foreground_masking_option_matches_the_library(stub):
    image, depth, K = _edgy()
    stub.CreateScene(cache_pb2.CreateSceneRequest(rgbd=view_msg(image, depth, K), scene_id="fg"), timeout=30)
    ref = Scene.from_rgbd(image, depth, K)
    w2c = w2c_shift(0.15, 0.0, 0.05, yaw_deg=4.0)
    for fg in (False, True):
        opts = cache_pb2.RenderOptions(mode=3, outputs=[1, 2], foreground_masking=fg)
        resp = stub.Render(
            cache_pb2.RenderRequest(scene_id="fg", camera=wire.encode_camera(K, w2c, W, H), options=opts)
        )
        got = decode_frame(resp.frame)
        out = ref.render(w2c, K, H, W, mode="scene", foreground_masking=fg)
        np.testing.assert_array_equal(got["rgb"], out.rgb[0].numpy())
        np.testing.assert_array_equal(got["mask"], out.mask[0].numpy())
    plain = ref.render(w2c, K, H, W, mode="scene")
    assert (plain.mask & ~out.mask).any()  # it cut something here
    bad = cache_pb2.RenderOptions(mode=2, foreground_masking=True)  # full mode: no GEN3C splat
    with pytest.raises(grpc.RpcError) as err:
        stub.Render(
            cache_pb2.RenderRequest(scene_id="fg", camera=wire.encode_camera(K, w2c, W, H), options=bad)
        )
    assert (
        err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "foreground_masking" in err.value.details()
    )


def test_clamped_depth_is_reported_and_warned(stub):
    image, depth, K = rgbd()
    ok = stub.CreateScene(
        cache_pb2.CreateSceneRequest(rgbd=view_msg(image, depth, K), scene_id="m"), timeout=30
    )
    assert ok.scene.depth_clamped_fraction == 0.0 and ok.scene.depth_warning == ""
    mm = np.where(np.isfinite(depth), depth * 1000.0, np.inf).astype(np.float32)  # millimetres, sky inf
    resp = stub.CreateScene(
        cache_pb2.CreateSceneRequest(rgbd=view_msg(image, mm, K), scene_id="mm"), timeout=30
    )
    finite = np.isfinite(depth)
    assert resp.scene.depth_clamped_fraction == pytest.approx((mm[finite] > 100).mean())
    assert "--depth-units" in resp.scene.depth_warning and "clamped" in resp.scene.depth_warning
    got = stub.GetScene(cache_pb2.GetSceneRequest(scene_id="mm"), timeout=30).scene
    assert got.depth_warning == resp.scene.depth_warning
    upd = stub.UpdateScene(
        cache_pb2.UpdateSceneRequest(
            scene_id="m", view=view_msg(image, mm, K, w2c_shift(0.05)), skip_alignment=True
        ),
        timeout=60,
    )
    assert upd.scene.depth_warning and upd.scene.depth_clamped_fraction > 0.01
