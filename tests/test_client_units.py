"""Client pieces that need no server: camera paths, poses, anchors, the 120N+1 rule, chunking, inputs,
the mp4 writer and the demo assets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from objvid.client import ObjvidError, camera_path, inputs, manifest, pipeline, placement, video
from objvid.client import cli_options as o
from objvid.runtime import geometry
from objvid.testing import assets
from objvid.v1 import types_pb2

# --- camera paths --------------------------------------------------------------------------------


def _path_dict(n=3, w=320, h=176):
    K = [[250.0, 0, 160], [0, 250.0, 88], [0, 0, 1]]
    frames = []
    for i in range(n):
        w2c = np.eye(4)
        w2c[0, 3] = 0.1 * i
        frames.append({"K": K, "w2c": w2c.tolist()})
    return {"width": w, "height": h, "frames": frames}


def test_camera_path_roundtrip(tmp_path):
    p = tmp_path / "cams.json"
    p.write_text(json.dumps(_path_dict(5)))
    cp = camera_path.load_camera_path(p)
    assert (cp.width, cp.height, cp.num_frames) == (320, 176, 5)
    assert cp.Ks.shape == (5, 3, 3) and cp.w2cs.shape == (5, 4, 4)
    assert cp.w2cs[4, 0, 3] == pytest.approx(0.4)
    out = tmp_path / "again.json"
    camera_path.save_camera_path(out, cp.width, cp.height, cp.Ks, cp.w2cs)
    again = camera_path.load_camera_path(out)
    np.testing.assert_array_equal(again.w2cs, cp.w2cs)


def _bad(mutate):
    d = _path_dict()
    mutate(d)
    return d


@pytest.mark.parametrize(
    "data,match",
    [
        ([1, 2], "expected a JSON object"),
        (_bad(lambda d: d.pop("width")), "width must be a positive integer"),
        (_bad(lambda d: d.update(height=-4)), "height must be a positive integer"),
        (_bad(lambda d: d.update(width=True)), "width must be a positive integer"),
        (_bad(lambda d: d.update(frames=[])), "frames must be a non-empty list"),
        (_bad(lambda d: d["frames"][1].pop("w2c")), r"frames\[1\]: missing w2c"),
        (_bad(lambda d: d["frames"][2].update(K=[[1, 0], [0, 1]])), r"frames\[2\]\.K: expected a 3x3"),
        (_bad(lambda d: d["frames"][0]["K"][0].__setitem__(0, "x")), r"frames\[0\]\.K: element \[0\]\[0\] must be a finite"),
        (_bad(lambda d: d["frames"][0]["K"][2].__setitem__(2, 2.0)), r"frames\[0\]\.K: last row must be \(0, 0, 1\)"),
        (_bad(lambda d: d["frames"][0]["K"][0].__setitem__(0, -5.0)), r"frames\[0\]\.K: focal lengths"),
        (_bad(lambda d: d["frames"][1]["w2c"][0].__setitem__(0, 2.0)), r"frames\[1\]\.w2c: not a rigid transform \(the rotation block scales"),
        (_bad(lambda d: d["frames"][1]["w2c"][3].__setitem__(0, 1.0)), r"frames\[1\]\.w2c: .*last row"),
        (_bad(lambda d: d["frames"][1].update(w2c=np.diag([1.0, 1, -1, 1]).tolist())), r"frames\[1\]\.w2c: .*det of the rotation block is -1, must be > 0"),
        (_bad(lambda d: d["frames"].__setitem__(0, 5)), r"frames\[0\]: expected an object"),
    ],
)  # fmt: skip
def test_camera_path_errors_name_the_field(data, match):
    with pytest.raises(ValueError, match=match):
        camera_path.parse_camera_path(data, "cams.json")


def test_camera_path_file_errors(tmp_path):
    with pytest.raises(ValueError, match="cannot read"):
        camera_path.load_camera_path(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{ nope")
    with pytest.raises(ValueError, match=r"bad.json: not valid JSON .* line 1"):
        camera_path.load_camera_path(bad)


# --- frame-count rule and chunks -----------------------------------------------------------------


@pytest.mark.parametrize("frames", [121, 241, 361, 1201])
def test_gen3c_accepts_120n_plus_1(frames):
    pipeline.check_frame_count(frames, "gen3c")


@pytest.mark.parametrize(
    "frames,near",
    [
        (120, "121"),
        (2, "121"),
        (122, "121 or 241"),
        (200, "121 or 241"),
        (240, "121 or 241"),
        (300, "241 or 361"),
    ],
)
def test_gen3c_rejects_others_naming_the_nearest(frames, near):
    with pytest.raises(ValueError) as err:
        pipeline.check_frame_count(frames, "gen3c")
    msg = str(err.value)
    assert "120N+1" in msg and f"got {frames}" in msg and f"nearest valid: {near}" in msg


def test_preview_takes_any_count_from_2():
    for n in (2, 50, 122, 200):
        pipeline.check_frame_count(n, "preview")
    with pytest.raises(ValueError, match=">= 2"):
        pipeline.check_frame_count(1, "preview")


@pytest.mark.parametrize(
    "frames,chunks",
    [
        (121, [(0, 121)]),
        (241, [(0, 121), (120, 241)]),
        (361, [(0, 121), (120, 241), (240, 361)]),
        (50, [(0, 50)]),
        (122, [(0, 121), (120, 122)]),
        (200, [(0, 121), (120, 200)]),
    ],
)
def test_chunk_ranges_overlap_by_one(frames, chunks):
    got = pipeline.chunk_ranges(frames)
    assert got == chunks
    # Concatenating chunk 0 and the others minus their first frame gives every frame once.
    covered = list(range(*got[0])) + [i for s, e in got[1:] for i in range(s + 1, e)]
    assert covered == list(range(frames))


def test_depth_service_needed_only_without_depth_or_for_long_videos(tmp_path):
    cfg = pipeline.GenerateConfig(image=tmp_path / "a.png", depth=tmp_path / "d.npy")
    assert not pipeline.needs_depth_service(cfg, 121)
    assert pipeline.needs_depth_service(cfg, 241)
    assert pipeline.needs_depth_service(pipeline.GenerateConfig(image=tmp_path / "a.png"), 121)
    # Without --frames the camera path sets the length: a 241-camera path is a long video.
    cams = tmp_path / "cams.json"
    cams.write_text(json.dumps(_path_dict(241)))
    with_path = pipeline.GenerateConfig(image=tmp_path / "a.png", depth=tmp_path / "d.npy", camera_path=cams)
    assert pipeline.needs_depth_service(with_path)
    cams.write_text(json.dumps(_path_dict(121)))
    assert not pipeline.needs_depth_service(with_path)


# --- poses and anchors ---------------------------------------------------------------------------


def test_pose_translation_only():
    t = placement.parse_object_pose("0.1, -0.2, 3")
    assert t.WhichOneof("kind") == "pose"
    assert list(t.pose.translation) == [0.1, -0.2, 3.0]
    assert list(t.pose.rotation_deg) == [0, 0, 0] and t.pose.scale == 1.0


def test_pose_full_and_matrix():
    t = placement.parse_object_pose("1,2,3,0,90,0,2")
    m = placement.transform_matrix(t)
    # R = Ry(90): x -> -z; scaled by 2; translated by (1, 2, 3).
    np.testing.assert_allclose(m @ [1, 0, 0, 1], [1, 2, 1, 1], atol=1e-12)
    np.testing.assert_allclose(m[:3, :3] @ m[:3, :3].T, 4 * np.eye(3), atol=1e-12)


def test_pose_euler_order_is_z_y_x():
    R = geometry.euler_deg(90, 0, 90)  # Rz(90) @ Rx(90)
    np.testing.assert_allclose(R @ [0, 1, 0], [0, 0, 1], atol=1e-12)  # Rx: y -> z; Rz leaves z
    np.testing.assert_allclose(R @ [0, 0, 1], [1, 0, 0], atol=1e-12)  # Rx: z -> -y; Rz: -y -> x


def test_pose_euler_about_all_three_axes_matches_an_independent_construction():
    """--object-pose rotations about x, y and z at once: R = Rz Ry Rx (extrinsic x, then y, then z),
    checked against scipy's extrinsic "xyz" Euler rotation (which would differ for Rx Ry Rz)."""
    from scipy.spatial.transform import Rotation

    rx, ry, rz = 20.0, -35.0, 70.0
    m = placement.transform_matrix(placement.parse_object_pose(f"0.1,0.2,3,{rx},{ry},{rz},0.5"))
    expected = Rotation.from_euler("xyz", [rx, ry, rz], degrees=True).as_matrix()
    np.testing.assert_allclose(m[:3, :3], 0.5 * expected, atol=1e-12)
    np.testing.assert_allclose(m[:3, 3], [0.1, 0.2, 3.0])
    wrong_order = Rotation.from_euler("XYZ", [rx, ry, rz], degrees=True).as_matrix()  # intrinsic = Rx Ry Rz
    assert np.abs(m[:3, :3] - 0.5 * wrong_order).max() > 0.1


