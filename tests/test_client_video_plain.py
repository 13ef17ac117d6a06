"""``--input-video clip.mp4``: a plain video file (no depth, no cameras). Frames read with PyAV (cover +
centre crop, 120 N + 1 trim), depth from a real depth server on 127.0.0.1 (random-weight MoGe in the real
checkpoint format), poses from its random-weight VGGT (LiftViews) in chained windows or identity under
``--static-camera``; scale consistency measured against known geometry with substitute models."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cache_service_helpers as cache_helpers
import numpy as np
import pytest
from depth_checkpoints import one_torch_thread, small_checkpoint, start_small_server

from objvid.client import camera_path, manifest, pipeline
from objvid.client.errors import ObjvidError
from objvid.client.sdk import ObjvidClient
from objvid.client.sources.video import VideoSource
from objvid.client.video_plain import (
    WindowResult,
    chain_windows,
    fit_frame,
    fit_scales,
    read_plain_video,
    windows,
)
from objvid.runtime import trajectory as traj
from objvid.testing.video import synthetic_rgbd_video, write_gen3c_dir, write_mp4
from objvid.testing.video_plain import measure

H, W = 64, 112


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    yield from one_torch_thread()


@pytest.fixture(scope="module")
def static_video():
    return synthetic_rgbd_video(frames=122, height=H, width=W, static_camera=True)


@pytest.fixture(scope="module")
def clip(tmp_path_factory, static_video) -> Path:
    path = tmp_path_factory.mktemp("plain") / "clip.mp4"
    write_mp4(path, static_video["rgb"])
    return path


# -- frames --------------------------------------------------------------------------------------------


def test_fit_frame_covers_and_centre_crops():
    rows = np.repeat(np.arange(36, dtype=np.uint8)[:, None], 64, 1) * 7  # 16:9, value = 7 x row
    frame = np.stack([rows] * 3, -1)
    out = fit_frame(frame, 64, 32)  # ViPE's rule at 16:9: no resize, 2 rows cropped top and bottom
    np.testing.assert_array_equal(out, frame[2:34])
    portrait = np.stack([np.repeat(np.arange(40, dtype=np.uint8)[:, None], 20, 1) * 6] * 3, -1)
    out = fit_frame(portrait, 32, 16)  # scaled x1.6 to 32x64, rows 24..40 kept: the middle of the frame
    assert out.shape == (16, 32, 3)
    assert abs(float(out[8, 16, 0]) - 6 * 20) <= 6  # centre row of the output = centre row of the input
    assert np.ptp(out[:, :, 0].astype(int), axis=1).max() == 0  # rows stay rows (no shear, no squash)


def test_read_trims_to_120n_plus_1(clip, static_video, tmp_path):
    rgb, total = read_plain_video(clip, W, H)
    assert total == 122 and rgb.shape == (121, H, W, 3)
    assert np.abs(rgb.astype(int) - static_video["rgb"][:121]).mean() < 3
    webm = tmp_path / "clip.webm"  # any container/codec PyAV opens
    _write(webm, static_video["rgb"][:121], "libvpx-vp9")
    rgb2, total2 = read_plain_video(webm, W // 2, H // 2)  # resized to the working size
    assert total2 == 121 and rgb2.shape == (121, H // 2, W // 2, 3)


def _write(path: Path, rgb: np.ndarray, codec: str) -> None:
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=24)
        stream.width, stream.height, stream.pix_fmt = rgb.shape[2], rgb.shape[1], "yuv420p"
        for f in rgb:
            for p in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                out.mux(p)
        for p in stream.encode():
            out.mux(p)


def test_bad_inputs_are_named(tmp_path, static_video):
    short = tmp_path / "short.mp4"
    write_mp4(short, static_video["rgb"][:100])
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(os.urandom(4096))
    base = dict(image=None, backend="preview", width=W, height=H, out=tmp_path / "o.mp4")
    cases = [
        (dict(input_video=short, static_camera=True), r"short\.mp4: 100 frames; .*the nearest valid length is 121"),
        (dict(input_video=bad), r"bad\.mp4: not a video file PyAV can read"),
        (dict(input_video=tmp_path / "none.mp4"), r"none\.mp4: no such file"),
        (dict(image=tmp_path / "x.png", static_camera=True), "--static-camera is only used with --input-video"),
        (dict(input_video=write_gen3c_dir(tmp_path / "dir", {k: v[:121] for k, v in static_video.items()}),
              static_camera=True), "--static-camera is only used with a plain video file"),
    ]  # fmt: skip
    for kw, text in cases:
        with pytest.raises(ObjvidError, match=text):
            pipeline.validate(pipeline.GenerateConfig(**{**base, **kw}), "render")


# -- geometry: chaining windows, scale fit ---------------------------------------------------------------


def test_windows_overlap_by_one_frame():
    assert windows(121, 32) == [(0, 32), (31, 63), (62, 94), (93, 121)]
    assert windows(10, 32) == [(0, 10)]
    with pytest.raises(ValueError, match=">= 2 frames"):
        windows(10, 1)


def test_chained_windows_recover_known_geometry():
    """Windows in their own frame of reference and scale -> one clip; the monocular depth's unknown
    per-frame scales fitted to it: the result is the true scene times one global factor."""
    video = synthetic_rgbd_video(frames=40, height=24, width=40)  # moving camera, moving box
    rng = np.random.default_rng(0)
    spans = windows(40, 9)
    parts, b = [], rng.uniform(0.5, 2.0, len(spans))
    for k, (s, e) in enumerate(spans):
        rel = video["w2c"][s:e] @ np.linalg.inv(video["w2c"][s])
        rel[:, :3, 3] *= b[k]
        parts.append(WindowResult(rel, video["depth"][s:e] * b[k], video["mask"][s:e], video["K"][s:e]))
    ref = chain_windows(parts, spans)
    truth_t = video["w2c"][:, :3, 3] * b[0]
    np.testing.assert_allclose(ref["w2c"][:, :3, :3], video["w2c"][:, :3, :3], atol=1e-9)
    np.testing.assert_allclose(ref["w2c"][:, :3, 3], truth_t, atol=1e-6)
    np.testing.assert_allclose(ref["depth"], video["depth"] * b[0], rtol=1e-5)
    np.testing.assert_allclose(ref["joins"], b[1:] ** -1 * b[0], rtol=1e-5)
    unknown = rng.uniform(0.5, 2.0, 40)
    mono = (video["depth"] * unknown[:, None, None]).astype(np.float32)
    scales, unit = fit_scales(mono, video["mask"], ref)
    np.testing.assert_allclose(mono * scales[:, None, None], video["depth"] * unknown[0], rtol=1e-5)
    np.testing.assert_allclose(unit, b[0] / unknown[0], rtol=1e-5)


@pytest.mark.parametrize("static", [True, False])
def test_measured_scale_consistency(static):
    """docs/client.md's numbers: substitutes of known error for the two models (objvid.testing.video_plain)."""
    video = synthetic_rgbd_video(frames=121, height=H, width=W, static_camera=static)
    r = measure(video, static, seed=0)
    assert max(r["before"]["scale"]) > 0.2  # frames disagree before the fit
    assert max(r["after"]["scale"]) < (0.01 if static else 0.005)
    assert np.mean(r["after"]["absrel"]) < np.mean(r["absrel_floor"]) + 0.002  # the fit adds ~nothing
    if not static:
        assert max(r["after"]["centre"]) < 0.005 * r["after"]["travel"]
        assert len(r["window_scales"]) == 4 and len(r["record"]["window_scales"]) == 3


