"""Cache service over a real gRPC server on 127.0.0.1: renders equal the library's bit for bit, streaming
order and count, objects, export, scene listing, and every error class with the field it names."""

from __future__ import annotations

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
    start,
    stub_for,
    translation,
    view_msg,
    w2c_shift,
)

from objvid.cache import Scene
from objvid.cache.server import Limits
from objvid.runtime import channels, wire
from objvid.runtime.frames import decode_frame_bytes
from objvid.runtime.geometry import check_intrinsics, check_transform
from objvid.v1 import cache_pb2, types_pb2

ALL_OUTPUTS = [1, 2, 3, 4]
OBJ_T = translation(0.1, 0.3, 1.8)


@pytest.fixture(scope="module")
def server():
    srv = start(limits=Limits(max_image_pixels=200 * 200, max_points=20_000, max_objects=3, max_cameras=64))
    yield srv
    srv.stop(0)


@pytest.fixture(scope="module")
def stub(server):
    channel, stub = stub_for(server)
    yield stub
    channel.close()


@pytest.fixture(scope="module")
def scene_with_object(stub):
    """(scene_id, object_id, library Scene built from the same inputs)."""
    info = create_rgbd_scene(stub, scene_id="main")
    pts, cols = cube_cloud()
    obj = stub.AddObject(
        cache_pb2.AddObjectRequest(
            scene_id="main", cloud=cloud_msg(pts, cols), transform=matrix_transform(OBJ_T), name="cube"
        )
    ).object
    image, depth, K = rgbd()
    ref = Scene.from_rgbd(image, depth, K, np.eye(4))
    ref_oid = ref.add_object(pts, cols, OBJ_T)
    assert obj.object_id == ref_oid == 0 and obj.name == "cube" and obj.num_points == len(pts)
    assert info.num_buffer_slots == 1 and info.num_points == H * W
    return "main", obj.object_id, ref


def render_req(scene_id, w2c, K, **opts):
    return cache_pb2.RenderRequest(
        scene_id=scene_id, camera=wire.encode_camera(K, w2c, W, H), options=cache_pb2.RenderOptions(**opts)
    )


def assert_frame_equals(frame, out, t, names=("rgb", "mask", "depth", "object_mask")):
    got = decode_frame(frame)
    assert sorted(got) == sorted(names)
    for name in names:
        np.testing.assert_array_equal(got[name], getattr(out, name)[t].numpy(), err_msg=name)


@pytest.mark.parametrize(
    "mode, splat",
    [(1, 1), (1, 2), (2, 2), (3, 1), (4, 2), (0, 0)],
    ids=["fused-gen3c", "fused-zbuffer", "full", "scene", "objects", "defaults"],
)
def test_render_equals_library_bit_for_bit(stub, scene_with_object, mode, splat):
    sid, _, ref = scene_with_object
    _, _, K = rgbd()
    w2c = w2c_shift(0.05, -0.02, 0.1, yaw_deg=3.0)
    resp = stub.Render(render_req(sid, w2c, K, mode=mode, splat=splat, outputs=ALL_OUTPUTS), timeout=30)
    names = {0: "fused", 1: "fused", 2: "full", 3: "scene", 4: "objects"}
    out = ref.render(w2c[None], K[None], H, W, mode=names[mode], splat="zbuffer" if splat == 2 else "gen3c")
    assert resp.frame.num_slots == out.rgb.shape[1] == len(resp.frame.rgb)
    assert_frame_equals(resp.frame, out, 0)


def test_render_defaults_rgb_and_mask_raw(stub, scene_with_object):
    sid, oid, ref = scene_with_object
    _, _, K = rgbd()
    resp = stub.Render(render_req(sid, np.eye(4), K), timeout=30)
    f = resp.frame
    assert f.index == 0 and f.num_slots == 1
    assert f.rgb[0].WhichOneof("content") == "pixels" and f.mask[0].WhichOneof("content") == "pixels"
    assert not f.HasField("depth") and not f.HasField("object_mask")
    mask = wire.decode_tensor(f.mask[0].pixels)
    assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 1}
    out = ref.render(np.eye(4)[None], K[None], H, W)
    np.testing.assert_array_equal(wire.decode_image(f.rgb[0]), out.rgb[0, 0].numpy())
    np.testing.assert_array_equal(mask.astype(bool), out.mask[0, 0].numpy())


