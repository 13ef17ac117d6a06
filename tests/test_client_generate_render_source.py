"""``generate --render-source``: the model fetching the renders from the cache (RENDER_SOURCE) gives the same
outputs as the client sending them, on the real local stack (cache + PyTriton preview, CPU, 127.0.0.1).

One wired stack (cache + diffusion started together: the model reads the cache's ready file) and one
diffusion server started alone (no cache address) serve every test.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from objvid.client import manifest, pipeline, video
from objvid.client.connect import Services, connect
from objvid.client.errors import ObjvidError
from objvid.client.run import Reporter
from objvid.client.stack import LocalStack, StackConfig
from objvid.testing import assets

W, H, FRAMES = 320, 176, 13


@pytest.fixture(scope="module")
def room(tmp_path_factory) -> dict[str, str]:
    return assets.write_assets(tmp_path_factory.mktemp("assets"), W, H, num_points=20_000)


@pytest.fixture(scope="module")
def wired(tmp_path_factory):
    """(client, services record) of a local stack that started the cache and the diffusion server."""
    services = Services(device="cpu")
    with connect(Reporter(), services, need_depth=False, need_cache=True, backend="preview",
                 log_dir=tmp_path_factory.mktemp("wired")) as (client, record):  # fmt: skip
        yield client, record


@pytest.fixture(scope="module")
def lone_triton(tmp_path_factory):
    """A diffusion server started alone (no cache beside it, so no cache address)."""
    with LocalStack(StackConfig(depth=False, cache=False, backend="preview", device="cpu"),
                    tmp_path_factory.mktemp("lone")) as stack:  # fmt: skip
        yield stack.triton_addr


def _generate(room, out: Path, client, record: dict, mode: str) -> dict:
    cfg = pipeline.GenerateConfig(image=room["image"], objects=[room["object"]], depth=room["depth"],
                                  intrinsics=room["intrinsics"], width=W, height=H, frames=FRAMES,
                                  backend="preview", save_buffer=True, object_lock=0.5, render_source=mode,
                                  out=out)  # fmt: skip
    result = pipeline.generate(cfg, client, Reporter(), record)
    return json.loads(Path(result["manifest"]).read_text())


def _tap_writers(monkeypatch) -> dict:
    """Digest of every frame handed to each video writer (by file name), the real writer still writing.
    The frames, not the mp4 bytes, are compared: libx264 here is not repeatable even for identical frames
    in one process (PyAV 18.1: the same 13 frames encode to 2-3 different files in 5 runs)."""
    seen: dict[str, hashlib._Hash] = {}
    real = video.Mp4Writer.append

    def append(self, frames):
        seen.setdefault(self.path.name, hashlib.sha256()).update(np.ascontiguousarray(frames).tobytes())
        return real(self, frames)

    monkeypatch.setattr(video.Mp4Writer, "append", append)
    return seen


def _outputs(m: dict, frames: dict) -> dict:
    """Every output of a run: the frames of each video (digests), the masks npz and the first frame."""
    work = Path(m["outputs"]["renders"]).parent
    out = {f"frames.{k}": d.hexdigest() for k, d in frames.items()}
    out.update({f"masks.{k}": v for k, v in manifest.load_masks(work / "masks_chunk00.npz").items()})
    out["first_frame"] = np.asarray(Image.open(work / "first_frame.png"))
    for k in ("video", "renders", "buffer_video", "fidelity_video"):
        out[f"shape.{k}"] = video.probe_video(m["outputs"][k])
    return out


@pytest.mark.slow
def test_on_and_off_write_identical_outputs_and_auto_keeps_the_local_preview_on_the_client_path(
    room, wired, tmp_path, monkeypatch
):
    client, record = wired
    frames = _tap_writers(monkeypatch)
    runs, written = {}, {}
    for mode in ("off", "on", "auto"):
        runs[mode] = _generate(room, tmp_path / mode / "v.mp4", client, record, mode)
        written[mode] = dict(frames)
        frames.clear()
    paths = {mode: [c["render_path"] for c in m["chunks"]] for mode, m in runs.items()}
    # auto: the stack wired them, but its model is the CPU preview (a second CPU render would cost more
    # than the localhost copy it saves; render_path.py)
    assert paths == {"off": ["client"], "on": ["direct"], "auto": ["client"]}
    assert runs["auto"]["render_path"] == {"mode": "auto", "model_cache": "local stack"}
    off, on = _outputs(runs["off"], written["off"]), _outputs(runs["on"], written["on"])
    assert off.keys() == on.keys() and len(written["on"]) == 4
    for key in off:
        np.testing.assert_array_equal(on[key], off[key], err_msg=key)
    for key in ("object_pixels", "object_fidelity", "objects", "video"):
        assert runs["on"][key] == runs["off"][key], key
    # bytes to the model: the renders and masks no longer go (FIRST_FRAME + options + a few KB)
    c_off, c_on = runs["off"]["chunks"][0], runs["on"]["chunks"][0]
    renders = FRAMES * H * W * (3 + 1)  # one slot: rgb + mask bytes
    assert c_off["bytes_to_model"] - c_on["bytes_to_model"] > renders - 4096
    assert c_on["bytes_to_model"] < H * W * 3 + 4096
    assert c_on["bytes_from_model"] == c_off["bytes_from_model"] == FRAMES * H * W * 3
    assert c_on["bytes_from_cache"] == c_off["bytes_from_cache"] > renders  # the client's own renders


@pytest.mark.slow
def test_on_without_a_cache_address_is_one_clear_error_and_auto_falls_back(
    room, wired, lone_triton, tmp_path
):
    from objvid.client import ObjvidClient

    record = {"triton": lone_triton}  # a server configured elsewhere: auto tries, it refuses
    with ObjvidClient(cache_addr=wired[0].cache_addr, triton_addr=lone_triton) as client:
        with pytest.raises(ObjvidError) as err:
            _generate(room, tmp_path / "on" / "v.mp4", client, record, "on")
        assert err.value.stage == "diffusion"
        assert "--render-source on" in err.value.reason and "no cache address" in err.value.reason
        assert not (tmp_path / "on" / "v.mp4").exists()
        m = _generate(room, tmp_path / "auto" / "v.mp4", client, record, "auto")
    assert m["chunks"][0]["render_path"] == "client"
    assert "no cache address" in m["render_path"]["fallback"]
    # the refused try is counted: the tiny direct request plus the full one
    assert m["chunks"][0]["bytes_to_model"] > FRAMES * H * W * 4


def test_render_source_flag_is_checked_and_has_an_env_fallback(room, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from objvid.client.cli import app

    args = ["generate", "--image", room["image"], "--backend", "preview", "--out", str(tmp_path / "v.mp4")]
    got = CliRunner().invoke(app, [*args, "--render-source", "sometimes"])
    assert (
        got.exit_code == 1 and "--render-source must be one of auto, on, off, got 'sometimes'" in got.output
    )
    monkeypatch.setenv("OBJVID_CLIENT_RENDER_SOURCE", "never")
    got = CliRunner().invoke(app, args)
    assert got.exit_code == 1 and "got 'never'" in got.output
    help_text = CliRunner().invoke(app, ["generate", "--help"], env={"COLUMNS": "400"}).output
    assert "OBJVID_CLIENT_RENDER_SOURCE" in help_text and "RENDER_SOURCE" in help_text
