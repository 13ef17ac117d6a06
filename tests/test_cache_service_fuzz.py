"""Property-based fuzzing of a live cache server: malformed and half-valid messages for every RPC get a
clean status (never INTERNAL / UNKNOWN, never a dead server), and a known scene still renders bit for bit."""

from __future__ import annotations

import collections

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
    rgbd,
    start,
    stub_for,
    w2c_shift,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from objvid.cache.server import Limits
from objvid.runtime import channels, wire
from objvid.v1 import cache_pb2, types_pb2

KNOWN = "known"
FUZZ = "fuzz"  # mutating RPCs may do anything to this one
ALLOWED = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.ALREADY_EXISTS,
}

# -- strategies -------------------------------------------------------------------------------------

anyfloat = st.floats(allow_nan=True, allow_infinity=True, width=64)
nicefloat = st.floats(-10, 10, allow_nan=False)
small_int = st.integers(-3, 80)
enum_int = st.integers(-2, 12)


@st.composite
def tensors(draw):
    """Random junk, or a well-formed tensor of a random dtype/shape with random bytes."""
    if draw(st.booleans()):
        return types_pb2.Tensor(
            dtype=draw(enum_int),
            shape=draw(st.lists(small_int, max_size=4)),
            data=draw(st.binary(max_size=600)),
        )
    dt = draw(st.sampled_from(wire.supported_dtypes()))
    shape = draw(st.lists(st.integers(0, 70), min_size=1, max_size=3))
    n = int(np.prod(shape)) * dt.itemsize
    if n > 60_000:
        shape, n = [1], dt.itemsize
    return types_pb2.Tensor(
        dtype=list(wire._PROTO_DTYPE.values())[wire.supported_dtypes().index(dt)],
        shape=shape,
        data=draw(st.binary(min_size=n, max_size=n)),
    )


@st.composite
def cameras(draw):
    """Junk, or a near-valid camera with one perturbed aspect."""
    if draw(st.booleans()):
        return types_pb2.Camera(
            intrinsics=draw(st.lists(anyfloat, max_size=12)),
            world_to_camera=draw(st.lists(anyfloat, max_size=18)),
            width=draw(st.integers(0, 2**32 - 1)),
            height=draw(st.integers(0, 300)),
        )
    K = rgbd()[2].copy()
    w2c = w2c_shift(draw(nicefloat) * 0.05, 0, 0, yaw_deg=draw(nicefloat))
    which = draw(st.integers(0, 5))
    if which == 1:
        K[draw(st.integers(0, 2)), draw(st.integers(0, 2))] = draw(anyfloat)
    elif which == 2:
        w2c[draw(st.integers(0, 3)), draw(st.integers(0, 3))] = draw(anyfloat)
    w, h = (W, H) if which != 3 else (draw(st.integers(0, 400)), draw(st.integers(0, 400)))
    return wire.encode_camera(K, w2c, w, h)


images = st.one_of(
    st.builds(types_pb2.Image, encoded=st.binary(max_size=300)),
    st.builds(types_pb2.Image, pixels=tensors()),
    st.just(wire.encode_image(rgbd()[0])),
    st.just(wire.encode_image(rgbd()[0], png=True)),
)
clouds = st.builds(
    types_pb2.PointCloud, positions=tensors(), colors=st.one_of(st.none(), tensors()), normals=st.none()
)
views = st.builds(cache_pb2.RgbdView, image=images, depth=st.one_of(tensors(), st.just(wire.encode_tensor(rgbd()[1]))),
                  mask=st.one_of(st.none(), tensors()), camera=cameras())  # fmt: skip
transforms = st.one_of(
    st.builds(
        types_pb2.Transform, matrix=st.builds(types_pb2.Matrix4, values=st.lists(anyfloat, max_size=17))
    ),
    st.builds(
        types_pb2.Transform,
        pose=st.builds(
            types_pb2.Pose,
            translation=st.lists(anyfloat, max_size=4),
            rotation_deg=st.lists(anyfloat, max_size=4),
            scale=anyfloat,
        ),
    ),  # fmt: skip
    st.just(types_pb2.Transform()),
)
options = st.builds(cache_pb2.RenderOptions, mode=enum_int, splat=enum_int, outputs=st.lists(enum_int, max_size=5),
                    encoding=enum_int, footprint=st.integers(0, 40), object_radius_px=anyfloat)  # fmt: skip
scene_ids = st.one_of(st.sampled_from([KNOWN, FUZZ, "", "nope"]), st.text(max_size=70))
mut_ids = st.one_of(st.sampled_from([FUZZ, "", "nope"]), st.text(max_size=70)).filter(lambda s: s != KNOWN)
trajs = st.builds(types_pb2.TrajectorySpec, preset=enum_int, rotation=enum_int, movement_distance=anyfloat,
                  frame_count=st.integers(0, 200), center_depth=anyfloat)  # fmt: skip
obj_files = st.builds(cache_pb2.ObjectFile, data=st.binary(max_size=400),
                      filename=st.sampled_from(["", "a.ply", "b.obj", "c.glb", "d.stl", "e.gltf", "x.txt"]),
                      sample_points=st.integers(0, 100_000))  # fmt: skip