# -- through a real depth server ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    from objvid.depth.geometry import save_checkpoint
    from objvid.testing.geometry_model import random_vggt

    d = tmp_path_factory.mktemp("ckpt")
    return {"depth": small_checkpoint("v1", d), "geometry": save_checkpoint(random_vggt(seed=2), d / "vggt" / "model.pt")}  # fmt: skip


@pytest.fixture(scope="module")
def servers(checkpoints):
    depth = start_small_server(
        checkpoints["depth"], geometry_model=str(checkpoints["geometry"]), width=W, height=H
    )
    cache = cache_helpers.start()
    yield depth, cache
    cache.stop(0)
    depth.stop(0)


def _lift_fn(client: ObjvidClient):
    """The depth stage's ``lift`` (``objvid.client.stages.depth``) over a real client."""

    def lift(images, width, height, **kw):
        return client.lift(images, width=width, height=height, **kw)

    lift.posed = lambda images, width, height: client.lift_views(images, width=width, height=height)
    return lift


def _config(clip, tmp_path, **kw):
    return pipeline.GenerateConfig(image=None, input_video=clip, width=W, height=H, backend="preview",
                                   out=tmp_path / "out.mp4", **kw)  # fmt: skip


def test_static_camera_through_the_depth_service(servers, clip, tmp_path):
    depth, _ = servers
    source = VideoSource(_config(clip, tmp_path, static_camera=True), W, H)
    with ObjvidClient(depth_addr=depth.address) as client:
        raw = client.lift(list(source.clip.rgb[:2]), width=W, height=H)  # the model's own per-frame scales
        views, record = source.views(_lift_fn(client))
    c = source.clip
    assert c.num_frames == 121 and c.depth.shape == (121, H, W) and len(record["scales"]) == 121
    assert record["scales"][0] == 1.0 and record["model"] == str(depth.config.model)
    np.testing.assert_array_equal(c.w2c, np.repeat(np.eye(4)[None], 121, 0))  # --static-camera: identity
    assert np.ptp(c.K, axis=0).max() == 0  # one K for the clip
    np.testing.assert_array_equal(c.mask, c.depth > 0)  # mask = the valid depth pixels
    assert c.mask.mean() > 0.5
    s1 = np.median((raw[0].depth / raw[1].depth)[raw[0].mask & raw[1].mask])
    np.testing.assert_allclose(record["scales"][1], s1, rtol=1e-4)  # frame 1 fitted to frame 0
    for i in (1, 60, 120):  # the fitted frames agree with frame 0 on the (static) pixels they share
        both = c.mask[i] & c.mask[0]
        assert abs(np.median(c.depth[i][both] / c.depth[0][both]) - 1) < 1e-3
    assert views[0].depth is c.depth[0] or np.array_equal(views[0].depth, c.depth[0])


