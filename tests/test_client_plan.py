"""The client's plan / run split without servers: the input-mode seam, the plan's records, and the one
failure path (writers aborted, manifest written) of :class:`objvid.client.run.Run`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from objvid.client import pipeline, sources, stages
from objvid.client.errors import ObjvidError, ServiceError
from objvid.client.frames import LiftedView
from objvid.client.options import GenerateConfig
from objvid.client.plan import make_plan, needs_depth_service
from objvid.client.run import Run
from objvid.client.sources import InputSource, SingleImageSource, SourceView
from objvid.client.video import Mp4Writer
from objvid.testing import assets

W, H = 64, 48


@pytest.fixture(scope="module")
def room(tmp_path_factory) -> dict[str, str]:
    return assets.write_assets(tmp_path_factory.mktemp("assets"), W, H, num_points=300)


def _config(room, tmp_path, **kw) -> GenerateConfig:
    base = dict(image=room["image"], objects=[room["object"]], depth=room["depth"], intrinsics=room["intrinsics"],
                width=2 * W, height=2 * H, frames=5, backend="preview", out=tmp_path / "o.mp4")  # fmt: skip
    base.update(kw)
    return GenerateConfig(**base)


def _no_lift(images, width, height):
    raise AssertionError("the depth service must not be called for RGB-D input")


def test_rgbd_plan_reads_every_input_and_needs_no_depth_service(room, tmp_path):
    cfg = _config(room, tmp_path)
    plan, records = make_plan(cfg, "generate")
    assert isinstance(plan.source, SingleImageSource) and records["inputs"]["mode"] == "image"
    assert (plan.width, plan.height, plan.frames) == (2 * W, 2 * H, 5) and plan.preset_w2cs.shape == (5, 4, 4)
    assert records["inputs"]["depth"]["sha256"] and records["video"]["frames"] == 5
    assert [o.filename for o in plan.objects] == ["sneaker.ply"] and plan.objects[0].pose is None
    assert not needs_depth_service(cfg)
    (view,), record = plan.source.views(_no_lift)
    assert record == {"source": "file"}
    assert view.image.shape == (2 * H, 2 * W, 3) and view.depth.shape == view.mask.shape == (2 * H, 2 * W)
    K = json.loads(Path(room["intrinsics"]).read_text())["K"]
    np.testing.assert_allclose(view.K[:2], 2 * np.asarray(K)[:2])  # K scaled with the image (W/w, H/h)
    np.testing.assert_array_equal(view.w2c, np.eye(4))


def test_image_only_asks_the_depth_service_at_the_working_size(room, tmp_path):
    cfg = _config(room, tmp_path, depth=None, intrinsics=None)
    assert needs_depth_service(cfg)
    plan, _ = make_plan(cfg, "generate")
    calls = []

    def lift(images, width, height):
        calls.append((images[0].shape, width, height))
        d = np.ones((height, width), np.float32)
        return [LiftedView(np.zeros((height, width, 3), np.uint8), d, d > 0, np.eye(3), "moge-test")]

    (view,), record = plan.source.views(lift)
    assert calls == [((H, W, 3), 2 * W, 2 * H)]  # the image as read; the service resizes
    assert record["source"] == "service" and record["model"] == "moge-test"
    with pytest.raises(ValueError, match="depth service returned"):
        plan.source.views(lambda images, width, height: [LiftedView(None, np.ones((3, 3)), None, np.eye(3))])


def test_each_bad_option_is_an_inputs_error_naming_it(room, tmp_path):
    cases = {"intrinsics": (dict(depth=None), "--intrinsics is only used with --depth"),
             "depth": (dict(intrinsics=None), "--depth needs --intrinsics"),
             "fps": (dict(fps=0.0), r"--fps must be in \(0, 240\]"),
             "guidance": (dict(guidance=99.0), r"--guidance must be in \[0, 50\]"),
             "anchor": (dict(anchors=["1,1", "2,2"]), "--anchor given 2 times for 1 object"),
             "size": (dict(width=100), "--width and --height must be positive multiples of 16")}  # fmt: skip
    for name, (kw, match) in cases.items():
        with pytest.raises(ObjvidError, match=f"^inputs: {match}"):
            pipeline.validate(_config(room, tmp_path, **kw))
        assert not (tmp_path / "o_work").exists(), name  # nothing written before the inputs are good


@pytest.mark.parametrize(
    "name, data, match",
    [("x.ply", b"", "empty file"),
     ("x.ply", b"solid nope\n", "not a PLY file"),
     ("x.obj", b"# only a comment\nf 1 2 3\n", "not an OBJ file"),
     ("x.glb", b"PK\x03\x04" + bytes(20), "not a binary glTF file"),
     ("x.gltf", b"{not json", ""),
     ("x.stl", b"\x00" * 90, "not an STL file")],
)  # fmt: skip
def test_a_bad_object_file_is_an_inputs_error_before_any_server(room, tmp_path, name, data, match):
    bad = tmp_path / name
    bad.write_bytes(data)
    with pytest.raises(ObjvidError, match=f"^inputs: --object {bad}: {match}"):
        pipeline.validate(_config(room, tmp_path, objects=[bad]))


def test_well_formed_object_files_of_every_format_pass_the_input_check(tmp_path):
    from objvid.client import inputs

    tri = b"solid t\nfacet normal 0 0 1\nouter loop\nvertex 0 0 0\nendloop\nendfacet\nendsolid t\n"
    files = {"a.obj": b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n", "a.stl": tri,
             "b.stl": bytes(80) + (1).to_bytes(4, "little") + bytes(50),
             "a.gltf": b'{"asset": {"version": "2.0"}}', "a.glb": b"glTF" + bytes(20),
             "a.ply": b"ply\nformat ascii 1.0\nelement vertex 0\nend_header\n"}  # fmt: skip
    for name, data in files.items():
        inputs.check_object_bytes(data, tmp_path / name)


class GridSource(InputSource):
    """A test input mode: a flat grid at depth 2 (no files). Shows that a mode is one class."""

    name = "grid"

    @classmethod
    def accepts(cls, config):
        return str(config.image) == "grid:"

    @classmethod
    def needs_lift(cls, config):
        return False

    def __init__(self, config, width, height):
        self.width, self.height = width, height

    def records(self):
        return {"grid": True}

    def views(self, lift):
        image = np.full((self.height, self.width, 3), 128, np.uint8)
        depth = np.full((self.height, self.width), 2.0, np.float32)
        K = np.array([[50.0, 0, (self.width - 1) / 2], [0, 50.0, (self.height - 1) / 2], [0, 0, 1]])
        return [SourceView(image, depth, depth > 0, K)], {"source": "grid"}


def test_a_new_input_mode_is_one_class_in_the_registry(monkeypatch, tmp_path):
    monkeypatch.setattr(sources, "MODES", (GridSource, *sources.MODES))
    cfg = GenerateConfig(
        image="grid:", backend="preview", frames=3, width=32, height=16, out=tmp_path / "g.mp4"
    )
    run = Run("render", cfg, client=None)
    plan = stages.inputs(run)
    assert isinstance(plan.source, GridSource) and run.manifest["inputs"]["grid"] is True
    stages.depth(run, plan)  # no depth service: the mode says so
    assert run.manifest["depth"] == {"source": "grid"} and "depth" not in run.timings.seconds
    run.workdir.mkdir(parents=True)
    Ks, w2cs = stages.cameras(run, plan)  # the preset's poses with the mode's K
    assert Ks.shape == (3, 3, 3) and Ks[0, 0, 0] == 50.0 and w2cs.shape == (3, 4, 4)
    assert json.loads((run.workdir / "cameras.json").read_text())["width"] == 32
    assert not needs_depth_service(cfg, 3) and needs_depth_service(cfg, 241)  # long videos lift frames


def test_stage_maps_service_and_input_errors_but_not_bugs(tmp_path):
    run = Run("generate", GenerateConfig(image="a.png", out=tmp_path / "o.mp4"), client=None)
    with pytest.raises(ObjvidError) as err:
        with run.stage("scene"):
            raise ServiceError("cache", "CreateScene", "UNAVAILABLE", "connection refused")
    assert str(err.value) == "scene: cache service unreachable (connection refused)"
    with pytest.raises(ObjvidError, match="^render: cache RenderTrajectory: NOT_FOUND: gone$"):
        with run.stage("render"):
            raise ServiceError("cache", "RenderTrajectory", "NOT_FOUND", "gone")
    with pytest.raises(ObjvidError, match="^inputs: bad value$"):
        with run.stage("inputs"):
            raise ValueError("bad value")
    with pytest.raises(TypeError):  # a bug is not dressed up as a user error
        with run.stage("encoding"):
            raise TypeError("oops")
    assert set(run.timings.seconds) == {"scene", "render", "inputs", "encoding"}


@pytest.mark.parametrize(
    "exc,reason",
    [
        (ObjvidError("render", "cache RenderTrajectory: NOT_FOUND: gone"), "render: cache RenderTrajectory: NOT_FOUND: gone"),
        (KeyboardInterrupt(), "interrupted (KeyboardInterrupt)"),
        (ZeroDivisionError("x"), "ZeroDivisionError: x"),
    ],
)  # fmt: skip
def test_every_failure_aborts_the_writers_and_records_the_error(tmp_path, exc, reason):
    cfg = GenerateConfig(image="a.png", out=tmp_path / "o.mp4")
    run = Run("generate", cfg, client=None)

    def body(run: Run) -> dict:
        writer = run.writer(Mp4Writer(cfg.out, 32, 16, fps=4))
        writer.append(np.zeros((2, 16, 32, 3), np.uint8))
        raise exc

    with pytest.raises(type(exc)):
        run.execute(body)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o_work"]  # no mp4, no partial file
    manifest = json.loads((tmp_path / "o_work" / "manifest.json").read_text())
    assert manifest["status"] == "error" and manifest["error"] == reason and manifest["command"] == "generate"


def test_a_run_without_a_record_writes_no_manifest(tmp_path):
    run = Run("lift", GenerateConfig(image="a.png", out=tmp_path / "s.ply"), client=None, record=False)
    with pytest.raises(ObjvidError):
        run.execute(lambda run: (_ for _ in ()).throw(ObjvidError("depth", "x")))
    assert list(tmp_path.iterdir()) == []
