"""``objvid-client generate --input-video`` end to end on the local stack (real cache + preview servers as
child processes): a synthetic RGB-D video with a moving camera and a moving box, through the GEN3C
directory and ``.pt`` formats, re-shot with an object in place."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from objvid.client import camera_path, manifest, video
from objvid.testing.video import synthetic_rgbd_video, write_gen3c_dir, write_gen3c_pt

H, W = 48, 80
pytestmark = pytest.mark.slow


def write_cube_ply(path: Path, half: float = 0.08, n: int = 8) -> Path:
    g = np.linspace(-half, half, n)
    pts = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)
    lines = [f"{x:.5f} {y:.5f} {z:.5f} 250 250 250" for x, y, z in pts]
    header = ["ply", "format ascii 1.0", f"element vertex {len(pts)}", "property float x", "property float y",
              "property float z", "property uchar red", "property uchar green", "property uchar blue", "end_header"]  # fmt: skip
    path.write_text("\n".join(header + lines) + "\n")
    return path


def generate(args: list[str], tmp: Path) -> dict:
    out = tmp / "video.mp4"
    proc = subprocess.run([sys.executable, "-m", "objvid.client", "generate", *args, "--backend", "preview",
                           "--device", "cpu", "--out", str(out), "--json", "--trajectory", "left", "--width", str(W), "--height", str(H),
                           "--movement-distance", "0.2"], capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def clip():
    return synthetic_rgbd_video(frames=121, height=H, width=W)


def test_generate_from_a_gen3c_directory(tmp_path, clip):
    root = write_gen3c_dir(tmp_path / "clip", clip)
    obj = write_cube_ply(tmp_path / "cube.ply")
    result = generate(
        ["--input-video", str(root), "--object", str(obj), "--object-pose", "0.45,0.2,2.5"], tmp_path
    )
    assert result["status"] == "ok" and result["frames"] == 121 and result["chunks"] == 1
    assert video.probe_video(result["video"]) == (121, W, H)
    m = json.loads(Path(result["manifest"]).read_text())
    assert m["inputs"]["mode"] == "video" and m["inputs"]["video_format"] == "gen3c_dir"
    masks = manifest.load_masks(Path(result["workdir"]) / "masks_chunk00.npz")
    # the camera walks 3.6 units and turns 60 degrees over the clip: the object leaves the view later on;
    # while in view, it stays where the new cameras see its world position
    cams = camera_path.load_camera_path(Path(result["workdir"]) / "cameras.json")
    for f in range(10):
        ys, xs = np.nonzero(masks["object"][f] >= 0)
        c = cams.w2cs[f][:3, :3] @ [0.45, 0.2, 2.5] + cams.w2cs[f][:3, 3]
        u, v = (cams.Ks[f] @ c)[:2] / c[2]
        assert len(xs) > 5 and abs(xs.mean() - u) < 1.5 and abs(ys.mean() - v) < 1.5, (f, xs.mean(), u)


def test_generate_from_a_pt_with_an_object_track(tmp_path, clip):
    path = write_gen3c_pt(tmp_path / "clip.pt", clip)
    obj = write_cube_ply(tmp_path / "cube.ply")
    poses = [np.eye(4) for _ in range(121)]
    for i, p in enumerate(poses):
        p[:3, 3] = [0.3 + 0.003 * i, 0.2, 2.5]
    (tmp_path / "track.json").write_text(json.dumps({"poses": [p.tolist() for p in poses]}))
    result = generate(["--input-video", str(path), "--object", str(obj), "--object-track",
                       str(tmp_path / "track.json")], tmp_path)  # fmt: skip
    assert result["status"] == "ok" and video.probe_video(result["video"]) == (121, W, H)
    masks = manifest.load_masks(Path(result["workdir"]) / "masks_chunk00.npz")
    cams = camera_path.load_camera_path(Path(result["workdir"]) / "cameras.json")
    for f in range(0, 12, 3):  # the object follows its track, seen by the new cameras
        ys, xs = np.nonzero(masks["object"][f] >= 0)
        c = cams.w2cs[f][:3, :3] @ poses[f][:3, 3] + cams.w2cs[f][:3, 3]
        u, v = (cams.Ks[f] @ c)[:2] / c[2]
        assert len(xs) > 5 and abs(xs.mean() - u) < 1.5 and abs(ys.mean() - v) < 1.5, (f, xs.mean(), u)


def test_bad_video_is_one_clear_line(tmp_path, clip):
    root = write_gen3c_dir(tmp_path / "clip", {k: v[:60] for k, v in clip.items()})
    obj = write_cube_ply(tmp_path / "cube.ply")
    proc = subprocess.run([sys.executable, "-m", "objvid.client", "generate", "--input-video", str(root), "--object",
                           str(obj), "--backend", "preview", "--out", str(tmp_path / "o.mp4")],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode != 0
    assert "60 frames; GEN3C needs 120 N + 1 frames, the nearest valid length is 121" in proc.stderr