def test_png_encoding_decodes_to_the_raw_result(stub, scene_with_object):
    sid, _, _ = scene_with_object
    _, _, K = rgbd()
    raw = stub.Render(render_req(sid, w2c_shift(0.03), K, outputs=[1, 2, 3]), timeout=30).frame
    png = stub.Render(render_req(sid, w2c_shift(0.03), K, outputs=[1, 2, 3], encoding=2), timeout=30).frame
    assert png.rgb[0].WhichOneof("content") == "encoded" and png.rgb[0].encoded.startswith(b"\x89PNG")
    assert set(np.unique(wire.decode_image(png.mask[0], grayscale=True))) <= {0, 255}
    a, b = decode_frame(raw), decode_frame(png)
    for name in ("rgb", "mask", "depth"):
        np.testing.assert_array_equal(a[name], b[name])


def test_render_trajectory_streams_every_camera_in_order(stub, scene_with_object):
    sid, _, ref = scene_with_object
    _, _, K = rgbd()
    w2cs = np.stack(
        [w2c_shift(0.01 * i, 0.0, 0.02 * i, yaw_deg=i) for i in range(19)]
    )  # not a batch multiple
    req = cache_pb2.RenderTrajectoryRequest(
        scene_id=sid,
        cameras=[wire.encode_camera(K, T, W, H) for T in w2cs],
        options=cache_pb2.RenderOptions(outputs=ALL_OUTPUTS),
    )
    msgs = list(stub.RenderTrajectory(req, timeout=60))
    assert [m.frame.index for m in msgs] == list(range(19))
    assert {m.total_frames for m in msgs} == {19}
    out = ref.render(w2cs, np.repeat(K[None], 19, 0), H, W)
    for t, m in enumerate(msgs):
        assert_frame_equals(m.frame, out, t)


def test_render_trajectory_from_spec_uses_gen3c_trajectory(stub, scene_with_object):
    from objvid.runtime.trajectory import generate_camera_trajectory

    sid, _, ref = scene_with_object
    _, _, K = rgbd()
    spec = types_pb2.TrajectorySpec(
        preset=types_pb2.TRAJECTORY_PRESET_RIGHT,
        rotation=types_pb2.CAMERA_ROTATION_CENTER_FACING,
        movement_distance=0.2,
        frame_count=10,
        center_depth=2.0,
    )
    req = cache_pb2.RenderTrajectoryRequest(
        scene_id=sid, trajectory=spec, options=cache_pb2.RenderOptions(outputs=ALL_OUTPUTS)
    )
    msgs = list(stub.RenderTrajectory(req, timeout=60))
    w2cs, Ks = generate_camera_trajectory("right", np.eye(4), K, 10, 0.2, "center_facing", center_depth=2.0)
    out = ref.render(w2cs, Ks, H, W)
    assert len(msgs) == 10 and msgs[-1].total_frames == 10
    for t, m in enumerate(msgs):
        assert_frame_equals(m.frame, out, t)
    # Defaults: 121 GEN3C frames ("left", center_facing, 0.3) would exceed this server's --max-cameras 64.
    with pytest.raises(grpc.RpcError) as exc:
        list(
            stub.RenderTrajectory(
                cache_pb2.RenderTrajectoryRequest(scene_id=sid, trajectory=types_pb2.TrajectorySpec())
            )
        )
    assert (
        exc.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        and "trajectory.frame_count" in exc.value.details()
    )