calls = st.one_of(
    st.tuples(st.just("Render"), st.builds(cache_pb2.RenderRequest, scene_id=scene_ids, camera=cameras(), options=options)),
    st.tuples(st.just("RenderTrajectory"), st.builds(cache_pb2.RenderTrajectoryRequest, scene_id=scene_ids,
              cameras=st.lists(cameras(), max_size=3), trajectory=st.one_of(st.none(), trajs), options=options)),
    st.tuples(st.just("CreateScene"), st.one_of(
        st.builds(cache_pb2.CreateSceneRequest, rgbd=views, filter_points_threshold=anyfloat, scene_id=mut_ids),
        st.builds(cache_pb2.CreateSceneRequest, points=clouds, scene_id=mut_ids))),
    st.tuples(st.just("AddObject"), st.one_of(
        st.builds(cache_pb2.AddObjectRequest, scene_id=mut_ids, cloud=clouds, transform=st.one_of(st.none(), transforms),
                  name=st.text(max_size=300)),
        st.builds(cache_pb2.AddObjectRequest, scene_id=mut_ids, file=obj_files))),
    st.tuples(st.just("PlaceObject"), st.builds(cache_pb2.PlaceObjectRequest, scene_id=mut_ids, object_id=small_int,
              anchor_u=st.one_of(st.none(), anyfloat), anchor_v=st.one_of(st.none(), anyfloat),
              height=st.one_of(st.none(), anyfloat))),
    st.tuples(st.just("UpdateObject"), st.builds(cache_pb2.UpdateObjectRequest, scene_id=mut_ids, object_id=small_int,
              transform=st.one_of(st.none(), transforms))),
    st.tuples(st.just("RemoveObject"), st.builds(cache_pb2.RemoveObjectRequest, scene_id=mut_ids, object_id=small_int)),
    st.tuples(st.just("UpdateScene"), st.builds(cache_pb2.UpdateSceneRequest, scene_id=mut_ids, view=views,
              skip_alignment=st.booleans())),
    st.tuples(st.just("GetScene"), st.builds(cache_pb2.GetSceneRequest, scene_id=scene_ids)),
    st.tuples(st.just("ExportScene"), st.builds(cache_pb2.ExportSceneRequest, scene_id=scene_ids, exclude_objects=st.booleans())),
    st.tuples(st.just("DeleteScene"), st.builds(cache_pb2.DeleteSceneRequest, scene_id=mut_ids)),
)  # fmt: skip


@pytest.fixture(scope="module")
def live():
    server = start(limits=Limits(max_image_pixels=100 * 100, max_points=5000, max_objects=4, max_cameras=16))
    channel, stub = stub_for(server)
    create_rgbd_scene(stub, scene_id=KNOWN)
    pts, cols = cube_cloud()
    stub.AddObject(cache_pb2.AddObjectRequest(scene_id=KNOWN, cloud=cloud_msg(pts + [0, 0.3, 1.8], cols)))
    yield server, stub
    channel.close()
    server.stop(0)


def _known_render(stub):
    K = rgbd()[2]
    req = cache_pb2.RenderRequest(
        scene_id=KNOWN,
        camera=wire.encode_camera(K, w2c_shift(0.03, yaw_deg=2), W, H),
        options=cache_pb2.RenderOptions(outputs=[1, 2, 3, 4]),
    )
    return decode_frame(stub.Render(req, timeout=30).frame)


def _fuzz_once(stub, call, fuzz_scene, seen):
    if fuzz_scene:  # keep a mutable scene around so object and update paths run too
        try:
            create_rgbd_scene(stub, scene_id=FUZZ)
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.ALREADY_EXISTS
    method, request = call
    try:
        result = getattr(stub, method)(request, timeout=30)
        if method == "RenderTrajectory":
            for _ in result:
                pass
        code = grpc.StatusCode.OK
    except grpc.RpcError as exc:
        code = exc.code()
        assert code in ALLOWED, f"{method}: {code} {exc.details()}"
        assert exc.details(), "every error carries a message"
    seen[(method, code.name)] += 1


def test_fuzzed_server_answers_cleanly_and_still_renders_correctly(live):
    server, stub = live
    before = _known_render(stub)
    seen = collections.Counter()

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
    @given(call=calls, fuzz_scene=st.booleans())
    def fuzz(call, fuzz_scene):
        _fuzz_once(stub, call, fuzz_scene, seen)

    fuzz()
    # Raw garbage that is not even a protobuf message: gRPC rejects it, the server keeps going.
    rng = np.random.default_rng(0)
    channel = channels.make_channel(server.address)
    for method in ("Render", "CreateScene", "AddObject"):
        call = channel.unary_unary(f"/objvid.v1.CacheService/{method}")
        for _ in range(5):
            try:
                call(rng.bytes(int(rng.integers(1, 200))), timeout=10)
            except grpc.RpcError as exc:
                assert exc.code() in ALLOWED | {grpc.StatusCode.INTERNAL}
    after = _known_render(stub)
    for name in before:
        np.testing.assert_array_equal(before[name], after[name], err_msg=name)
    codes = {code for _, code in seen}
    assert "INVALID_ARGUMENT" in codes and sum(seen.values()) >= 60, seen
    assert all(server.metrics.count(m, "INTERNAL") == 0 for m, _ in seen)
    assert channels.check_health(channel)
