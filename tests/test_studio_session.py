"""The studio's session and page logic against a real cache service (local stack, no browser).

Covers what the browser tests do not: placement's support plane, "drop to the surface", path import,
the preview twin scene, and that a failing Generate shows the CLI's own one-line error.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from objvid.client.sdk import ObjvidClient
from objvid.client.stack import LocalStack, StackConfig
from objvid.client.studio.path import Keyframe
from objvid.client.studio.pose import ObjectPose
from objvid.client.studio.session import StudioConfig, StudioSession, nearest_hit
from objvid.testing import assets

W, H = 320, 176


@pytest.fixture(scope="module")
def room(tmp_path_factory) -> dict[str, str]:
    return assets.write_assets(tmp_path_factory.mktemp("assets"), W, H, num_points=20_000)


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    with LocalStack(
        StackConfig(depth=False, backend="preview", device="cpu"), tmp_path_factory.mktemp("logs")
    ) as st:
        with ObjvidClient(cache_addr=st.cache_addr, triton_addr=st.triton_addr) as c:
            yield c


def _session(room, client, tmp_path, **kw) -> StudioSession:
    cfg = StudioConfig(image=room["image"], depth=room["depth"], intrinsics=room["intrinsics"],
                       objects=[room["object"]], width=W, height=H, frames=9, preview_width=160,
                       workdir=tmp_path, **kw)  # fmt: skip
    s = StudioSession(cfg, client)
    s.load()
    return s


def test_load_places_the_object_on_the_floor_plane(room, client, tmp_path):
    s = _session(room, client, tmp_path)
    try:
        assert len(s.points) > 0.5 * W * H and s.points.dtype == np.float32
        (obj,) = s.objects
        n, d = obj.plane
        # the demo floor, seen by a camera pitched down by CAMERA_PITCH_DEG: its up normal in camera axes
        pitch = np.radians(assets.CAMERA_PITCH_DEG)
        assert np.degrees(np.arccos(abs(n @ [0.0, -np.cos(pitch), -np.sin(pitch)]))) < 2.0
        world = obj.points.astype(np.float64) @ obj.pose.matrix()[:3, :3].T + obj.pose.position
        assert abs((world @ n + d).min()) < 1e-4  # the lowest point sits on the plane
        # the page's pose is the cache's: the object's export (own frame) placed by it equals the scene export
        scene_and_object = client.export_scene(s.scene.scene_id)
        assert len(scene_and_object) > len(client.export_scene(s.scene.scene_id, exclude_objects=True))
        # the twin preview scene has the object too, at the same pose, with fewer points
        info = client.get_scene(s.preview_scene.scene_id)
        np.testing.assert_allclose(
            np.reshape(info.objects[0].transform.values, (4, 4)), obj.pose.matrix(), atol=1e-6
        )
        assert info.objects[0].num_points < len(obj.points)
        # another object (as the page's upload does): placed, in both scenes, under a fresh name
        mesh = Path(room["mesh"])
        assert s.add_object(mesh, mesh.read_bytes(), anchor=(80, 150)) == 1
        assert [o.name for o in s.objects] == ["sneaker", "sneaker_mesh"]
        assert len(client.get_scene(s.preview_scene.scene_id).objects) == 2
        assert s.objects[1].plane is not None and len(s.objects[1].points) > 0
    finally:
        s.close()


def test_preview_follows_a_pose_change_and_drop_lands_on_the_surface(room, client, tmp_path):
    s = _session(room, client, tmp_path)
    try:
        first = s.render_preview(0)
        assert first.shape == (88, 160, 3)
        assert np.abs(s.render_preview(8).astype(int) - first).max() > 60  # scrubbing: the camera moved
        pose = s.objects[0].pose
        moved = ObjectPose((pose.position[0] + 0.5, *pose.position[1:]), pose.rotation_deg, pose.scale)
        assert np.allclose(s.set_pose(0, moved).position, moved.position, atol=1e-9)
        assert np.abs(s.render_preview(0).astype(int) - first).max() > 60
        # drop at a floor point seen by the input camera (a ray from the camera centre through it)
        target = s.points[np.argmax(s.points[:, 1])]  # lowest in the picture: the floor near the camera
        hit = nearest_hit(s.points, (0, 0, 0), target, 0.01)
        assert hit is not None and np.linalg.norm(hit - target) < 0.05 * np.linalg.norm(target)
        dropped = s.drop(0, (0.0, 0.0, 0.0), target)
        assert dropped is not None
        n, d = s.objects[0].plane
        footprint = np.asarray(dropped.position)
        assert abs(footprint @ n + d) < 0.05  # placed on the plane under the cursor
        assert np.linalg.norm(footprint - target) < 0.3 * np.linalg.norm(target)
        assert dropped.scale == pytest.approx(pose.scale, rel=1e-3)  # the height is kept
        assert s.drop(0, (0.0, 0.0, 0.0), (0.0, 0.0, -1.0)) is None  # behind the camera: nothing hit
    finally:
        s.close()


def test_path_modes_export_and_import(room, client, tmp_path):
    s = _session(room, client, tmp_path)
    try:
        preset = s.path_dict()
        assert len(preset["frames"]) == 9 and preset["width"] == W
        with pytest.raises(ValueError, match="add a keyframe"):
            s.set_path(mode="keyframes")
            s.cameras()
        s.add_keyframe(Keyframe(np.eye(4)))
        c2w = np.eye(4)
        c2w[:3, 3] = [0.2, 0.0, 0.1]
        s.add_keyframe(Keyframe(c2w))
        keyed = s.path_dict()
        np.testing.assert_allclose(np.linalg.inv(keyed["frames"][-1]["w2c"]), c2w, atol=1e-12)
        s.clear_keyframes()
        s.import_path(keyed)
        assert s.mode == "file" and s.path_dict() == keyed
        with pytest.raises(ValueError, match="differs from the studio's video"):
            s.import_path({**keyed, "width": 640})
        with pytest.raises(ValueError, match=r"frames\[0\]"):
            s.import_path({**keyed, "frames": [{"K": keyed["frames"][0]["K"]}]})
    finally:
        s.close()


def test_a_failing_generate_shows_the_cli_one_line_error(room, client, tmp_path):
    viser = pytest.importorskip("viser")
    from objvid.client.studio.app import StudioApp

    s = _session(room, client, tmp_path, backend="gen3c")  # 9 frames: gen3c needs 120N+1
    server = viser.ViserServer(host="127.0.0.1", port=0, verbose=False)
    app = StudioApp(server, s)
    try:
        assert app.preview.idle(60) and app.previews >= 1
        assert app.generate.start()
        time.sleep(0.2)
        assert app.generate.wait(120)
        cli = subprocess.run([sys.executable, "-m", "objvid.client", "generate", "--image", room["image"],
                              "--depth", room["depth"], "--intrinsics", room["intrinsics"], "--object",
                              room["object"], "--frames", "9", "--backend", "gen3c", "--out",
                              str(tmp_path / "x.mp4")], capture_output=True, text=True, timeout=120)  # fmt: skip
        assert cli.returncode == 1
        assert app.generate.error == cli.stderr.strip().splitlines()[-1]
        assert app.generate.error.startswith("error: inputs: --frames must be 120N+1")
        # the same page generates with the preview backend: progress per stage and per diffusion step
        s.config.backend = "preview"
        assert app.generate.start()
        time.sleep(0.2)
        assert app.generate.wait(300)
        assert app.generate.error is None and app.generate.result["frames"] == 9
        stages = [h[0] for h in app.generate.history]
        for stage in ("inputs", "scene", "placement", "render", "diffusion", "encoding"):
            assert stage in stages
        steps = [(c, t) for st, c, t in app.generate.history if st == "diffusion" and c is not None and t]
        assert len(steps) >= 3 and steps[-1][0] == steps[-1][1] and steps[0][0] < steps[0][1]  # step by step
        assert app.generate.gui_progress.value == 100.0
        assert 'id="objvid-video"' in app.generate.gui_video.content
        state = app.state()
        assert state["objects"][0]["pose"] == s.objects[0].pose.cli_value()
        json.dumps(state)
    finally:
        app.close()
        server.stop()
        s.close()


def test_without_depth_the_studio_lifts_once_and_generate_reuses_that_scene(room, client, tmp_path):
    """MoGe path (a small random-weight checkpoint): the scene is built from the lifted depth, saved, and
    the Generate config points at those files, so generate renders the scene the page showed."""
    from depth_checkpoints import small_checkpoint, start_small_server

    from objvid.client import inputs, pipeline

    server = start_small_server(small_checkpoint("v2", tmp_path))
    try:
        with ObjvidClient(depth_addr=server.address, cache_addr=client.cache_addr) as both:
            cfg = StudioConfig(image=room["image"], objects=[room["object"]], width=128, height=64, frames=5,
                               preview_width=64, workdir=tmp_path / "work", backend="preview")  # fmt: skip
            s = StudioSession(cfg, both)
            try:
                s.load()
                # random weights give a depth without a usable floor: the object is put in view instead
                assert s.objects and (s.objects[0].plane is not None or "auto placement failed" in s.notes[0])
                view = both.lift([inputs.load_image(room["image"])], width=128, height=64)[0]
                saved = np.load(tmp_path / "work" / "scene" / "depth.npy")
                np.testing.assert_allclose(saved, np.where(view.mask, view.depth, 0), rtol=1e-6)
                np.testing.assert_allclose(s.K, view.K, rtol=1e-9)
                gen = s.generate_config(tmp_path / "run")
                assert gen.depth == tmp_path / "work" / "scene" / "depth.npy" and gen.camera_path.is_file()
                pipeline.validate(gen)  # the config generate would run is valid as it stands
                assert not pipeline.needs_depth_service(gen)  # one chunk: no second lift
            finally:
                s.close()
    finally:
        server.stop()