def test_pose_json_file(tmp_path):
    m = np.eye(4)
    m[:3, :3] = 0.5 * geometry.euler_deg(0, 30, 0)
    m[:3, 3] = [0.2, 1.0, 3.0]
    p = tmp_path / "pose.json"
    p.write_text(json.dumps(m.tolist()))
    t = placement.parse_object_pose(str(p))
    assert t.WhichOneof("kind") == "matrix"
    np.testing.assert_allclose(np.reshape(t.matrix.values, (4, 4)), m)
    p.write_text(json.dumps({"matrix": m.ravel().tolist()}))
    np.testing.assert_allclose(placement.transform_matrix(placement.parse_object_pose(str(p))), m)


@pytest.mark.parametrize(
    "text,match",
    [
        ("", "empty value"),
        ("1,2", "expected 3, 6 or 7"),
        ("1,2,3,4", "expected 3, 6 or 7"),
        ("1,2,x", "'x' is not a number"),
        ("1,2,inf", "finite"),
        ("1,2,3,0,0,0,-1", "scale must be > 0"),
        ("missing.json", "cannot read"),
    ],
)
def test_pose_errors(text, match):
    with pytest.raises(ValueError, match=f"--object-pose.*{match}"):
        placement.parse_object_pose(text)


@pytest.mark.parametrize(
    "matrix,match",
    [
        (np.diag([1.0, 1, 1, 2]).tolist(), "last row"),
        (np.diag([1.0, 2, 1, 1]).tolist(), "not a similarity transform"),
        (np.diag([1.0, 1, -1, 1]).tolist(), "det of the rotation block is -1"),
        ([[1, 2], [3, 4]], "4x4"),
        ({"m": 1}, "'matrix'"),
    ],
)
def test_pose_matrix_errors(tmp_path, matrix, match):
    p = tmp_path / "pose.json"
    p.write_text(json.dumps(matrix))
    with pytest.raises(ValueError, match=match):
        placement.parse_object_pose(str(p))