def test_moving_camera_render_through_the_geometry_model(servers, clip, tmp_path):
    depth, cache = servers
    cfg = _config(clip, tmp_path, trajectory="left", movement_distance=0.1)
    with ObjvidClient(depth_addr=depth.address, cache_addr=cache.address) as client:
        result = pipeline.render(cfg, client)
    assert result["frames"] == 121
    m = json.loads(Path(result["manifest"]).read_text())
    assert m["inputs"]["video_format"] == "video" and m["inputs"]["video_frames_in"] == 122
    rec = m["depth"]
    assert rec["geometry_model"] == str(Path(depth.config.geometry_model)) and not rec["static_camera"]
    assert rec["pose_windows"] == [[0, 32], [31, 63], [62, 94], [93, 121]] and len(rec["window_scales"]) == 3
    assert rec["scales"][0] == 1.0 and all(s > 0 for s in rec["scales"])
    cams = camera_path.load_camera_path(Path(result["manifest"]).parent / "cameras.json")
    L, _ = traj.generate_camera_trajectory("left", np.eye(4), np.eye(3), 121, 0.1, traj.DEFAULT_ROTATION)
    np.testing.assert_allclose(cams.w2cs[0], L[0], atol=1e-9)  # frame 0's input camera is the identity
    inputs = np.einsum("tij,tjk->tik", np.linalg.inv(L), cams.w2cs)  # w2c_i = L_i^-1 (L_i w2c_i)
    R = inputs[:, :3, :3]
    np.testing.assert_allclose(R @ R.transpose(0, 2, 1), np.repeat(np.eye(3)[None], 121, 0), atol=1e-6)
    assert np.ptp(cams.Ks, axis=0).max() < 1e-9