def test_object_lifecycle_and_ids_never_reused(stub):
    create_rgbd_scene(stub, scene_id="objs")
    pts, cols = cube_cloud()
    a = stub.AddObject(
        cache_pb2.AddObjectRequest(scene_id="objs", cloud=cloud_msg(pts, cols), name="a")
    ).object
    b = stub.AddObject(cache_pb2.AddObjectRequest(scene_id="objs", cloud=cloud_msg(pts), name="b")).object
    assert (a.object_id, b.object_id) == (0, 1)
    np.testing.assert_array_equal(np.array(a.transform.values), np.eye(4).ravel())
    pose = types_pb2.Transform(
        pose=types_pb2.Pose(translation=[0.1, 0.2, 2.0], rotation_deg=[0, 90, 0], scale=2.0)
    )
    upd = stub.UpdateObject(
        cache_pb2.UpdateObjectRequest(scene_id="objs", object_id=1, transform=pose)
    ).object
    T = np.array(upd.transform.values).reshape(4, 4)
    np.testing.assert_allclose(T[:3, :3], 2.0 * np.array([[0, 0, 1], [0, 1, 0], [-1, 0, 0]]), atol=1e-12)
    np.testing.assert_allclose(T[:3, 3], [0.1, 0.2, 2.0])
    assert upd.name == "b"
    stub.RemoveObject(cache_pb2.RemoveObjectRequest(scene_id="objs", object_id=0))
    c = stub.AddObject(cache_pb2.AddObjectRequest(scene_id="objs", cloud=cloud_msg(pts))).object
    assert c.object_id == 2
    info = stub.GetScene(cache_pb2.GetSceneRequest(scene_id="objs")).scene
    assert [(o.object_id, o.name) for o in info.objects] == [(1, "b"), (2, "")]
    with pytest.raises(grpc.RpcError) as exc:
        stub.RemoveObject(cache_pb2.RemoveObjectRequest(scene_id="objs", object_id=0))
    assert exc.value.code() == grpc.StatusCode.NOT_FOUND and "object_id" in exc.value.details()
    stub.DeleteScene(cache_pb2.DeleteSceneRequest(scene_id="objs"))


def test_add_object_from_ply_file_and_place_it(stub):
    create_rgbd_scene(stub, scene_id="placed")
    pts, cols = cube_cloud()
    lines = ["ply", "format ascii 1.0", f"element vertex {len(pts)}", "property float x", "property float y",
             "property float z", "property uchar red", "property uchar green", "property uchar blue", "end_header"]  # fmt: skip
    lines += [f"{p[0]} {p[1]} {p[2]} {c[0]} {c[1]} {c[2]}" for p, c in zip(pts, cols, strict=True)]
    f = cache_pb2.ObjectFile(data="\n".join(lines).encode() + b"\n", filename="cube.ply")
    obj = stub.AddObject(cache_pb2.AddObjectRequest(scene_id="placed", file=f, name="ply")).object
    assert obj.num_points == len(pts)
    placed = stub.PlaceObject(
        cache_pb2.PlaceObjectRequest(scene_id="placed", object_id=obj.object_id), timeout=60
    ).object
    T = np.array(placed.transform.values).reshape(4, 4)
    assert not np.allclose(T, np.eye(4)) and T[2, 3] > 0  # in front of the camera, on the floor
    _, _, K = rgbd()
    frame = stub.Render(render_req("placed", np.eye(4), K, outputs=[4]), timeout=30).frame
    assert (wire.decode_tensor(frame.object_mask) == obj.object_id).any()
    stub.DeleteScene(cache_pb2.DeleteSceneRequest(scene_id="placed"))


def test_export_list_get_delete(stub, scene_with_object):
    sid, _, ref = scene_with_object
    full = stub.ExportScene(cache_pb2.ExportSceneRequest(scene_id=sid))
    bare = stub.ExportScene(cache_pb2.ExportSceneRequest(scene_id=sid, exclude_objects=True))
    assert full.ply == ref.export_ply(include_objects=True)
    assert bare.ply == ref.export_ply(include_objects=False)
    assert full.num_points - bare.num_points == ref.num_object_points
    # one object in its own frame (what a viewer draws under its own transform)
    only = stub.ExportScene(cache_pb2.ExportSceneRequest(scene_id=sid, object_id=0))
    pts, cols = cube_cloud()
    assert only.num_points == len(pts) and only.ply == ref.export_object(0)[0]
    body = np.frombuffer(
        only.ply[only.ply.index(b"end_header\n") + 11 :], dtype=[("p", "<f4", 3), ("c", "u1", 3)]
    )
    np.testing.assert_allclose(body["p"], pts, atol=1e-6)
    np.testing.assert_array_equal(body["c"], cols)
    with pytest.raises(grpc.RpcError) as exc:
        stub.ExportScene(cache_pb2.ExportSceneRequest(scene_id=sid, object_id=7))
    assert exc.value.code() == grpc.StatusCode.NOT_FOUND and "object_id" in exc.value.details()
    info = stub.GetScene(cache_pb2.GetSceneRequest(scene_id=sid)).scene
    assert info.device_bytes == ref.device_bytes() and info.device == "cpu"
    assert info.seed_camera.width == W and np.allclose(info.seed_camera.intrinsics, rgbd()[2].ravel())
    assert sid in [s.scene_id for s in stub.ListScenes(cache_pb2.ListScenesRequest()).scenes]
    tmp = create_rgbd_scene(stub).scene_id
    assert tmp.startswith("s-")
    stub.DeleteScene(cache_pb2.DeleteSceneRequest(scene_id=tmp))
    with pytest.raises(grpc.RpcError) as exc:
        stub.GetScene(cache_pb2.GetSceneRequest(scene_id=tmp))
    assert exc.value.code() == grpc.StatusCode.NOT_FOUND and "CreateScene" in exc.value.details()


