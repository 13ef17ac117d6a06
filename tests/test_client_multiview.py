"""objvid-client --views: upstream multi-view npz input, checked inputs, end to end with the preview backend."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import numpy as np
import psutil
import pytest

from objvid.client import multiview as mv
from objvid.client import pipeline, video
from objvid.client.errors import ObjvidError
from objvid.testing import assets
from objvid.testing.assets_multiview import room_views, views_npz_arrays

W, H = 320, 176  # the demo room's floor survives GEN3C's depth-edge filter from this size on


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


@pytest.fixture(scope="module")
def npz_arrays():
    return views_npz_arrays(room_views(W, H))


@pytest.fixture(scope="module")
def files(tmp_path_factory, npz_arrays):
    d = tmp_path_factory.mktemp("views")
    np.savez(d / "views.npz", **npz_arrays)
    paths = assets.write_assets(d, W, H, num_points=5_000)
    return {"views": d / "views.npz", "object": paths["object"], "dir": d}


def _bad_npz(tmp_path, arrays, **changes):
    a = {k: v.copy() for k, v in arrays.items()}
    for k, v in changes.items():
        if v is None:
            a.pop(k)
        else:
            a[k] = v
    p = tmp_path / f"bad_{uuid.uuid4().hex[:6]}.npz"
    np.savez(p, **a)
    return p


def test_npz_loads_as_upstream_lays_it_out(files, npz_arrays):
    v = mv.load_npz(files["views"])
    assert v.count == 2 and v.size == (W, H)
    np.testing.assert_array_equal(v.images, room_views(W, H)["images"])
    np.testing.assert_allclose(v.w2cs[0], np.eye(4), atol=1e-6)  # world = view 0's camera
    assert v.masks.all() and v.w2cs_all is None
    small = v.resized(W // 2, H // 2)
    assert small.images.shape == (2, H // 2, W // 2, 3)
    np.testing.assert_allclose(small.Ks[:, 0, 0], v.Ks[:, 0, 0] / 2)


@pytest.mark.parametrize(
    "change,match",
    [
        (
            lambda a: {"depth_key_frames": a["depth_key_frames"][:1]},
            r"depth_key_frames: 1 entries, expected 2",
        ),
        (lambda a: {"K_key_frames": a["K_key_frames"][:, :2]}, r"K_key_frames: expected shape \(2, 3, 3\)"),
        (lambda a: {"mask_key_frames": a["mask_key_frames"][:, :, :10]}, r"mask_key_frames: expected shape"),
        (lambda a: {"images_key_frames": a["images_key_frames"] * 3}, r"images_key_frames: values must be"),
        (
            lambda a: {
                "w2cs_key_frames": a["w2cs_key_frames"]
                * np.array([1, 1, 1, 1.0])[:, None]
                * np.array([2.0, 1, 1, 1])[None, :, None]
            },  # fmt: skip
            r"w2cs_key_frames\[0\]: not rigid",
        ),
        (
            lambda a: {
                "mask_key_frames": np.concatenate([a["mask_key_frames"][:1], 0 * a["mask_key_frames"][1:]])
            },
            r"mask_key_frames\[1\]: no valid pixel",
        ),
        (lambda a: {"w2cs_key_frames": None}, r"missing key\(s\) w2cs_key_frames"),
        (
            lambda a: {"w2cs_all": np.repeat(np.eye(4)[None], 5, 0), "Ks_all": a["K_key_frames"]},
            r"Ks_all: 2 entries, expected 5",
        ),
    ],
)
def test_bad_npz_gets_one_clear_error(tmp_path, npz_arrays, change, match):
    p = _bad_npz(tmp_path, npz_arrays, **change(npz_arrays))
    with pytest.raises(ValueError, match=match) as err:
        mv.load_npz(p)
    assert str(p) in str(err.value)


def test_option_errors_before_any_service(files, tmp_path):
    base = dict(objects=[files["object"]], backend="preview", out=tmp_path / "o.mp4")
    cases = [
        (dict(image=None, views=files["views"], seed_view=2), "--seed-view must be a view index in"),
        (dict(image=files["dir"] / "room.png", views=files["views"]), "--image and --views are exclusive"),
        (dict(image=None), "no input given: use --image PATH"),
        (dict(image=None, views=files["views"], views_trajectory="npz"), "no w2cs_all"),
        (dict(image=None, views=tmp_path / "missing.npz"), "no such file"),
        (dict(image=None, views=files["views"], view_fusion="mean"), "--view-fusion must be one of"),
        (dict(image=files["dir"] / "room.png", view_fusion="latent-max"), "latent-max needs --views"),
    ]
    for kw, text in cases:
        with pytest.raises(ObjvidError, match=text) as err:
            pipeline.validate(pipeline.GenerateConfig(**base, **kw))
        assert err.value.stage == "inputs"


def test_trajectory_relative_to_the_seed_view_or_from_the_npz(files):
    v = mv.load_npz(files["views"])
    L = np.repeat(np.eye(4)[None], 3, 0)
    L[:, 0, 3] = [0.0, 0.1, 0.2]
    Ks, w2cs, desc = mv.trajectory(v, 1, "auto", L, 3)
    np.testing.assert_allclose(w2cs[0], v.w2cs[1])
    np.testing.assert_allclose(w2cs[2], L[2] @ v.w2cs[1])
    np.testing.assert_allclose(Ks, np.repeat(v.Ks[1][None], 3, 0))
    assert desc == "preset relative to view 1"
    v.w2cs_all = np.repeat(v.w2cs[1][None], 4, 0)
    Ks, w2cs, desc = mv.trajectory(v, 0, "auto", L, 3)
    assert desc == "npz w2cs_all" and len(w2cs) == 3
    np.testing.assert_allclose(Ks[0], v.Ks[-1])  # upstream: the last key view's K without Ks_all
    with pytest.raises(ValueError, match="only 4 poses"):
        mv.trajectory(v, 0, "npz", L, 5)
    _, w2cs, desc = mv.trajectory(v, 0, "preset", L, 3)
    assert desc.startswith("preset") and np.allclose(w2cs[0], v.w2cs[0])


def _cli(args, timeout=600):
    marker = uuid.uuid4().hex
    env = {**__import__("os").environ, "OBJVID_TEST_MARK": marker}
    proc = subprocess.run([sys.executable, "-m", "objvid.client", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)  # fmt: skip
    assert _marked(marker) == [] or proc.returncode != 0
    return proc


@pytest.mark.slow
def test_generate_with_views_npz_uses_both_views_and_records_them(files, tmp_path):
    out = tmp_path / "mv.mp4"
    proc = _cli(["generate", "--views", str(files["views"]), "--object", files["object"], "--backend", "preview",
                 "--frames", "25", "--movement-distance", "0.6", "--out", str(out), "--json"])  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert video.probe_video(out) == (25, W, H)
    man = json.loads((tmp_path / "mv_work" / "manifest.json").read_text())
    views = man["views"]
    assert (
        views["count"] == 2 and views["seed_view"] == 0 and views["trajectory"] == "preset relative to view 0"
    )
    per_frame = views["slot_sources"]
    assert len(per_frame) == 25 and all(len(f) == 2 for f in per_frame)
    used = {s for f in per_frame for s in f if s >= 0}
    assert used == {0, 1}  # both views feed the cache renders
    assert per_frame[0] == [0, -1]  # the seed camera: view 0 alone covers the frame
    assert man["chunks"][0]["slot_sources"] == per_frame
    assert man["depth"] == {"source": "views"}
    assert man["objects"][0]["placement"] == "auto"
    assert sum(p[0] for p in man["object_pixels"]["per_frame"]) > 0


@pytest.mark.slow
def test_long_video_with_views_has_no_scene_update(files, tmp_path, npz_arrays):
    traj = np.repeat(np.eye(4)[None], 130, 0)
    traj[:, 0, 3] = np.linspace(0.0, 0.5, 130)
    p = _bad_npz(tmp_path, npz_arrays, w2cs_all=traj.astype(np.float32))
    out = tmp_path / "long.mp4"
    proc = _cli(["generate", "--views", str(p), "--object", files["object"], "--backend", "preview",
                 "--out", str(out), "--json"])  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    man = json.loads((tmp_path / "long_work" / "manifest.json").read_text())
    assert man["video"]["frames"] == 130 and man["views"]["trajectory"] == "npz w2cs_all"
    assert [c["start"] for c in man["chunks"]] == [0, 120]
    assert all("update" not in c for c in man["chunks"])
    assert len(man["views"]["slot_sources"]) == 130
    assert man["services"]["local_stack"] == ["cache", "diffusion"]  # no depth service for npz views
    assert video.probe_video(out) == (130, W, H)


@pytest.mark.slow
def test_latent_max_sends_every_view_to_the_model(files, tmp_path):
    out = tmp_path / "lm.mp4"
    proc = _cli(["generate", "--views", str(files["views"]), "--object", files["object"], "--backend", "preview",
                 "--frames", "5", "--view-fusion", "latent-max", "--out", str(out), "--json"])  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    man = json.loads((tmp_path / "lm_work" / "manifest.json").read_text())
    assert man["views"]["view_fusion"] == "latent-max"
    assert man["views"]["slot_sources"] == [[0, 1]] * 5  # no selection: both views in every frame
    assert man["chunks"][0]["slots"] == 2


@pytest.mark.slow
def test_render_with_views_writes_the_first_slot_in_use(files, tmp_path):
    out = tmp_path / "r.mp4"
    proc = _cli(["render", "--views", str(files["views"]), "--frames", "4", "--movement-distance", "0.6",
                 "--png-dir", str(tmp_path / "png"), "--out", str(out), "--json"])  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    man = json.loads((tmp_path / "r_work" / "manifest.json").read_text())
    assert man["services"]["local_stack"] == ["cache"] and len(man["views"]["slot_sources"]) == 4
    from PIL import Image

    first = np.asarray(Image.open(tmp_path / "png" / "rgb_0000.png"))
    covered = np.asarray(Image.open(tmp_path / "png" / "mask_0000.png")) > 0
    assert covered.mean() > 0.9  # the depth-edge filter leaves a few holes
    seed = mv.load_npz(files["views"]).images[0]
    np.testing.assert_array_equal(first[covered], seed[covered])  # frame 0 = the seed view itself