def test_anchor_pixels_and_percent():
    assert placement.parse_anchor("160,120", 320, 176) == (160.0, 120.0)
    u, v = placement.parse_anchor("50%,100%", 321, 177)
    assert (u, v) == (160.0, 176.0)
    for bad, match in (("1", "expected U,V"), ("a,1", "U 'a' is not a number"), ("400,1", "outside")):
        with pytest.raises(ValueError, match=match):
            placement.parse_anchor(bad, 320, 176)


# --- inputs --------------------------------------------------------------------------------------


def test_depth_formats(tmp_path):
    from PIL import Image

    d = np.array([[1.0, 2.0], [np.nan, -1.0]], np.float32)
    np.save(tmp_path / "d.npy", d)
    depth, valid = inputs.load_depth(tmp_path / "d.npy")
    assert valid.tolist() == [[True, True], [False, False]] and depth[1, 0] == 0
    np.savez(tmp_path / "d.npz", depth=d)
    np.testing.assert_array_equal(inputs.load_depth(tmp_path / "d.npz")[1], valid)
    mm = np.array([[1000, 2500], [0, 65535]], np.uint16)
    Image.fromarray(mm).save(tmp_path / "d.png")
    depth, valid = inputs.load_depth(tmp_path / "d.png")
    np.testing.assert_allclose(depth, [[1.0, 2.5], [0.0, 65.535]], rtol=1e-6)
    assert valid.tolist() == [[True, True], [False, True]]
    Image.fromarray(np.zeros((2, 2), np.uint8)).save(tmp_path / "d8.png")
    with pytest.raises(ValueError, match="16-bit millimetres"):
        inputs.load_depth(tmp_path / "d8.png")
    with pytest.raises(ValueError, match="unsupported depth format"):
        inputs.load_depth(tmp_path / "d.tiff")