# ---------------------------------------------------------------------------------------------------
# Errors: status code and the field the message names

_K = rgbd()[2]


def _cam(K=None, w2c=None, w=W, h=H):
    return wire.encode_camera(_K if K is None else K, np.eye(4) if w2c is None else w2c, w, h)


def _bad_K(**entries):
    K = _K.copy()
    for key, v in entries.items():
        K[int(key[1]), int(key[2])] = v
    return K


def _shear():
    T = np.eye(4)
    T[0, 1] = 0.5
    return T


def _reflection():
    T = np.eye(4)
    T[0, 0] = -1
    return T


def _render(scene_id="main", camera=None, **opts):
    return cache_pb2.RenderRequest(
        scene_id=scene_id, camera=camera or _cam(), options=cache_pb2.RenderOptions(**opts)
    )


def _image_view(image_hw=(H, W), cam_hw=(H, W), depth_dtype=np.float32):
    image, depth, K = rgbd()
    v = view_msg(np.zeros((*image_hw, 3), np.uint8), depth.astype(depth_dtype), K)
    v.camera.width, v.camera.height = cam_hw[1], cam_hw[0]
    return v


INV, NF, RE, FP, AE = (
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.ALREADY_EXISTS,
)
ERROR_CASES = [
    ("Render", cache_pb2.RenderRequest(scene_id="main"), INV, "camera: missing"),
    ("Render", _render(scene_id=""), INV, "scene_id: missing"),
    ("Render", _render(scene_id="nope"), NF, "create it again"),
    ("Render", _render(camera=types_pb2.Camera(intrinsics=[1] * 8, world_to_camera=np.eye(4).ravel(), width=W, height=H)), INV, "camera.intrinsics: expected 9"),
    ("Render", _render(camera=_cam(K=_bad_K(k00=float("nan")))), INV, "camera.intrinsics: values must be finite"),
    ("Render", _render(camera=_cam(K=_bad_K(k00=0.0))), INV, "camera.intrinsics: focal lengths must be positive"),
    ("Render", _render(camera=_cam(K=_bad_K(k20=0.5))), INV, "camera.intrinsics: last row"),
    ("Render", _render(camera=_cam(w2c=_shear())), INV, "camera.world_to_camera: not a rigid transform"),
    ("Render", _render(camera=_cam(w2c=_reflection())), INV, "camera.world_to_camera: not a rigid transform"),
    ("Render", _render(camera=_cam(w2c=np.eye(4) * 2)), INV, "camera.world_to_camera: not a rigid transform"),
    ("Render", _render(camera=_cam(w=0)), INV, "camera: width and height must be positive"),
    ("Render", _render(camera=_cam(w=400, h=400)), RE, "--max-image-pixels"),
    ("Render", _render(mode=99), INV, "options.mode: unknown value 99"),
    ("Render", _render(splat=7), INV, "options.splat"),
    ("Render", _render(outputs=[1, 9]), INV, "options.outputs[1]"),
    ("Render", _render(encoding=5), INV, "options.encoding"),
    ("Render", _render(footprint=99), INV, "options.footprint"),
    ("Render", _render(object_radius_px=float("inf")), INV, "options.object_radius_px"),
    ("RenderTrajectory", cache_pb2.RenderTrajectoryRequest(scene_id="main", cameras=[_cam()] * 3 + [_cam(w2c=_shear())]), INV, "cameras[3].world_to_camera: not a rigid transform"),
    ("RenderTrajectory", cache_pb2.RenderTrajectoryRequest(scene_id="main", cameras=[_cam(), _cam(w=32)]), INV, "cameras[1]: size 32x48 differs"),
    ("RenderTrajectory", cache_pb2.RenderTrajectoryRequest(scene_id="main", cameras=[_cam()], trajectory=types_pb2.TrajectorySpec()), INV, "not both"),
    ("RenderTrajectory", cache_pb2.RenderTrajectoryRequest(scene_id="main"), INV, "cameras: missing"),
    ("RenderTrajectory", cache_pb2.RenderTrajectoryRequest(scene_id="main", cameras=[_cam()] * 65), RE, "--max-cameras"),
    ("RenderTrajectory", cache_pb2.RenderTrajectoryRequest(scene_id="main", trajectory=types_pb2.TrajectorySpec(preset=42, frame_count=2)), INV, "trajectory.preset"),
    ("RenderTrajectory", cache_pb2.RenderTrajectoryRequest(scene_id="pts", trajectory=types_pb2.TrajectorySpec(frame_count=2)), FP, "no seed camera"),
    ("RenderTrajectory", cache_pb2.RenderTrajectoryRequest(scene_id="nope", cameras=[_cam()]), NF, "create it again"),
    ("CreateScene", cache_pb2.CreateSceneRequest(), INV, "source: missing"),
    ("CreateScene", cache_pb2.CreateSceneRequest(rgbd=_image_view(image_hw=(H, 32))), INV, "rgbd.image: size 32x48 does not match"),
    ("CreateScene", cache_pb2.CreateSceneRequest(rgbd=_image_view(depth_dtype=np.int32)), INV, "rgbd.depth: dtype"),
    ("CreateScene", cache_pb2.CreateSceneRequest(rgbd=_image_view(image_hw=(300, 300), cam_hw=(300, 300))), RE, "--max-image-pixels"),
    ("CreateScene", cache_pb2.CreateSceneRequest(rgbd=_image_view(), scene_id="a b"), INV, "scene_id"),
    ("CreateScene", cache_pb2.CreateSceneRequest(rgbd=_image_view(), scene_id="main"), AE, "already exists"),
    ("CreateScene", cache_pb2.CreateSceneRequest(rgbd=_image_view(), filter_points_threshold=float("nan")), INV, "filter_points_threshold"),
    ("CreateScene", cache_pb2.CreateSceneRequest(points=cloud_msg(np.full((4, 3), np.nan, np.float32))), INV, "points.positions: values must be finite"),
    ("CreateScene", cache_pb2.CreateSceneRequest(points=cloud_msg(np.zeros((30_000, 3), np.float32))), RE, "--max-points"),
    ("CreateScene", cache_pb2.CreateSceneRequest(points=cloud_msg(np.zeros((4, 3), np.float32), np.zeros((5, 3), np.uint8))), INV, "points.colors: expected shape"),
    ("AddObject", cache_pb2.AddObjectRequest(scene_id="main", cloud=cloud_msg(cube_cloud()[0]), transform=matrix_transform(_shear())), INV, "transform.matrix: not a similarity"),
    ("AddObject", cache_pb2.AddObjectRequest(scene_id="main", cloud=cloud_msg(cube_cloud()[0]), transform=types_pb2.Transform(pose=types_pb2.Pose(scale=-1))), INV, "transform.pose.scale"),
    ("AddObject", cache_pb2.AddObjectRequest(scene_id="main", cloud=cloud_msg(cube_cloud()[0]), transform=types_pb2.Transform(pose=types_pb2.Pose(translation=[1, 2]))), INV, "transform.pose.translation"),
    ("AddObject", cache_pb2.AddObjectRequest(scene_id="main", cloud=cloud_msg(cube_cloud()[0]), transform=types_pb2.Transform()), INV, "transform: missing"),
    ("AddObject", cache_pb2.AddObjectRequest(scene_id="main", file=cache_pb2.ObjectFile(data=b"not a mesh", filename="x.ply")), INV, "x.ply"),
    ("AddObject", cache_pb2.AddObjectRequest(scene_id="main", file=cache_pb2.ObjectFile(data=b"abc")), INV, "file.filename: missing"),
    ("AddObject", cache_pb2.AddObjectRequest(scene_id="main"), INV, "source: missing"),
    ("AddObject", cache_pb2.AddObjectRequest(scene_id="nope", cloud=cloud_msg(cube_cloud()[0])), NF, "create it again"),
    ("UpdateObject", cache_pb2.UpdateObjectRequest(scene_id="main", object_id=77, transform=matrix_transform(np.eye(4))), NF, "object_id: scene 'main' has no object 77"),
    ("UpdateObject", cache_pb2.UpdateObjectRequest(scene_id="main", object_id=0), INV, "transform: missing"),
    ("UpdateObject", cache_pb2.UpdateObjectRequest(scene_id="main", object_id=-1, transform=matrix_transform(np.eye(4))), INV, "object_id: must be >= 0"),
    ("RemoveObject", cache_pb2.RemoveObjectRequest(scene_id="main", object_id=77), NF, "object_id"),
    ("PlaceObject", cache_pb2.PlaceObjectRequest(scene_id="main", object_id=0, anchor_u=3.0), INV, "anchor_u"),
    ("PlaceObject", cache_pb2.PlaceObjectRequest(scene_id="main", object_id=0, height=-1.0), INV, "height"),
    ("PlaceObject", cache_pb2.PlaceObjectRequest(scene_id="pts", object_id=0), FP, "no seed view"),
    ("UpdateScene", cache_pb2.UpdateSceneRequest(scene_id="main"), INV, "view: missing"),
    ("UpdateScene", cache_pb2.UpdateSceneRequest(scene_id="main", view=_image_view(image_hw=(H, 32))), INV, "view.image"),
    ("GetScene", cache_pb2.GetSceneRequest(scene_id="nope"), NF, "create it again"),
    ("DeleteScene", cache_pb2.DeleteSceneRequest(scene_id="nope"), NF, "create it again"),
    ("ExportScene", cache_pb2.ExportSceneRequest(scene_id="nope"), NF, "create it again"),
]  # fmt: skip


