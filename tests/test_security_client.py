"""Client side of issue 13: limits checked before anything is read or allocated (same wording as the
services), and multi-file objects (.obj + .mtl + textures, .gltf + buffers) sent as one GLB."""

from __future__ import annotations

import json

import numpy as np
import object_files as of
import pytest
import trimesh
from cache_service_helpers import create_rgbd_scene, running, stub_for
from test_cache_io_loaders import textured_quad

from objvid.cache.io import DEFAULT_COLOR, load_object
from objvid.client.bundle import object_payload
from objvid.client.limits import (
    ClientLimitExceeded,
    ClientLimits,
    check_camera_path_file,
    check_frames,
    check_input_image,
    check_video_size,
)
from objvid.v1 import cache_pb2

LIMITS = ClientLimits()


def _left_red_right_blue(data: bytes, name: str) -> None:
    pts, col = load_object(data, filename=name, sample_points=400)
    left, right = pts[:, 0] < 0.45, pts[:, 0] > 0.55
    assert (col[left] == [255, 0, 0]).all() and (col[right] == [0, 0, 255]).all()


def test_obj_with_mtl_and_texture_is_sent_as_one_glb(tmp_path):
    textured_quad().export(tmp_path / "quad.obj")
    data, name = object_payload(tmp_path / "quad.obj")
    assert name == "quad.glb" and data[:4] == b"glTF"
    _left_red_right_blue(data, name)


def test_obj_material_colour_without_texture_arrives(tmp_path):
    (tmp_path / "m.mtl").write_text("newmtl green\nKd 0.0 1.0 0.0\n")
    (tmp_path / "tri.obj").write_text("mtllib m.mtl\nusemtl green\nv 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    data, name = object_payload(tmp_path / "tri.obj")
    _, col = load_object(data, filename=name, sample_points=50)
    assert (col == [0, 255, 0]).all()


def test_gltf_with_its_buffers_beside_it_is_sent_as_one_glb(tmp_path):
    for fname, blob in trimesh.Scene(textured_quad()).export(file_type="gltf").items():
        (tmp_path / fname).write_bytes(blob)
    data, name = object_payload(tmp_path / "model.gltf")
    assert name == "model.glb"
    _left_red_right_blue(data, name)


def test_missing_companion_files_are_named(tmp_path):
    textured_quad().export(tmp_path / "quad.obj")
    (tmp_path / "material_0.png").unlink()
    with pytest.raises(ValueError, match=r"texture 'material_0.png' named in material.mtl is missing"):
        object_payload(tmp_path / "quad.obj")
    (tmp_path / "material.mtl").unlink()
    with pytest.raises(ValueError, match=r"material library 'material.mtl' is missing"):
        object_payload(tmp_path / "quad.obj")
    (tmp_path / "x.gltf").write_text(
        json.dumps({"asset": {"version": "2.0"}, "buffers": [{"uri": "x.bin", "byteLength": 4}]})
    )
    with pytest.raises(ValueError, match=r"buffers\[0\].uri 'x.bin' is missing"):
        object_payload(tmp_path / "x.gltf")


def test_self_contained_files_are_sent_unchanged_and_default_colour_is_documented(tmp_path):
    (tmp_path / "plain.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    data, name = object_payload(tmp_path / "plain.obj")
    assert name == "plain.obj" and data == (tmp_path / "plain.obj").read_bytes()
    _, col = load_object(data, filename=name, sample_points=10)
    assert (col == DEFAULT_COLOR).all() and DEFAULT_COLOR == (200, 200, 200)
    (tmp_path / "big.ply").write_bytes(of.ply_cloud())
    small = ClientLimits(max_object_bytes=100)
    with pytest.raises(
        ClientLimitExceeded, match=r"is over the limit of 100 \(the cache service's --max-object-bytes\)"
    ):
        object_payload(tmp_path / "big.ply", small)


def test_limits_match_the_services_words():
    with pytest.raises(ClientLimitExceeded) as info:
        check_video_size(20000, 20000, LIMITS)
    client = str(info.value)
    assert client.startswith("--width/--height: 20000x20000 = 400000000 pixels is over the limit of 16777216")
    with running() as server:  # the cache service refuses the same camera with the same words
        _, stub = stub_for(server)
        sid = create_rgbd_scene(stub).scene_id
        from objvid.runtime import wire

        cam = wire.encode_camera(np.eye(3), np.eye(4), 20000, 20000)
        import grpc

        with pytest.raises(grpc.RpcError) as err:
            stub.Render(cache_pb2.RenderRequest(scene_id=sid, camera=cam))
        assert err.value.details().split(": ", 1)[1] == client.split(": ", 1)[1].replace(
            "the cache service's --max-image-pixels", "--max-image-pixels"
        )


def test_frames_are_checked_before_anything_is_built():
    with pytest.raises(ValueError, match=r"--frames must be >= 1, got 0"):
        check_frames(0, LIMITS)
    with pytest.raises(
        ClientLimitExceeded,
        match=r"--frames: 100000 is over the limit of 4096 \(the cache service's --max-cameras\)",
    ):
        check_frames(100_000, LIMITS)
    check_frames(121, LIMITS)


def test_input_images_are_measured_from_their_headers(tmp_path):
    (tmp_path / "huge.png").write_bytes(of.png_header(20000, 20000))  # a decoder would need 1.2 GB
    with pytest.raises(
        ClientLimitExceeded, match=r"--image .*huge.png: 20000x20000 = 400000000 pixels is over"
    ):
        check_input_image(tmp_path / "huge.png", LIMITS)
    (tmp_path / "bomb.png").write_bytes(of.png_header(60000, 60000))
    with pytest.raises(
        ClientLimitExceeded, match=r"60000x60000 = 3600000000 pixels is over the limit of 40000000"
    ):
        check_input_image(tmp_path / "bomb.png", LIMITS)
    (tmp_path / "dot.png").write_bytes(of.png(1, 1))
    with pytest.raises(ValueError, match=r"1x1 pixels is too small to lift"):
        check_input_image(tmp_path / "dot.png", LIMITS)
    (tmp_path / "ok.png").write_bytes(of.png(64, 48))
    assert check_input_image(tmp_path / "ok.png", LIMITS) == (64, 48)


def test_camera_path_files_are_sized_before_parsing(tmp_path):
    path = tmp_path / "cams.json"
    path.write_bytes(b" " * (2048 * 17 + 1))
    with pytest.raises(ClientLimitExceeded, match=r"--camera-path .*cams.json: \d+ bytes is over the limit"):
        check_camera_path_file(path, ClientLimits(max_cameras=16))
