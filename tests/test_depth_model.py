"""MoGe loading: real checkpoint files (random weights), versions, devices, dtypes, hub ids offline."""

import os
import subprocess
import sys

import pytest
import torch
from depth_checkpoints import one_torch_thread, small_checkpoint

from objvid.depth import model as depth_model
from objvid.depth.model import ModelLoadError, load_model, pick_fp16, resolve_checkpoint


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    yield from one_torch_thread()


@pytest.fixture(scope="module")
def ckpt_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("depth-ckpt")


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_loads_checkpoint_in_float32_on_cpu(ckpt_dir, version):
    m = load_model(str(small_checkpoint(version, ckpt_dir)), device="cpu", num_tokens=48)
    assert m.version == version
    assert m.device.type == "cpu" and not m.use_fp16 and m.dtype_name == "float32"
    assert all(p.dtype == torch.float32 for p in m.net.parameters())
    pred = m(torch.rand(2, 3, 42, 56))
    assert pred.depth.shape == (2, 42, 56) and pred.depth.dtype == torch.float32
    assert pred.mask.shape == (2, 42, 56) and pred.mask.dtype == torch.bool
    assert pred.intrinsics.shape == (2, 3, 3)
    np_k = pred.intrinsics.numpy()
    assert (np_k[:, 0, 2] == 0.5).all() and (np_k[:, 1, 2] == 0.5).all()  # normalised, centred


def test_auto_picks_fp16_only_on_cuda():
    assert pick_fp16("auto", torch.device("cpu")) is False
    assert pick_fp16("auto", torch.device("cuda")) is True
    assert pick_fp16("float32", torch.device("cuda")) is False
    with pytest.raises(ModelLoadError, match="float16 needs a CUDA device"):
        pick_fp16("float16", torch.device("cpu"))


def test_explicit_version_and_bad_inputs(ckpt_dir, tmp_path):
    v1 = str(small_checkpoint("v1", ckpt_dir))
    with pytest.raises(ModelLoadError, match="does not fit MoGe v2|v2"):
        load_model(v1, device="cpu", version="v2")
    with pytest.raises(ModelLoadError, match="checkpoint file not found"):
        load_model(str(tmp_path / "nope" / "model.pt"), device="cpu")
    torch.save({"weights": {}}, tmp_path / "other.pt")
    with pytest.raises(ModelLoadError, match="not a MoGe checkpoint"):
        load_model(str(tmp_path / "other.pt"), device="cpu")
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelLoadError, match="cannot read checkpoint"):
        load_model(str(tmp_path / "garbage.pt"), device="cpu")
    with pytest.raises(ModelLoadError, match="resolution_level"):
        load_model(v1, device="cpu", resolution_level=10)
    if not torch.cuda.is_available():
        with pytest.raises(ModelLoadError, match="CUDA is not available"):
            load_model(v1, device="cuda")


def test_offline_hub_id_names_the_file_and_where_to_put_it(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(ModelLoadError) as info:
        resolve_checkpoint("Ruicheng/moge-vitl", model_dir=tmp_path / "models")
    msg = str(info.value)
    assert "model.pt" in msg
    assert "https://huggingface.co/Ruicheng/moge-vitl/resolve/main/model.pt" in msg
    assert str(tmp_path / "models" / "Ruicheng" / "moge-vitl" / "model.pt") in msg
    assert "HF_HUB_OFFLINE" in msg


def test_hub_id_found_in_model_dir_without_network(monkeypatch, ckpt_dir, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    placed = tmp_path / "models" / "Ruicheng" / "moge-vitl" / "model.pt"
    placed.parent.mkdir(parents=True)
    os.link(small_checkpoint("v1", ckpt_dir), placed)
    assert resolve_checkpoint("Ruicheng/moge-vitl", model_dir=tmp_path / "models").path == placed
    m = load_model("Ruicheng/moge-vitl", device="cpu", model_dir=tmp_path / "models")
    assert m.name == "Ruicheng/moge-vitl" and m.version == "v1"


def test_serve_with_offline_hub_id_fails_at_start_with_instructions(tmp_path):
    env = dict(
        os.environ,
        HF_HUB_OFFLINE="1",
        HF_HOME=str(tmp_path / "hf"),
        OBJVID_DEPTH_MODEL_DIR=str(tmp_path / "m"),
    )
    cmd = [
        sys.executable,
        "-m",
        "objvid.depth",
        "serve",
        "--model",
        "Ruicheng/moge-vitl",
        "--host",
        "127.0.0.1",
    ]
    cmd += ["--port", "0", "--metrics-port", "off", "--device", "cpu"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "event=load_failed service=depth" in proc.stderr
    assert str(tmp_path / "m" / "Ruicheng" / "moge-vitl" / "model.pt") in proc.stderr
    assert "https://huggingface.co/Ruicheng/moge-vitl/resolve/main/model.pt" in proc.stderr


def test_hub_id_detection():
    assert depth_model.is_hub_id("Ruicheng/moge-vitl")
    assert depth_model.is_hub_id("Ruicheng/moge-2-vitl-normal")
    assert not depth_model.is_hub_id("/abs/model.pt")
    assert not depth_model.is_hub_id("a/b/c")
