"""objvid-client end to end on the local embedded stack (real servers as child processes, preview backend).

Small sizes (176x320) so the whole file runs in a few minutes on 2 CPU cores. The runs go through the
CLI in a subprocess, exactly as users type it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import psutil
import pytest

from objvid.client import manifest, video
from objvid.testing import assets

W, H = 320, 176


def _marker_pids(marker: str) -> list[int]:
    """Live (non-zombie) processes whose environment carries ``OBJVID_TEST_MARK=<marker>`` (psutil)."""
    found = []
    for p in psutil.process_iter():
        try:
            if p.status() != psutil.STATUS_ZOMBIE and p.environ().get("OBJVID_TEST_MARK") == marker:
                found.append(p.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return found


def _env(marker: str, **extra) -> dict:
    env = dict(os.environ)
    env["OBJVID_TEST_MARK"] = marker
    env.update(extra)
    return env


def _cli(
    args: list[str], marker: str | None = None, timeout: float = 400, **env
) -> subprocess.CompletedProcess:
    marker = marker or uuid.uuid4().hex
    proc = subprocess.run(
        [sys.executable, "-m", "objvid.client", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_env(marker, **env),
    )
    deadline = time.monotonic() + 10
    while _marker_pids(marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _marker_pids(marker) == [], f"processes left behind: {_marker_pids(marker)}"
    return proc


@pytest.fixture(scope="module")
def room(tmp_path_factory) -> dict[str, str]:
    return assets.write_assets(tmp_path_factory.mktemp("assets"), W, H, num_points=20_000)


def _inputs(room, depth=True, width=W, height=H) -> list[str]:
    args = [
        "--image",
        room["image"],
        "--object",
        room["object"],
        "--width",
        str(width),
        "--height",
        str(height),
    ]
    if depth:
        args += ["--depth", room["depth"], "--intrinsics", room["intrinsics"]]
    return args


@pytest.fixture(scope="module")
def generated(room, tmp_path_factory):
    out = tmp_path_factory.mktemp("gen") / "video.mp4"
    proc = _cli(["generate", *_inputs(room), "--backend", "preview", "--frames", "121", "--save-buffer",
                 "--object-lock", "0.5", "--device", "cpu", "--out", str(out), "--json"])  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1]), out


@pytest.mark.slow
def test_generate_writes_the_video(generated):
    result, out = generated
    assert result["status"] == "ok" and result["video"] == str(out.resolve())
    assert video.probe_video(out) == (121, W, H)
    # --save-buffer: the one render slot left of the video (upstream layout, n_max = 1).
    assert video.probe_video(out.with_name("video_buffer.mp4")) == (121, 2 * W, H)
    assert not [p for p in out.parent.iterdir() if ".partial" in p.name]


@pytest.mark.slow
def test_generate_says_preview_and_records_the_run(generated):
    result, out = generated
    assert result["backend"] == "preview" and result["preview"] is True
    stages = ("stack", "inputs", "scene", "placement", "render", "diffusion", "encoding", "stack_stop")
    assert [k for k in result["timings"] if k in stages] == list(stages)  # the table's order
    assert list(result["timings"])[-2:] == ["other", "total"]
    assert "depth" not in result["timings"]  # --depth given: no depth service, no lift
    # the table adds up: total = the stages (the servers' start and stop included) + "other" (connecting,
    # the gaps between stages), to rounding
    t = dict(result["timings"])
    total = t.pop("total")
    assert t["other"] >= 0 and abs(sum(t.values()) - total) < 0.01, result["timings"]
    m = json.loads(Path(result["manifest"]).read_text())
    assert m["status"] == "ok" and m["preview"] is True and m["backend"] == "preview"
    assert m["services"]["local_stack"] == ["cache", "diffusion"]
    assert len(m["inputs"]["image"]["sha256"]) == 64 and m["versions"]["objvid"]
    assert m["video"] == {"width": W, "height": H, "frames": 121, "fps": 24.0}
    assert m["objects"][0]["placement"] == "auto"
    work = Path(result["workdir"])
    assert video.probe_video(work / "renders.mp4") == (121, W, H)
    cams = json.loads((work / "cameras.json").read_text())
    assert len(cams["frames"]) == 121 and cams["width"] == W


@pytest.mark.slow
def test_object_is_visible_in_the_saved_masks(generated):
    result, _ = generated
    masks = manifest.load_masks(Path(result["workdir"]) / "masks_chunk00.npz")
    assert masks["mask"].shape == (121, 1, H, W) and masks["object"].shape == (121, H, W)
    area = (masks["object"] >= 0).sum(axis=(1, 2))
    assert area[0] > 0  # placed in view of the input camera
    assert (area > 0).mean() > 0.9  # and stays in view along the short left move
    m = json.loads(Path(result["manifest"]).read_text())
    assert m["object_pixels"]["per_frame"][0][0] == area[0]
    # The first frame given to the model is the input image with the object drawn in.
    from PIL import Image

    first = np.asarray(Image.open(Path(result["workdir"]) / "first_frame.png"))
    image = np.asarray(Image.open(m["inputs"]["image"]["path"]))
    changed = (first != image).any(axis=2)
    assert changed.sum() > 0 and not changed[masks["object"][0] < 0].any()


@pytest.mark.slow
def test_object_fidelity_is_in_the_manifest_the_summary_and_the_overlay(generated):
    result, out = generated
    m = json.loads(Path(result["manifest"]).read_text())
    rep = m["object_fidelity"]
    assert rep["object_lock"] == {"alpha": 0.5, "feather_px": 2.0} and rep["frames"] == 121
    obj = rep["objects"][0]
    assert obj["object_id"] == m["objects"][0]["object_id"] and obj["name"] == "sneaker"
    assert obj["per_frame"]["frame"] == list(range(121))
    area = [a[0] for a in m["object_pixels"]["per_frame"]]
    assert obj["per_frame"]["visible_px"] == area  # the same visibility masks the run saved
    # preview only fills holes: the object's pixels are the render's, so every judged frame is faithful
    s = obj["summary"]
    assert s["evaluated"] > 100 and s["flagged"] == 0 and rep["flagged_frames"] == []
    assert s["color_error"]["worst"] < 1 and s["ssim"]["worst"] > 0.99 and s["silhouette"]["median"] == 1
    assert obj["after_lock"]["flagged"] == 0 and result["object_fidelity"][0]["name"] == "sneaker"
    assert result["fidelity_video"] == str(out.with_name("video_fidelity.mp4").resolve())
    overlay = video.read_video(result["fidelity_video"])
    assert overlay.shape == (121, H, W, 3)
    final = video.read_video(out)

    def greenish(v: np.ndarray) -> np.ndarray:  # H.264's 4:2:0 chroma dulls a 1 px line: a loose test
        v = v.astype(np.int16)
        return (v[..., 1] > v[..., 0] + 40) & (v[..., 1] > v[..., 2] + 40)

    outline = greenish(overlay) & ~greenish(final)  # the room has green of its own (the painting)
    assert outline[np.array(area) > 500].any(axis=(1, 2)).all()  # the object's outline on every frame


@pytest.mark.slow
def test_render_equals_the_cache_library(room, tmp_path):
    """`render` PNGs equal objvid.cache's own render of the same scene, object and cameras."""
    import torch
    from PIL import Image

    from objvid.cache.io import load_object
    from objvid.cache.scene import Scene

    pngs = tmp_path / "png"
    proc = _cli(["render", *_inputs(room), "--frames", "9", "--trajectory", "clockwise", "--png-dir", str(pngs),
                 "--device", "cpu", "--out", str(tmp_path / "r.mp4"), "--json"])  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert video.probe_video(tmp_path / "r.mp4") == (9, W, H)
    m = json.loads(Path(result["manifest"]).read_text())
    cams = json.loads((tmp_path / "r_work" / "cameras.json").read_text())
    Ks = np.array([f["K"] for f in cams["frames"]])
    w2cs = np.array([f["w2c"] for f in cams["frames"]])

    image = np.asarray(Image.open(room["image"]).convert("RGB"))
    depth = np.load(room["depth"])
    K = np.array(json.loads(Path(room["intrinsics"]).read_text())["K"])
    scene = Scene.from_rgbd(image, depth, K, np.eye(4), filter_points_threshold=0.05)
    pts, cols, nrm = load_object(Path(room["object"]).read_bytes(), "sneaker.ply", with_normals=True)
    assert nrm is not None  # the demo sneaker carries normals: the cache culls its far side
    oid = scene.add_object(pts, cols, np.array(m["objects"][0]["transform"]), normals=nrm)
    with torch.no_grad():
        radius = m["options"]["object_radius"]  # the client's default object radius
        out = scene.render(
            w2cs, Ks, H, W, mode="fused", object_radius_px=radius, outputs=("rgb", "mask", "object_mask")
        )
    rgb = out.rgb[:, 0].cpu().numpy()
    mask = out.mask[:, 0].cpu().numpy()
    obj = out.object_mask[:, 0].cpu().numpy()
    for i in range(9):
        np.testing.assert_array_equal(np.asarray(Image.open(pngs / f"rgb_{i:04d}.png")), rgb[i])
        np.testing.assert_array_equal(np.asarray(Image.open(pngs / f"mask_{i:04d}.png")) // 255, mask[i])
        got_obj = np.asarray(Image.open(pngs / f"object_{i:04d}.png")).astype(np.int16) - 1
        np.testing.assert_array_equal(got_obj, np.where(obj[i] >= 0, oid, -1))
    assert (obj[0] >= 0).any()


def test_bad_frame_count_is_one_clear_line_and_starts_nothing(room, tmp_path):
    proc = _cli(
        [
            "generate",
            *_inputs(room),
            "--backend",
            "gen3c",
            "--frames",
            "200",
            "--out",
            str(tmp_path / "o.mp4"),
        ]
    )
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert lines == [
        "error: inputs: --frames must be 120N+1 (121, 241, 361, ...) for the gen3c backend, got 200; "
        "nearest valid: 121 or 241"
    ]
    assert not (tmp_path / "o_work").exists() and not (tmp_path / "o.mp4").exists()


def test_tls_with_a_local_stack_is_refused_before_starting_it(room, tmp_path):
    """The local servers speak plaintext: --tls-ca without the addresses would only fail later."""
    ca = tmp_path / "ca.pem"
    ca.write_text("not used")
    proc = _cli(
        ["render", *_inputs(room), "--frames", "2", "--tls-ca", str(ca), "--out", str(tmp_path / "o.mp4")]
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "error: inputs: --tls-ca encrypts every connection, but the local stack serves plaintext: give "
        "--cache-addr of TLS services too, or leave out --tls-ca"
    ]
    assert not (tmp_path / "o_work").exists()  # nothing was started


def test_bad_camera_path_names_the_field(room, tmp_path):
    cams = tmp_path / "cams.json"
    cams.write_text(
        json.dumps({"width": W, "height": H, "frames": [{"K": [[1, 0, 0], [0, 1, 0], [0, 0, 1]]}]})
    )
    proc = _cli(["render", *_inputs(room), "--camera-path", str(cams), "--out", str(tmp_path / "o.mp4")])
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"error: inputs: {cams}: frames[0]: missing w2c"


def _tiny_moge(path: Path) -> Path:
    """A random-weight MoGe v1 checkpoint in the real format (the depth service loads it like model.pt)."""
    from objvid.testing.depth_model import SMALL_V1_CONFIG, build_random, save_checkpoint

    save_checkpoint(build_random(SMALL_V1_CONFIG, "v1", seed=1), SMALL_V1_CONFIG, path)
    return path


# The depth service runs MoGe at a small size here (its env fallbacks reach the child process).
SMALL_DEPTH_ENV = {"OBJVID_DEPTH_INFER_WIDTH": "224", "OBJVID_DEPTH_INFER_HEIGHT": "126",
                   "OBJVID_DEPTH_NUM_TOKENS": "64"}  # fmt: skip


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_long_video_updates_the_scene(room, tmp_path):
    """241 frames = 2 chunks (UpdateScene between them)."""
    w, h = W, H
    ckpt = _tiny_moge(tmp_path / "moge-tiny.pt")
    out = tmp_path / "long.mp4"
    proc = _cli(
        [
            "generate",
            *_inputs(room, width=w, height=h),
            "--backend",
            "preview",
            "--frames",
            "241",
            "--object-lock",
            "1",
            "--depth-model",
            str(ckpt),
            "--device",
            "cpu",
            "--out",
            str(out),
            "--json",
        ],
        timeout=900,
        **SMALL_DEPTH_ENV,
    )  # fmt: skip  (two chunks + the depth service: a hang guard only)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["chunks"] == 2 and "update" in result["timings"]
    assert video.probe_video(out) == (241, w, h)
    m = json.loads(Path(result["manifest"]).read_text())
    assert m["services"]["local_stack"] == ["depth", "cache", "diffusion"]
    assert [c["start"] for c in m["chunks"]] == [0, 120]
    update = m["chunks"][0]["update"]
    assert update["slots"] == 2 and update["pixels_used"] > 0 and update["object_pixels_masked"] > 0
    assert m["chunks"][1]["slots"] == 2
    second = manifest.load_masks(Path(result["workdir"]) / "masks_chunk01.npz")
    assert second["mask"].shape == (120, 2, h, w)  # the overlap frame is dropped
    np.testing.assert_array_equal(second["frames"], np.arange(121, 241))
    assert (second["object"] >= 0).any()  # the object is fused into the second chunk's renders too
    assert video.probe_video(Path(result["workdir"]) / "renders.mp4") == (241, 2 * w, h)
    # the object fidelity report covers every frame of both chunks once (the overlap frame is not counted)
    rep = m["object_fidelity"]
    assert rep["object_lock"]["alpha"] == 1.0 and rep["objects"][0]["per_frame"]["frame"] == list(range(241))
    assert rep["objects"][0]["after_lock"]["evaluated"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_interrupt_leaves_no_children_and_no_output(room, tmp_path, sig, code):
    marker = uuid.uuid4().hex
    out = tmp_path / "cut.mp4"
    proc = subprocess.Popen(
        [sys.executable, "-m", "objvid.client", "generate", *_inputs(room), "--backend", "preview",
         "--frames", "121", "--device", "cpu", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(marker),
    )  # fmt: skip
    cams = tmp_path / "cut_work" / "cameras.json"  # written once the servers are up, before rendering
    deadline = time.monotonic() + 300
    while not cams.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert proc.poll() is None, proc.communicate()
    assert len(_marker_pids(marker)) > 2  # the client, the cache and the diffusion servers (+ tritonserver)
    time.sleep(1.0)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert err.strip().splitlines()[-1].startswith("error: interrupted: stopped by")
    deadline = time.monotonic() + 10
    while _marker_pids(marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _marker_pids(marker) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut_work"]  # no mp4, no partial file
    m = json.loads((tmp_path / "cut_work" / "manifest.json").read_text())
    assert m["status"] == "error"


@pytest.mark.slow
def test_lift_writes_scene_ply_intrinsics_and_depth(room, tmp_path):
    ckpt = _tiny_moge(tmp_path / "moge-tiny.pt")
    out = tmp_path / "scene.ply"
    proc = _cli(["lift", "--image", room["image"], "--out", str(out), "--width", str(W), "--height", str(H),
                 "--depth-model", str(ckpt), "--device", "cpu", "--json"], **SMALL_DEPTH_ENV)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    header = out.read_bytes().split(b"end_header\n", 1)[0].decode()
    assert f"element vertex {result['points']}" in header and result["points"] > 0
    K = json.loads((tmp_path / "scene_K.json").read_text())
    assert (K["width"], K["height"]) == (W, H) and np.asarray(K["K"]).shape == (3, 3)
    assert K["model"] == str(ckpt)
    assert np.load(tmp_path / "scene_depth.npy").shape == (H, W)


@pytest.mark.slow
def test_serve_then_generate_against_its_addresses(room, tmp_path):
    """`serve` keeps a stack up; `generate` with explicit addresses starts nothing of its own."""
    marker = uuid.uuid4().hex
    server = subprocess.Popen(
        [sys.executable, "-m", "objvid.client", "serve", "--no-depth", "--backend", "preview", "--device", "cpu",
         "--logs", str(tmp_path / "logs"), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(marker),
    )  # fmt: skip
    try:
        ready = json.loads(server.stdout.readline())
        assert ready["status"] == "ready" and "depth" not in ready
        out = tmp_path / "remote.mp4"
        proc = _cli(["generate", *_inputs(room), "--backend", "preview", "--frames", "9", "--cache-addr",
                     ready["cache"], "--triton-addr", ready["triton_grpc"], "--out", str(out), "--json"])  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        m = json.loads(Path(result["manifest"]).read_text())
        assert m["services"]["local_stack"] == [] and m["services"]["cache"] == ready["cache"]
        assert video.probe_video(out) == (9, W, H)
    finally:
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=60)
    assert server.returncode == 0
    deadline = time.monotonic() + 10
    while _marker_pids(marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _marker_pids(marker) == []
