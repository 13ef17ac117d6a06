"""``--input-video`` readers: GEN3C directory, GEN3C .pt, ViPE directory; 120 N + 1 trimming; bad inputs
named by file and field; ``--object-track``. Real files written with the real encoders (PyAV, numpy,
torch, OpenCV)."""

from __future__ import annotations

import json
import os
import zipfile

import numpy as np
import pytest
import torch

from objvid.client.video_input import detect_format, load_object_track, load_video_input, valid_length
from objvid.testing.video import synthetic_rgbd_video, write_gen3c_dir, write_gen3c_pt, write_mp4

H, W = 32, 48


@pytest.fixture(scope="module")
def video():
    return synthetic_rgbd_video(frames=122, height=H, width=W)


def test_valid_length():
    assert valid_length(121) == 121 and valid_length(240) == 121 and valid_length(241) == 241
    with pytest.raises(ValueError, match="120 frames; .* the nearest valid length is 121"):
        valid_length(120)


def test_directory_round_trip_and_trim(tmp_path, video):
    root = write_gen3c_dir(tmp_path / "clip", video)
    assert detect_format(root) == "gen3c_dir"
    clip = load_video_input(root, W, H)
    assert clip.format == "gen3c_dir" and clip.frames_in == 122 and clip.num_frames == 121
    np.testing.assert_array_equal(clip.depth, video["depth"][:121])
    np.testing.assert_allclose(clip.w2c, video["w2c"][:121])
    np.testing.assert_allclose(clip.K, video["K"][:121])
    assert np.abs(clip.rgb.astype(int) - video["rgb"][:121]).mean() < 3  # crf 0 yuv444: near lossless


def test_directory_resized_to_the_working_size(tmp_path, video):
    root = write_gen3c_dir(tmp_path / "clip", video)
    clip = load_video_input(root, 2 * W, 2 * H)
    assert clip.rgb.shape == (121, 2 * H, 2 * W, 3) and clip.depth.shape == (121, 2 * H, 2 * W)
    np.testing.assert_allclose(clip.K[:, 0, 0], 2 * video["K"][:121, 0, 0])


def test_pt_round_trip(tmp_path, video):
    path = write_gen3c_pt(tmp_path / "clip.pt", video)
    assert detect_format(path) == "gen3c_pt"
    clip = load_video_input(path, W, H)
    assert clip.num_frames == 121
    assert np.abs(clip.rgb.astype(int) - video["rgb"][:121]).max() <= 1
    np.testing.assert_allclose(clip.depth, video["depth"][:121])
    np.testing.assert_allclose(clip.w2c, video["w2c"][:121], atol=1e-6)


def write_vipe(root, video, src_hw=(36, 64)):
    """A ViPE output directory at 16:9 source size: c2w poses, fx fy cx cy intrinsics, EXR depth zip."""
    os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")
    import cv2

    from objvid.client import inputs as io

    n = len(video["rgb"])
    h, w = src_hw
    for d in ("rgb", "depth", "pose", "intrinsics"):
        (root / d).mkdir(parents=True)
    write_mp4(root / "rgb" / "clip.mp4", np.stack([io.resize_image(f, w, h) for f in video["rgb"]]))
    order = np.arange(n)[::-1]  # ViPE's inds need not be sorted
    np.savez(root / "pose" / "clip.npz", inds=order, data=np.linalg.inv(video["w2c"])[order])
    K = np.stack([io.scale_intrinsics(k, (W, H), (w, h)) for k in video["K"]])
    np.savez(root / "intrinsics" / "clip.npz", inds=order,
             data=np.stack([K[:, 0, 0], K[:, 1, 1], K[:, 0, 2], K[:, 1, 2]], 1)[order])  # fmt: skip
    with zipfile.ZipFile(root / "depth" / "clip.zip", "w") as zf:
        for i in range(n):
            d = io.resize_nearest(video["depth"][i], w, h).astype(np.float32)
            zf.writestr(f"{i:05d}.exr", cv2.imencode(".exr", d)[1].tobytes())
    return root, K


