"""--views DIR|GLOB|VIDEO: the fork's frame selection, and both paths end to end through the CLI with
random-weight geometry (VGGT) and depth (MoGe) checkpoints in the real formats."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import numpy as np
import psutil
import pytest

from objvid.client import multiview as mv
from objvid.client import pipeline
from objvid.client import view_frames as vf
from objvid.client.errors import ObjvidError
from objvid.testing import assets
from objvid.testing.assets_multiview import write_multiview_assets

W, H = 320, 176


def _marked(marker: str) -> list[int]:
    """Live processes started for this run (environment ``OBJVID_TEST_MARK=<marker>``)."""
    found = []
    for p in psutil.process_iter():
        try:
            if p.status() != psutil.STATUS_ZOMBIE and p.environ().get("OBJVID_TEST_MARK") == marker:
                found.append(p.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return found


def test_frame_indices_follow_the_fork_table():
    assert vf.frame_indices("first", 100) == [0]
    assert vf.frame_indices("middle", 100) == [50]
    assert vf.frame_indices("last", 100) == [99]
    assert vf.frame_indices("all", 100, max_views=10) == list(range(0, 100, 10))
    assert vf.frame_indices("all", 24, max_views=3) == [0, 8, 16]
    assert vf.frame_indices("all", 5, max_views=10) == [0, 1, 2, 3, 4]
    assert vf.frame_indices("interval", 100, max_views=50, interval=30) == [0, 30, 60, 90]
    assert vf.frame_indices("interval", 100, max_views=2, interval=30) == [0, 30]  # --max-views truncates
    assert vf.frame_indices("first_max_frames", 400, max_views=10, step=40) == list(range(0, 400, 40))
    assert vf.frame_indices("first_max_frames", 100, max_views=10, step=40) == [0, 40, 80]  # in bounds only
    with pytest.raises(ValueError, match="--view-select must be one of"):
        vf.frame_indices("random", 10)
    with pytest.raises(ValueError, match="--view-step must be an integer >= 1"):
        vf.frame_indices("first_max_frames", 10, step=0)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("unposed")
    paths = write_multiview_assets(d, W, H, video_frames=24)
    paths.update(assets.write_assets(d, W, H, num_points=5_000))
    return paths


def test_folder_glob_and_video_inputs_are_read(files, tmp_path):
    base = dict(image=None, objects=[files["object"]], backend="preview", out=tmp_path / "o.mp4")
    folder = mv.plan_inputs(pipeline.GenerateConfig(**base, views=files["views_dir"]))
    assert (
        folder.count == 2 and not folder.posed and [p.endswith(".png") for p in folder.files] == [True, True]
    )
    glob_views = mv.plan_inputs(pipeline.GenerateConfig(**base, views=files["views_dir"] + "/view_01.*"))
    assert glob_views.count == 1
    video = mv.plan_inputs(
        pipeline.GenerateConfig(**base, views=files["video"], view_select="all", max_views=3)
    )
    assert video.files == [f"{files['video']}#{i}" for i in (0, 8, 16)]
    assert video.images[0].shape == (H, W, 3) and "3 of 24 frames" in video.source
    for kw, text in [(dict(views=str(tmp_path / "none")), "no such file or folder"),
                     (dict(views=str(tmp_path / "x.mp4")), "no such video file"),
                     (dict(views=files["views_dir"], max_views=0), "--max-views must be an integer >= 1"),
                     (dict(views=files["video"], view_select="nope"), "--view-select must be one of")]:  # fmt: skip
        with pytest.raises(ObjvidError, match=text):
            pipeline.validate(pipeline.GenerateConfig(**base, **kw))


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    from objvid.depth.geometry import save_checkpoint
    from objvid.testing.depth_model import SMALL_V1_CONFIG, build_random
    from objvid.testing.depth_model import save_checkpoint as save_moge
    from objvid.testing.geometry_model import random_vggt

    d = tmp_path_factory.mktemp("ckpt")
    save_moge(build_random(SMALL_V1_CONFIG, "v1", seed=1), SMALL_V1_CONFIG, d / "moge.pt")
    return {"geometry": str(save_checkpoint(random_vggt(seed=2), d / "vggt" / "model.pt")),
            "depth": str(d / "moge.pt")}  # fmt: skip


def _generate(views_args, files, checkpoints, out):
    marker = uuid.uuid4().hex
    env = {**os.environ, "OBJVID_TEST_MARK": marker, "OBJVID_DEPTH_INFER_WIDTH": "224",
           "OBJVID_DEPTH_INFER_HEIGHT": "126", "OBJVID_DEPTH_NUM_TOKENS": "64"}  # fmt: skip
    args = ["generate", *views_args, "--object", files["object"], "--object-pose", "0,0.2,1.5",
            "--backend", "preview", "--frames", "9", "--width", str(W), "--height", str(H),
            "--geometry-model", checkpoints["geometry"], "--depth-model", checkpoints["depth"], "--device", "cpu",
            "--out", str(out), "--json"]  # fmt: skip
    proc = subprocess.run([sys.executable, "-m", "objvid.client", *args], capture_output=True, text=True,
                          timeout=600, env=env)  # fmt: skip
    assert _marked(marker) == [] or proc.returncode != 0
    assert proc.returncode == 0, proc.stderr
    return json.loads((out.parent / f"{out.stem}_work" / "manifest.json").read_text())


@pytest.mark.slow
def test_image_folder_runs_through_the_geometry_model(files, checkpoints, tmp_path):
    man = _generate(["--views", files["views_dir"]], files, checkpoints, tmp_path / "folder.mp4")
    assert man["services"]["local_stack"] == ["depth", "cache", "diffusion"]
    assert man["depth"]["source"] == "geometry model" and man["depth"]["model"] == checkpoints["geometry"]
    np.testing.assert_allclose(man["depth"]["w2cs"][0], np.eye(4).tolist())
    assert man["views"]["count"] == 2 and len(man["views"]["slot_sources"]) == 9
    assert {s for f in man["views"]["slot_sources"] for s in f} - {-1} <= {0, 1}
    assert (tmp_path / "folder.mp4").stat().st_size > 0


@pytest.mark.slow
def test_video_frames_run_through_the_geometry_model(files, checkpoints, tmp_path):
    man = _generate(["--views", files["video"], "--view-select", "all", "--max-views", "3"], files, checkpoints,
                    tmp_path / "video.mp4")  # fmt: skip
    assert man["views"]["count"] == 3 and man["views"]["files"][1].endswith("#8")
    assert len(man["depth"]["w2cs"]) == 3 and len(man["views"]["slot_sources"]) == 9
