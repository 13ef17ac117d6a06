"""The diffusion models behind real Triton servers on 127.0.0.1, called with ``tritonclient.grpc`` streaming.

(a) ``pytriton``: PyTriton (``objvid.diffusion.pytriton_server``) hosting preview, a tiny random gen3c and a
    model that fails inside generation;
(b) ``official``: the production repository ``services/diffusion/model_repository`` (a tmp copy with
    KIND_CPU and the tiny weights_dir) served by the ``tritonserver`` binary shipped in the PyTriton wheel,
    with this Python's backend stub placed in its backend directory.
Each server starts once per session.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
import sysconfig
import time

import numpy as np
import pytest

from objvid.diffusion.base import GenerateOptions, Progress, VideoModel
from objvid.v1 import diffusion_pb2

grpcclient = pytest.importorskip("tritonclient.grpc")

from diffusion_serving_helpers import assert_serving, chunk, generate, options  # noqa: E402
from net_helpers import free_ports  # noqa: E402

REPO_DIR = pathlib.Path(__file__).resolve().parents[1] / "services" / "diffusion" / "model_repository"
GEN3C_FRAMES = 9  # chunk length of the tiny model (the real one: 121)
DONE = diffusion_pb2.GENERATE_STAGE_DONE


# -- servers ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_gen3c_dir(tmp_path_factory) -> pathlib.Path:
    """A converted tiny random GEN3C (2 blocks, 32 wide, tiny VAE, 9-frame chunks) from upstream-format files."""
    from objvid.diffusion.convert import convert
    from objvid.testing import gen3c as synthetic

    root = tmp_path_factory.mktemp("gen3c-tiny")
    layout = synthetic.TokenizerLayout(latent_frames_stored=2)
    model_pt = synthetic.write_gen3c_checkpoint(
        root / "src" / "model.pt", synthetic.upstream_dit_state(seed=5)
    )
    tokenizer = synthetic.write_tokenizer_dir(
        root / "src" / "tokenizer", synthetic.upstream_tokenizer_state(layout, seed=6), layout
    )
    return pathlib.Path(
        convert(model_pt, tokenizer, root / "weights", chunk_frames=GEN3C_FRAMES, text_max_length=8).out_dir
    )


class BrokenModel(VideoModel):
    """Fails inside generation after one progress event (stands in for a sampler crash / GPU too small)."""

    name = "broken"

    def generate(self, chunk, options: GenerateOptions, progress=None):
        progress(Progress("denoise", 1, 2, "step 1/2"))
        if options.seed == 7:
            from objvid.diffusion.gen3c.memory import GpuMemoryError

            raise GpuMemoryError("GPU has 1.0 GiB free, needs 9.0 GiB: offload transformer")
        raise RuntimeError("sampler exploded at step 2")


@pytest.fixture(scope="session")
def pytriton_url(tiny_gen3c_dir):
    from objvid.diffusion.pytriton_server import ServerConfig, start_server
    from objvid.diffusion.registry import ModelSettings, load_model

    http, grpc, metrics = free_ports(3)
    models = [
        load_model("preview"),
        load_model("gen3c", ModelSettings(weights_dir=str(tiny_gen3c_dir), device="cpu")),
        BrokenModel(),
    ]
    triton = start_server(models, ServerConfig(http_port=http, grpc_port=grpc, metrics_port=metrics))
    yield f"127.0.0.1:{grpc}"
    triton.stop()


def official_repository(dest: pathlib.Path, weights_dir: pathlib.Path) -> pathlib.Path:
    """Copy the production repository, switching gen3c to KIND_CPU and the tiny weights (nothing else)."""
    repo = dest / "model_repository"
    shutil.copytree(REPO_DIR, repo, ignore=shutil.ignore_patterns("__pycache__"))
    config = repo / "gen3c" / "config.pbtxt"
    text = config.read_text()
    assert "KIND_GPU" in text and '"/models/gen3c"' in text
    config.write_text(text.replace("KIND_GPU", "KIND_CPU").replace('"/models/gen3c"', f'"{weights_dir}"'))
    return repo


def wheel_tritonserver(dest: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path, dict]:
    """(tritonserver binary, backend dir with this Python's stub, environment) from the PyTriton wheel."""
    import pytriton

    dist = pathlib.Path(pytriton.__file__).parent / "tritonserver"
    backends = dest / "backends"
    shutil.copytree(dist / "backends", backends, ignore=shutil.ignore_patterns("__pycache__"))
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    shutil.copy(dist / "python_backend_stubs" / version / "triton_python_backend_stub", backends / "python")
    libs = pathlib.Path(pytriton.__file__).parent.parent / "nvidia_pytriton.libs"
    env = dict(os.environ)
    # The stub embeds libpython: this interpreter's LIBDIR first; PATH makes it find this venv's packages.
    env["LD_LIBRARY_PATH"] = ":".join(
        p for p in (sysconfig.get_config_var("LIBDIR"), str(libs), os.environ.get("LD_LIBRARY_PATH")) if p
    )
    env["PATH"] = f"{pathlib.Path(sys.executable).parent}:{os.environ.get('PATH', '')}"
    return dist / "bin" / "tritonserver", backends, env


@pytest.fixture(scope="session")
def official_url(tiny_gen3c_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("triton-official")
    repo = official_repository(root, tiny_gen3c_dir)
    binary, backends, env = wheel_tritonserver(root)
    http, grpc, metrics = free_ports(3)
    log_path = root / "tritonserver.log"
    cmd = [
        str(binary), f"--model-repository={repo}", f"--backend-directory={backends}",
        "--http-address=127.0.0.1", "--grpc-address=127.0.0.1", "--metrics-address=127.0.0.1",
        f"--http-port={http}", f"--grpc-port={grpc}", f"--metrics-port={metrics}",
        "--exit-timeout-secs=3", "--allow-gpu-metrics=false",
    ]  # fmt: skip
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"127.0.0.1:{grpc}"
    client = grpcclient.InferenceServerClient(url)
    deadline = time.monotonic() + 120
    while True:
        try:
            if client.is_server_ready():
                break
        except Exception:  # noqa: BLE001 - not listening yet
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"tritonserver did not become ready:\n{log_path.read_text()[-4000:]}")
        time.sleep(0.5)
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(params=["pytriton", "official"])
def url(request):
    return request.getfixturevalue(f"{request.param}_url")


# -- tests --------------------------------------------------------------------------------------------------------


def test_preview_streams_progress_then_video(url):
    first, renders, masks = chunk(t=9)
    reply = generate(url, "preview", first, renders, masks, options(seed=0))  # ends in a NUL byte
    assert reply.error is None
    assert reply.video.shape == (9, 32, 48, 3) and reply.video.dtype == np.uint8
    np.testing.assert_array_equal(reply.video[0], first)
    assert len(reply.progress) >= 2 and reply.progress[-1].stage == DONE
    assert all(p.model == "preview" and p.preview for p in reply.progress)
    assert [p.step for p in reply.progress[:-1]] == [8, 9]


def test_preview_is_identical_on_both_servers(pytriton_url, official_url):
    data = chunk(t=4, seed=5)
    a = generate(pytriton_url, "preview", *data, opts=None)  # OPTIONS is optional
    b = generate(official_url, "preview", *data, opts=None)
    assert a.error is None and b.error is None
    np.testing.assert_array_equal(a.video, b.video)


def test_gen3c_streams_stages_then_video(url):
    first, renders, masks = chunk(t=GEN3C_FRAMES, seed=1)
    reply = generate(url, "gen3c", first, renders, masks, options(num_steps=1, seed=4, guidance=1.0))
    assert reply.error is None, reply.error
    assert reply.video.shape == (GEN3C_FRAMES, 32, 48, 3) and reply.video.dtype == np.uint8
    stages = [p.stage for p in reply.progress]
    assert stages[0] == diffusion_pb2.GENERATE_STAGE_ENCODE and stages[-1] == DONE
    assert diffusion_pb2.GENERATE_STAGE_DENOISE in stages and diffusion_pb2.GENERATE_STAGE_DECODE in stages
    assert stages.count(DONE) == 1
    assert all(p.model == "gen3c" and not p.preview for p in reply.progress)


def test_gen3c_rejects_wrong_chunk_length(url):
    reply = generate(url, "gen3c", *chunk(t=5), options(num_steps=1))
    assert (
        reply.error and reply.status[0] == "INVALID_ARGUMENT" and f"must be {GEN3C_FRAMES}" in reply.status[1]
    )


def bad(kind):
    first, renders, masks = chunk()
    if kind == "masks_shape":
        return (first, renders, masks[:3]), b"", "MASKS must be"
    if kind == "first_frame_shape":
        return (first[:16], renders, masks), b"", "FIRST_FRAME must be"
    if kind == "three_slots":
        first, renders, masks = chunk(n=3)
        return (first, renders, masks), b"", "buffer slots N must be in [1, 2], got 3"
    if kind == "height_not_16":
        first, renders, masks = chunk(h=40)
        return (first, renders, masks), b"", "multiples of 16"
    if kind == "mask_values":
        return (first, renders, masks * 255), b"", "MASKS values must be 0 or 1"
    if kind == "options_bytes":
        return (
            (first, renders, masks),
            b"not a protobuf",
            "OPTIONS is not a serialized objvid.v1.GenerateOptions",
        )
    if kind == "options_other_message":
        wrong = diffusion_pb2.GenerateProgress(model="x", preview=True).SerializeToString()
        return (first, renders, masks), wrong, "OPTIONS has fields unknown"
    if kind == "steps":
        return (first, renders, masks), options(num_steps=5000), "options.num_steps must be in [1, 1000]"
    if kind == "guidance":
        return (first, renders, masks), options(guidance=-2.0), "options.guidance must be"
    if kind == "fps":
        return (first, renders, masks), options(fps=-1.0), "options.fps must be"
    raise AssertionError(kind)


BAD_KINDS = ["masks_shape", "first_frame_shape", "three_slots", "height_not_16", "mask_values",
             "options_bytes", "options_other_message", "steps", "guidance", "fps"]  # fmt: skip


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_bad_inputs_get_clear_errors(url, kind):
    tensors, opts, expected = bad(kind)
    reply = generate(url, "preview", *tensors, opts)
    assert reply.video is None and reply.error is not None
    assert reply.status[0] == "INVALID_ARGUMENT" and expected in reply.status[1], reply.status
    assert (
        expected in reply.error and "INVALID_ARGUMENT: " not in reply.error
    )  # no code word parsed from text
    assert reply.progress == []


def test_wrong_dtype_rejected_by_triton_then_still_serving(url):
    first, renders, masks = chunk()
    reply = generate(
        url, "preview", first, renders.astype(np.float32), masks, dtypes=("UINT8", "FP32", "UINT8")
    )
    assert reply.error and "RENDERS" in reply.error and "UINT8" in reply.error
    assert_serving(url)


def test_failure_inside_generation_is_an_error_response(pytriton_url):
    reply = generate(pytriton_url, "broken", *chunk(), options(seed=1))
    assert [p.step for p in reply.progress] == [1] and reply.video is None
    assert reply.status == ("INTERNAL", "broken generation failed: RuntimeError: sampler exploded at step 2")
    assert "sampler exploded at step 2" in reply.error
    reply = generate(pytriton_url, "broken", *chunk(), options(seed=7))
    assert reply.status[0] == "RESOURCE_EXHAUSTED" and "offload transformer" in reply.status[1]
    assert_serving(pytriton_url)


def test_server_keeps_serving_after_errors(url):
    for kind in ("three_slots", "options_bytes"):
        tensors, opts, _ = bad(kind)
        assert generate(url, "preview", *tensors, opts).error
    assert_serving(url)