def test_missing_geometry_model_and_depth_service(servers, checkpoints, clip, tmp_path):
    no_geometry = start_small_server(checkpoints["depth"], width=W, height=H)
    try:
        source = VideoSource(_config(clip, tmp_path), W, H)
        with ObjvidClient(depth_addr=no_geometry.address) as client:
            with pytest.raises(
                ValueError, match=r"clip\.mp4: camera poses .*--geometry-model.*--static-camera"
            ):
                source.views(_lift_fn(client))
    finally:
        no_geometry.stop(0)
    cases = ((True, r"per-frame depth \(.*--depth-addr HOST:PORT.*\(--depth-model\)"),
             (False, r"per-frame depth and camera poses \(.*--depth-addr HOST:PORT.*--geometry-model\)"))  # fmt: skip
    for static, text in cases:
        source = VideoSource(_config(clip, tmp_path, static_camera=static), W, H)
        with ObjvidClient(cache_addr=servers[1].address) as client:  # no depth address
            with pytest.raises(
                ValueError, match=r"clip\.mp4: a plain video needs the depth service for " + text
            ):
                source.views(_lift_fn(client))


# -- the CLI, end to end ------------------------------------------------------------------------------


@pytest.mark.slow
def test_cli_generate_static_camera_with_an_object(checkpoints, clip, tmp_path):
    ply = tmp_path / "cube.ply"
    g = np.linspace(-0.1, 0.1, 6)
    pts = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)
    header = ["ply", "format ascii 1.0", f"element vertex {len(pts)}", "property float x", "property float y",
              "property float z", "property uchar red", "property uchar green", "property uchar blue", "end_header"]  # fmt: skip
    ply.write_text("\n".join(header + [f"{x:.4f} {y:.4f} {z:.4f} 250 250 250" for x, y, z in pts]) + "\n")
    out = tmp_path / "video.mp4"
    env = {**os.environ, "OBJVID_DEPTH_INFER_WIDTH": "128", "OBJVID_DEPTH_INFER_HEIGHT": "72",
           "OBJVID_DEPTH_NUM_TOKENS": "64"}  # fmt: skip
    args = ["generate", "--input-video", str(clip), "--static-camera", "--object", str(ply), "--object-pose", "0,0,20,0,0,0,20",
            "--backend", "preview",
            "--depth-model", str(checkpoints["depth"]), "--device", "cpu", "--width", str(W), "--height", str(H),
            "--trajectory", "left", "--movement-distance", "0.1", "--out", str(out), "--json"]  # fmt: skip
    proc = subprocess.run([sys.executable, "-m", "objvid.client", *args], capture_output=True, text=True,
                          timeout=600, env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["frames"] == 121 and out.stat().st_size > 0
    m = json.loads(Path(result["workdir"], "manifest.json").read_text())
    assert m["services"]["local_stack"] == ["depth", "cache", "diffusion"]  # no geometry model needed
    assert m["inputs"]["static_camera"] and m["depth"]["static_camera"] and len(m["depth"]["scales"]) == 121
    # random-weight MoGe's scene sits ~26 units away: the object, placed at 20 in frame 0's world, is seen
    objects = manifest.load_masks(Path(result["workdir"]) / "masks_chunk00.npz")["object"]
    assert m["objects"][0]["placement"] == "pose" and (objects[0] >= 0).sum() > 20