def test_intrinsics_forms_and_scaling(tmp_path):
    p = tmp_path / "K.json"
    K = [[500.0, 0, 320], [0, 500.0, 176], [0, 0, 1]]
    p.write_text(json.dumps({"K": K, "width": 640, "height": 352}))
    got = inputs.load_intrinsics(p, (320, 176))  # image is half the K's size
    np.testing.assert_allclose(got, [[250, 0, 160], [0, 250, 88], [0, 0, 1]])
    p.write_text(json.dumps({"fx": 100, "fy": 110, "cx": 50, "cy": 40}))
    np.testing.assert_allclose(inputs.load_intrinsics(p, (100, 80)), [[100, 0, 50], [0, 110, 40], [0, 0, 1]])
    p.write_text(json.dumps([[1, 2], [3, 4]]))
    with pytest.raises(ValueError, match="3x3"):
        inputs.load_intrinsics(p, (100, 80))


def test_object_path_checks(tmp_path):
    (tmp_path / "x.xyz").write_text("1")
    with pytest.raises(ValueError, match=r"unsupported format '\.xyz'"):
        inputs.check_object_path(tmp_path / "x.xyz")
    with pytest.raises(ValueError, match="no such file"):
        inputs.check_object_path(tmp_path / "x.ply")


def test_resize_nearest():
    a = np.arange(4).reshape(2, 2)
    np.testing.assert_array_equal(inputs.resize_nearest(a, 4, 4), np.repeat(np.repeat(a, 2, 0), 2, 1))


# --- video ---------------------------------------------------------------------------------------


def test_mp4_writer_publishes_only_on_finish(tmp_path):
    out = tmp_path / "v.mp4"
    frames = np.random.default_rng(0).integers(0, 255, (5, 32, 48, 3), dtype=np.uint8)
    w = video.Mp4Writer(out, 48, 32, fps=10)
    w.append(frames)
    assert not out.exists()
    w.finish()
    assert out.exists() and not w.tmp.exists()
    assert video.probe_video(out) == (5, 48, 32)


def test_mp4_writer_abort_leaves_nothing(tmp_path):
    out = tmp_path / "v.mp4"
    with pytest.raises(RuntimeError):
        with video.Mp4Writer(out, 48, 32) as w:
            w.append(np.zeros((3, 32, 48, 3), np.uint8))
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="uint8"):
        video.Mp4Writer(out, 48, 32).append(np.zeros((1, 32, 40, 3), np.uint8))


def test_tile_buffers_upstream_layout():
    r = np.zeros((2, 1, 4, 3, 3), np.uint8)
    r[:, 0] = 7
    tiled = video.tile_buffers(r, 2)
    assert tiled.shape == (2, 4, 6, 3)
    assert (tiled[:, :, :3] == 7).all() and (tiled[:, :, 3:] == 0).all()


def test_masks_roundtrip(tmp_path):
    rng = np.random.default_rng(1)
    m = rng.integers(0, 2, (3, 2, 5, 13), dtype=np.uint8)
    o = rng.integers(-1, 3, (3, 5, 13)).astype(np.int16)
    manifest.save_masks(tmp_path / "m.npz", m, o, np.arange(10, 13))
    back = manifest.load_masks(tmp_path / "m.npz")
    np.testing.assert_array_equal(back["mask"], m)
    np.testing.assert_array_equal(back["object"], o)
    np.testing.assert_array_equal(back["frames"], [10, 11, 12])