def test_vipe_resize_then_centre_crop(tmp_path, video):
    root, K_src = write_vipe(tmp_path / "vipe", video)
    assert detect_format(root) == "vipe"
    # working size 64x32: resize 36x64 -> 36x64 (64 * 9 / 16 = 36), centre crop 2 rows top and bottom
    clip = load_video_input(root, 64, 32)
    assert clip.rgb.shape == (121, 32, 64, 3)
    np.testing.assert_allclose(clip.w2c, video["w2c"][:121], atol=1e-9)  # c2w inverted back
    np.testing.assert_allclose(clip.K[:, 0, 0], K_src[:121, 0, 0])
    np.testing.assert_allclose(clip.K[:, 1, 2], K_src[:121, 1, 2] - 2)
    assert np.isfinite(clip.depth).all() and clip.depth.min() > 0


def test_bad_inputs_name_file_and_field(tmp_path, video):
    root = write_gen3c_dir(tmp_path / "clip", video)
    np.savez(root / "depth.npz", depth=video["depth"][:100])
    with pytest.raises(ValueError, match=r"depth\.npz: depth: 100 frames, .*rgb\.mp4 has 122"):
        load_video_input(root, W, H)
    np.savez(root / "depth.npz", depth=video["depth"])
    w2c = video["w2c"].copy()
    w2c[5, :3, :3] *= 2.0
    np.savez(root / "camera.npz", w2c=w2c, intrinsics=video["K"])
    with pytest.raises(ValueError, match=r"camera\.npz: w2c\[5\]"):
        load_video_input(root, W, H)
    np.savez(root / "camera.npz", w2c=video["w2c"][:-2], intrinsics=video["K"])
    with pytest.raises(ValueError, match=r"camera\.npz: w2c: 120 cameras, .* has 122 frames"):
        load_video_input(root, W, H)
    np.savez(root / "camera.npz", w2c=video["w2c"][:, :3], intrinsics=video["K"])
    with pytest.raises(ValueError, match=r"camera\.npz: w2c: expected \(F, 4, 4\)"):
        load_video_input(root, W, H)
    np.savez(root / "camera.npz", w2c=video["w2c"])
    with pytest.raises(ValueError, match=r"camera\.npz: no field 'intrinsics'"):
        load_video_input(root, W, H)
    np.savez(root / "camera.npz", w2c=video["w2c"], intrinsics=video["K"])
    np.savez(root / "mask.npz", mask=video["mask"][:, :10])
    with pytest.raises(ValueError, match=r"mask\.npz: mask: frame size \(10, 48\) differs"):
        load_video_input(root, W, H)
    short = write_gen3c_pt(tmp_path / "short.pt", {k: v[:60] for k, v in video.items()})
    with pytest.raises(ValueError, match="60 frames; .*nearest valid length is 121"):
        load_video_input(short, W, H)
    torch.save({"rgb": torch.zeros(1)}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match=r"bad\.pt: missing tensors \['depth'"):
        load_video_input(tmp_path / "bad.pt", W, H)
    with pytest.raises(ValueError, match="no such file"):
        load_video_input(tmp_path / "nope", W, H)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="rgb.mp4 .GEN3C. or rgb/ \\+ pose/ .ViPE."):
        load_video_input(tmp_path / "empty", W, H)


def test_object_track(tmp_path):
    poses = [np.eye(4) for _ in range(130)]
    for i, p in enumerate(poses):
        p[0, 3] = 0.01 * i
    path = tmp_path / "track.json"
    path.write_text(json.dumps({"poses": [p.tolist() for p in poses]}))
    track = load_object_track(path, 121)
    assert track.shape == (121, 4, 4) and track[120, 0, 3] == pytest.approx(1.2)
    path.write_text(json.dumps([p.ravel().tolist() for p in poses[:50]]))
    with pytest.raises(ValueError, match="poses: 50 poses for 121 frames"):
        load_object_track(path, 121)
    bad = [p.tolist() for p in poses]
    bad[7][0][1] = 0.5
    path.write_text(json.dumps(bad))
    with pytest.raises(ValueError, match=r"track\.json: poses\[7\]"):
        load_object_track(path, 121)
