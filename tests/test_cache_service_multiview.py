"""CacheService with multi-view scenes: CreateScene(views), per-frame slot sources on the wire, no UpdateScene,
clear errors for bad views."""

from __future__ import annotations

import re

import grpc
import numpy as np
import pytest
from cache_service_helpers import (
    H,
    W,
    cloud_msg,
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

from objvid.cache import Scene
from objvid.cache.multiview import render_selected
from objvid.runtime import wire
from objvid.runtime.frames import decode_frame_bytes
from objvid.v1 import cache_pb2, types_pb2

CAMS = [w2c_shift(0.0), w2c_shift(0.6, yaw_deg=-20.0)]  # view 1: moved and turned, sees other parts


def views_request(scene_id="mv", seed_view=0, **kw):
    msgs = []
    for i, w2c in enumerate(CAMS):
        image, depth, K = rgbd(seed=i)
        msgs.append(view_msg(image, depth, K, w2c))
    return cache_pb2.CreateSceneRequest(
        scene_id=scene_id, views=cache_pb2.RgbdViews(views=msgs, seed_view=seed_view, **kw)
    )


def library_scene(seed_view=0):
    imgs, depths, Ks = zip(*(rgbd(seed=i) for i in range(2)), strict=True)
    return Scene.from_views(list(imgs), list(depths), list(Ks), CAMS, seed_view=seed_view)


def trajectory_cams(T=9):
    _, _, K = rgbd()
    w2cs = [w2c_shift(0.6 * t / (T - 1), yaw_deg=-20.0 * t / (T - 1)) for t in range(T)]
    return np.stack(w2cs), np.repeat(K[None], T, 0)


def test_views_scene_renders_selected_slots_with_sources_per_frame():
    with running() as server:
        _, stub = stub_for(server)
        info = stub.CreateScene(views_request(seed_view=1), timeout=30).scene
        assert info.num_source_views == 2 and info.seed_view == 1 and info.num_buffer_slots == 2
        np.testing.assert_allclose(np.array(info.seed_camera.world_to_camera).reshape(4, 4), CAMS[1])
        pts, cols = cube_cloud(size=0.4)
        oid = stub.AddObject(cache_pb2.AddObjectRequest(scene_id="mv", cloud=cloud_msg(pts, cols),
                                                        transform=matrix_transform(translation(0.3, 0.5, 2.0)))
                             ).object.object_id  # fmt: skip
        w2cs, Ks = trajectory_cams()
        cams = [wire.encode_camera(K, w, W, H) for K, w in zip(Ks, w2cs, strict=True)]
        opts = cache_pb2.RenderOptions(outputs=[1, 2, 4])
        frames = [r.frame for r in stub.RenderTrajectory(
            cache_pb2.RenderTrajectoryRequest(scene_id="mv", cameras=cams, options=opts), timeout=60)]  # fmt: skip
        lib = library_scene(seed_view=1)
        lib.add_object(pts, cols, translation(0.3, 0.5, 2.0))
        want, sources = render_selected(lib, w2cs, Ks, H, W, outputs=("rgb", "mask", "object_mask"))
        assert [list(f.slot_sources) for f in frames] == sources.tolist()
        assert {int(s) for s in sources.ravel() if s >= 0} == {0, 1}
        for t, f in enumerate(frames):
            got = decode_frame(f)
            np.testing.assert_array_equal(got["rgb"], want.rgb[t].numpy())
            np.testing.assert_array_equal(got["object_mask"], want.object_mask[t].numpy())
        assert any((decode_frame(f)["object_mask"] == oid).any() for f in frames)

        # Render (one camera): the selection over that single frame
        resp = stub.Render(cache_pb2.RenderRequest(scene_id="mv", camera=cams[0], options=opts), timeout=30)
        one, src = render_selected(lib, w2cs[:1], Ks[:1], H, W, outputs=("rgb", "mask"))
        assert list(resp.frame.slot_sources) == src[0].tolist()
        np.testing.assert_array_equal(decode_frame(resp.frame)["rgb"], one.rgb[0].numpy())

        # multi-view scenes are not updated, as upstream
        image, depth, K = rgbd()
        with pytest.raises(grpc.RpcError) as err:
            stub.UpdateScene(
                cache_pb2.UpdateSceneRequest(scene_id="mv", view=view_msg(image, depth, K, CAMS[0]))
            )
        assert (
            err.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "not updated" in err.value.details()
        )


def test_trajectory_spec_starts_at_the_seed_view_and_the_wire_decoder_reads_sources():
    with running() as server:
        channel, stub = stub_for(server)
        stub.CreateScene(views_request(seed_view=1), timeout=30)
        spec = types_pb2.TrajectorySpec(frame_count=5)
        call = channel.unary_stream("/objvid.v1.CacheService/RenderTrajectory",
                                    request_serializer=lambda m: m.SerializeToString(),
                                    response_deserializer=lambda b: b)  # fmt: skip
        raw = list(call(cache_pb2.RenderTrajectoryRequest(scene_id="mv", trajectory=spec), timeout=60))
        parsed = [cache_pb2.RenderTrajectoryResponse.FromString(b).frame for b in raw]
        for b, f in zip(raw, parsed, strict=True):
            assert decode_frame_bytes(b)["slot_sources"] == list(f.slot_sources)
        # frame 0 is the seed camera (view 1): view 1 alone covers it
        assert list(parsed[0].slot_sources).count(1) == 1 and -1 in parsed[0].slot_sources


@pytest.mark.parametrize(
    "mutate,match",
    [
        (lambda r: r.views.ClearField("views"), "views.views: no views"),
        (lambda r: setattr(r.views, "seed_view", 2), "views.seed_view: 2 is not a view index"),
        (lambda r: setattr(r.views, "frame_buffer_max", 3), "views.frame_buffer_max: must be 1 or 2"),
        (lambda r: setattr(r.views, "full_threshold", 1.5), "views.full_threshold"),
        (lambda r: r.views.views[1].camera.world_to_camera.__setitem__(0, 2.0), r"views.views\[1\].camera"),
        (
            lambda r: r.views.views[1].mask.CopyFrom(wire.encode_tensor(np.zeros((H, W), bool))),
            r"views.views\[1\].depth: empty scene",
        ),
        (
            lambda r: r.views.views[0].depth.CopyFrom(wire.encode_tensor(np.ones((H, W - 1), np.float32))),
            r"views.views\[0\].depth",
        ),
    ],
)
def test_bad_views_are_invalid_argument_naming_the_field(mutate, match):
    with running() as server:
        _, stub = stub_for(server)
        req = views_request()
        mutate(req)
        with pytest.raises(grpc.RpcError) as err:
            stub.CreateScene(req, timeout=30)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert re.search(match, err.value.details()), err.value.details()
        assert len(stub.ListScenes(cache_pb2.ListScenesRequest()).scenes) == 0


def test_all_sources_renders_every_view_in_source_order():
    with running() as server:
        _, stub = stub_for(server)
        stub.CreateScene(views_request(), timeout=30)
        w2cs, Ks = trajectory_cams(5)
        cams = [wire.encode_camera(K, w, W, H) for K, w in zip(Ks, w2cs, strict=True)]
        opts = cache_pb2.RenderOptions(outputs=[1, 2], all_sources=True)
        frames = [r.frame for r in stub.RenderTrajectory(
            cache_pb2.RenderTrajectoryRequest(scene_id="mv", cameras=cams, options=opts), timeout=60)]  # fmt: skip
        assert [list(f.slot_sources) for f in frames] == [[0, 1]] * 5
        want = library_scene().render(w2cs, Ks, H, W, outputs=("rgb", "mask"))  # every slot, no selection
        for t, f in enumerate(frames):
            np.testing.assert_array_equal(decode_frame(f)["rgb"], want.rgb[t].numpy())