# --- demo assets ---------------------------------------------------------------------------------


def test_room_is_deterministic_and_depth_is_exact():
    img1, d1, K = assets.render_room(64, 48)
    img2, d2, _ = assets.render_room(64, 48)
    np.testing.assert_array_equal(img1, img2)
    np.testing.assert_array_equal(d1, d2)
    assert img1.shape == (48, 64, 3) and d1.dtype == np.float32
    # The centre pixel's ray, pitched down, must hit the floor (y = 0 in the room frame).
    pitch = np.radians(assets.CAMERA_PITCH_DEG)
    u, v = 40, 40
    ray = np.array([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], 1.0]) * d1[v, u]
    y_room = -assets.CAMERA_HEIGHT + np.cos(pitch) * ray[1] + np.sin(pitch) * ray[2]
    assert abs(y_room) < 1e-4 or d1[v, u] < 6.5  # on the floor or on furniture / walls
    assert np.isfinite(d1).all() and (d1 > 0).all() and len(np.unique(img1.reshape(-1, 3), axis=0)) > 50


def test_sneaker_points_and_ply(tmp_path):
    mesh = assets.sneaker_mesh()
    pos, col = assets.sample_surface(mesh, 2000, seed=3)
    pos2, col2 = assets.sample_surface(mesh, 2000, seed=3)
    np.testing.assert_array_equal(pos, pos2)
    assert pos.shape == (2000, 3) and col.dtype == np.uint8
    ext = pos.max(0) - pos.min(0)
    assert ext[0] > ext[2] and ext[0] > ext[1] and pos[:, 1].min() >= 0  # long along x, sole on y=0
    data = assets.ply_bytes(pos, col, None)
    header, body = data.split(b"end_header\n", 1)
    assert b"element vertex 2000" in header and len(body) == 2000 * 15


def test_write_assets(tmp_path):
    paths = assets.write_assets(tmp_path, 64, 48, num_points=500)
    assert set(paths) == {"image", "depth", "intrinsics", "object", "mesh"}
    K = json.loads((tmp_path / "room_K.json").read_text())
    assert K["width"] == 64 and np.asarray(K["K"]).shape == (3, 3)
    assert np.load(tmp_path / "room_depth.npy").shape == (48, 64)


def test_generate_options_proto():
    cfg = pipeline.GenerateConfig(image=None, prompt="p", seed=0, steps=3, guidance=0.0)
    opts = pipeline.generate_options(cfg)
    assert opts.HasField("seed") and opts.seed == 0 and opts.num_steps == 3 and opts.HasField("guidance")
    assert not pipeline.generate_options(pipeline.GenerateConfig(image=None)).HasField("seed")


def test_transform_matrix_pose_default_scale():
    t = types_pb2.Transform(pose=types_pb2.Pose(translation=[1, 2, 3]))
    np.testing.assert_allclose(placement.transform_matrix(t)[:3, 3], [1, 2, 3])
    np.testing.assert_allclose(placement.transform_matrix(t)[:3, :3], np.eye(3))


def test_config_takes_str_paths(tmp_path):
    cfg = pipeline.GenerateConfig(
        image=str(tmp_path / "a.png"), objects=[str(tmp_path / "x.ply")], out="o.mp4"
    )
    assert cfg.out == Path("o.mp4") and cfg.objects == [tmp_path / "x.ply"]
    with pytest.raises(ObjvidError, match=r"inputs: --image .*a\.png: no such file"):
        pipeline.validate(cfg)


def test_a_preset_through_its_look_at_point_is_an_input_error(tmp_path):
    # zoom_in by 2 x center depth with 120 frames puts frame 60 exactly on the look-at point (0, 0, 1).
    cfg = pipeline.GenerateConfig(image=tmp_path / "a.png", objects=[tmp_path / "x.ply"], backend="preview",
                                  trajectory="zoom_in", movement_distance=2.0, frames=120)  # fmt: skip
    with pytest.raises(
        ObjvidError, match=r"inputs: --trajectory zoom_in .*--movement-distance 2: .*coincide"
    ):
        pipeline.validate(cfg)