@pytest.fixture(scope="module")
def error_scenes(stub, scene_with_object):
    pts, cols = cube_cloud()
    stub.CreateScene(cache_pb2.CreateSceneRequest(points=cloud_msg(pts + [0, 0, 2], cols), scene_id="pts"))
    stub.AddObject(cache_pb2.AddObjectRequest(scene_id="pts", cloud=cloud_msg(pts)))


@pytest.mark.parametrize(
    "method, request_msg, code, text", ERROR_CASES, ids=[f"{c[0]}-{c[3][:40]}" for c in ERROR_CASES]
)
def test_errors_name_the_field(stub, error_scenes, method, request_msg, code, text):
    call = getattr(stub, method)
    with pytest.raises(grpc.RpcError) as exc:
        result = call(request_msg, timeout=30)
        if method == "RenderTrajectory":
            list(result)
    assert exc.value.code() == code, exc.value.details()
    assert text in exc.value.details()


def test_object_limit_is_resource_exhausted(stub):
    create_rgbd_scene(stub, scene_id="limit")
    pts, _ = cube_cloud()
    for _ in range(3):
        stub.AddObject(cache_pb2.AddObjectRequest(scene_id="limit", cloud=cloud_msg(pts)))
    with pytest.raises(grpc.RpcError) as exc:
        stub.AddObject(cache_pb2.AddObjectRequest(scene_id="limit", cloud=cloud_msg(pts)))
    assert exc.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "--max-objects" in exc.value.details()
    stub.DeleteScene(cache_pb2.DeleteSceneRequest(scene_id="limit"))