@pytest.mark.parametrize("radius", [-0.5, 7.5, float("nan")])
def test_object_radius_out_of_range_is_an_input_error(tmp_path, radius):
    cfg = pipeline.GenerateConfig(image=tmp_path / "a.png", objects=[tmp_path / "x.ply"], backend="preview",
                                  object_radius=radius)  # fmt: skip
    with pytest.raises(ObjvidError, match=r"inputs: --object-radius must be in \[0, 7\] pixels"):
        pipeline.validate(cfg)


@pytest.mark.parametrize(("field", "value", "match"), [
    ("object_lock", 1.5, r"--object-lock must be a number in \[0, 1\]"),
    ("object_lock", float("nan"), r"--object-lock must be a number in \[0, 1\]"),
    ("object_lock_feather", -1.0, r"--object-lock-feather must be in \[0, 64\] pixels"),
])  # fmt: skip
def test_object_lock_out_of_range_is_an_input_error(tmp_path, field, value, match):
    cfg = pipeline.GenerateConfig(image=tmp_path / "a.png", objects=[tmp_path / "x.ply"], backend="preview",
                                  **{field: value})  # fmt: skip
    with pytest.raises(ObjvidError, match="inputs: " + match):
        pipeline.validate(cfg)


def test_render_options_carry_the_object_radius():
    from objvid.client.sdk import ObjvidClient

    opts = ObjvidClient.render_options("fused", ("rgb",), object_radius_px=1.5)
    assert opts.object_radius_px == 1.5
    assert ObjvidClient.render_options("full").object_radius_px == 0.0  # the server's default


def test_streamed_frames_decode_like_the_protobuf_api():
    """The SDK's zero-copy frame decoding gives what parsing with protobuf gives (raw and PNG masks)."""
    from objvid.client.frames import frame_from_bytes
    from objvid.runtime import wire
    from objvid.v1 import cache_pb2

    rng = np.random.default_rng(4)
    frame = cache_pb2.Frame(index=7, num_slots=2)
    rgb = rng.integers(0, 256, (2, 6, 10, 3), dtype=np.uint8)
    mask = rng.integers(0, 2, (2, 6, 10), dtype=np.uint8)
    for s in range(2):
        frame.rgb.append(wire.encode_image(rgb[s]))
        frame.mask.append(wire.encode_image(mask[s] * 255, png=True) if s else wire.encode_image(mask[s]))
    frame.depth.CopyFrom(wire.encode_tensor(rng.random((2, 6, 10), dtype=np.float32)))
    frame.object_mask.CopyFrom(wire.encode_tensor(rng.integers(-1, 3, (2, 6, 10)).astype(np.int16)))
    data = cache_pb2.RenderTrajectoryResponse(frame=frame, total_frames=9).SerializeToString()
    got = frame_from_bytes(data, index=3)
    assert got.index == 3  # the SDK numbers frames in stream order
    np.testing.assert_array_equal(got.rgb, rgb)
    np.testing.assert_array_equal(got.mask, mask)
    np.testing.assert_array_equal(got.depth, wire.decode_tensor(frame.depth))
    np.testing.assert_array_equal(got.object_mask, wire.decode_tensor(frame.object_mask))
    with pytest.raises(ValueError, match="RenderTrajectory"):
        frame_from_bytes(data[:-5], index=0)


@pytest.mark.parametrize("command", ["generate", "render", "lift", "serve", "demo"])
def test_cli_help_shows_env_names_and_no_python_types(command):
    from typer.testing import CliRunner

    from objvid.client.cli import app

    result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    text = result.output
    assert "OBJVID_CLIENT_DEVICE" in text and "--json / --no-json" in text  # env fallbacks; on/off flags
    for leak in ("BOOLEAN", "INTEGER", "FLOAT", "list[", "Path", "Optional", "<class", "NoneType"):
        assert leak not in text, leak
    if command == "generate":
        assert "--save-buffer / --no-save-buffer" in text and "OBJVID_CLIENT_CACHE_ADDR" in text


def test_a_missing_object_is_one_error_line_before_any_server(tmp_path):
    import subprocess
    import sys

    from objvid.testing import assets

    room = assets.write_assets(tmp_path / "assets", 64, 48, num_points=50)
    proc = subprocess.run(
        [sys.executable, "-m", "objvid.client", "generate", "--image", room["image"], "--backend", "preview",
         "--out", str(tmp_path / "o.mp4")],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip() == "error: inputs: --object is required (a .ply/.obj/.glb/.gltf/.stl file)"
    assert not (tmp_path / "o_work").exists()  # nothing started, nothing written


def test_progress_bars_keep_their_width_and_fit_the_terminal():
    """Long descriptions are cut to the terminal's width; they never narrow the bars (which would redraw
    every bar at another width mid-run)."""
    import io
    import re

    from rich.console import Console

    from objvid.client.cli_output import BAR_WIDTH, STAGE_LABELS, RichReporter

    buf = io.StringIO()
    reporter = RichReporter(Console(file=buf, width=80, force_terminal=True, color_system=None))
    reporter.start("stack", 2, "starting cache, diffusion")
    reporter.finish("stack")
    reporter.start("render", 121, "chunk 1/3: frames 0-120")
    reporter.update("render", 60)
    reporter.start(
        "fidelity", None, "chunk 1/3: frames 0-120, and a description far longer than what is left"
    )
    reporter.start("stack_stop", None, "cache, diffusion")
    reporter.close()
    lines = [re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", line) for line in buf.getvalue().splitlines()]
    final = [line for line in lines if line.strip()][-4:]  # the last redraw: one line per stage
    assert [STAGE_LABELS[s] in line for s, line in zip(("stack", "render", "fidelity", "stack_stop"), final,
                                                        strict=True)] == [True] * 4  # fmt: skip
    assert all(len(line) <= 80 for line in final), final
    # every bar starts in one column; full and pulsing bars (no total) are BAR_WIDTH long
    assert len({line.index("━") for line in final}) == 1, final
    for line in (final[0], final[2], final[3]):
        assert max(len(run) for run in re.findall("━+", line)) == BAR_WIDTH, line
    assert "…" in final[2] and "description" not in final[2]  # cut, not wrapped onto a second line


def test_service_options_gather_the_flags_and_their_env_names_into_services():
    """@service_options adds the shared service flags (one declaration for generate, render, lift, studio),
    before the output flags, and hands them to the command as one Services."""
    import typer
    from typer.testing import CliRunner

    from objvid.client.cli_services import service_flags, service_options

    app, got = typer.Typer(), {}

    @app.command()
    @service_options(mtls=False)
    def cmd(frames: o.Frames = None, services=None, quiet: o.Quiet = False):
        got.update(services=services, frames=frames, quiet=quiet)

    result = CliRunner().invoke(app, ["--cache-addr", "h:1", "--frames", "5", "--device", "cpu", "--quiet"],
                                env={"OBJVID_CLIENT_TOKEN": "t0k", "OBJVID_CLIENT_CONNECT_TIMEOUT": "1.5",
                                     "COLUMNS": "200"})  # fmt: skip
    assert result.exit_code == 0, result.output
    s = got["services"]
    assert (s.cache_addr, s.token, s.device, s.depth_addr, s.tls_cert) == ("h:1", "t0k", "cpu", None, None)
    assert s.connect_timeout == 1.5
    assert got["frames"] == 5 and got["quiet"] is True
    help_text = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"}).output
    assert "--tls-cert" not in help_text and "OBJVID_CLIENT_TRITON_ADDR" in help_text
    order = [help_text.index(f) for f in ("--frames", "--depth-addr", "--device", "--quiet")]
    assert order == sorted(order)  # own flags, then the service flags, then the output flags
    assert service_flags(cache=False, triton=False) == ["depth_addr", "token", "tls_ca", "tls_cert", "tls_key",
                                                         "allow_insecure_token", "connect_timeout", "depth_model",
                                                         "device"]  # fmt: skip