def test_errors_are_counted_and_server_stays_healthy(server, stub, scene_with_object):
    assert server.metrics.count("Render", "INVALID_ARGUMENT") >= 1
    assert server.metrics.count("Render", "OK") >= 1
    assert channels.check_health(channels.make_channel(server.address))
    text = server.metrics.text()
    for name in ("objvid_cache_request_seconds_bucket", "objvid_cache_scenes_resident", "objvid_cache_device_bytes",
                 "objvid_cache_evictions_total", "process_resident_memory_bytes"):  # fmt: skip
        assert name in text


def test_raw_render_bytes_decode_to_the_library_render(server, stub, scene_with_object):
    """The per-frame fast client path: raw response bytes (no protobuf objects) -> zero-copy arrays."""
    sid, _, ref = scene_with_object
    _, _, K = rgbd()
    channel = channels.make_channel(server.address)
    render = channel.unary_unary(
        "/objvid.v1.CacheService/Render",
        request_serializer=cache_pb2.RenderRequest.SerializeToString,
        response_deserializer=None,
    )
    w2c = w2c_shift(-0.03, 0.01, 0.05, yaw_deg=-2.0)
    got = decode_frame_bytes(render(render_req(sid, w2c, K, outputs=ALL_OUTPUTS), timeout=30))
    out = ref.render(w2c[None], K[None], H, W)
    assert got["num_slots"] == 1
    for name in ("rgb", "mask", "depth", "object_mask"):
        np.testing.assert_array_equal(got[name], getattr(out, name)[0].numpy(), err_msg=name)
    channel.close()


def test_render_stage_timings_and_gc_pauses_are_exported(server, stub, scene_with_object):
    sid, _, _ = scene_with_object
    _, _, K = rgbd()
    before = server.metrics.registry.get_sample_value(
        "objvid_cache_render_stage_seconds_count", {"stage": "encode"}
    )
    stub.Render(render_req(sid, np.eye(4), K), timeout=30)
    for stage in ("decode", "queue", "render", "to_host", "encode"):
        n = server.metrics.registry.get_sample_value(
            "objvid_cache_render_stage_seconds_count", {"stage": stage}
        )
        total = server.metrics.registry.get_sample_value(
            "objvid_cache_render_stage_seconds_sum", {"stage": stage}
        )
        assert n >= 1 and total >= 0, stage
    after = server.metrics.registry.get_sample_value(
        "objvid_cache_render_stage_seconds_count", {"stage": "encode"}
    )
    assert after == (before or 0) + 1
    text = server.metrics.text()
    assert 'objvid_cache_gc_pause_seconds_total{generation="2"}' in text
    assert 'objvid_cache_gc_collections_total{generation="0"}' in text


def _allclose_intrinsics(K):
    """The former numpy form of the intrinsics check (the reference for the scalar fast path)."""
    det = float(np.linalg.det(K))
    return not (
        not np.allclose(K[2], [0.0, 0.0, 1.0], atol=1e-9)
        or not (K[0, 0] > 0 and K[1, 1] > 0)
        or not np.isfinite(det)
        or abs(det) < 1e-12
        or np.linalg.cond(K) > 1e12
    )


def test_fast_camera_checks_accept_and_reject_what_numpy_allclose_did():
    rng = np.random.default_rng(5)
    base = np.array([[500.0, 0.0, 32.0], [0.0, 500.0, 24.0], [0.0, 0.0, 1.0]])
    cases = []
    for d in (0.0, 5e-10, 2e-9, 5e-6, 9.9e-6, 1.1e-5, 1e-3):
        for r, c in ((2, 0), (2, 1), (2, 2)):
            for sign in (1, -1):
                K = base.copy()
                K[r, c] += sign * d
                cases.append(K)
    cases += [np.diag([1e-7, 1e7, 1.0]), np.diag([0.0, 1.0, 1.0]), np.diag([1e-6, 1e-6, 1.0])]
    cases += [base + np.pad(rng.normal(0, 1e-5, (1, 3)), ((2, 0), (0, 0))) for _ in range(50)]
    for K in cases:
        try:
            check_intrinsics(K, "K")
            ok = True
        except ValueError:
            ok = False
        assert ok == _allclose_intrinsics(K), K
    for d in (0.0, 5e-10, 2e-9, 9.9e-6, 1.1e-5):
        for c in range(4):
            T = np.eye(4)
            T[3, c] += d
            want = bool(np.allclose(T[3], [0.0, 0.0, 0.0, 1.0], atol=1e-9))
            try:
                check_transform(T, "T")
                ok = True
            except ValueError as exc:
                ok = False
                assert "last row" in str(exc)
            assert ok == want, (c, d)


def test_unexpected_failures_are_internal_with_a_reference_and_the_server_lives_on(monkeypatch):
    server = start()
    try:
        _, stub = stub_for(server)
        create_rgbd_scene(stub, scene_id="ok")

        def broken(scene_id):
            raise RuntimeError("simulated bug")

        monkeypatch.setattr(server.store, "entry", broken)
        with pytest.raises(grpc.RpcError) as exc:
            stub.GetScene(cache_pb2.GetSceneRequest(scene_id="ok"))
        assert exc.value.code() == grpc.StatusCode.INTERNAL
        assert "RuntimeError: simulated bug" in exc.value.details() and "ref=" in exc.value.details()
        monkeypatch.undo()
        assert stub.GetScene(cache_pb2.GetSceneRequest(scene_id="ok")).scene.scene_id == "ok"
        assert server.metrics.count("GetScene", "INTERNAL") == 1
    finally:
        server.stop(0)
