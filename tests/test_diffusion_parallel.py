"""GEN3C on a worker group (CPU ranks, gloo): a tiny random GEN3C with 4 heads, converted from upstream-format
files, on world sizes 2 and 4 with and without CFG parallelism, against the same model in one process
(latents within 1e-5 relative, identical video), plus cancellation and a killed worker."""

from __future__ import annotations

import os
import re
import signal

import numpy as np
import pytest
import torch

from objvid.diffusion.base import GenerateOptions, validate_chunk
from objvid.diffusion.convert import convert
from objvid.diffusion.gen3c.model import Gen3cModel
from objvid.diffusion.parallel.group import WorkerGroupModel
from objvid.diffusion.parallel.worker import WorkerSpec
from objvid.testing import gen3c as synthetic

T, H, W = 9, 32, 48  # 2 latent frames x 2 x 3 patches = 12 tokens: splits over 2 and 4 ranks
LAYOUT = synthetic.DitLayout(hidden=64, heads=4)  # 4 heads: Ulysses over up to 4 ranks
OPTIONS = GenerateOptions(prompt="a red cube", negative_prompt="sky", seed=3, num_steps=2, guidance=2.0)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory):
    from test_diffusion_gen3c import TOK_LAYOUT, make_tiny_t5

    root = tmp_path_factory.mktemp("gen3c_parallel")
    model_pt = synthetic.write_gen3c_checkpoint(
        root / "src" / "model.pt", synthetic.upstream_dit_state(LAYOUT, seed=5)
    )
    tok = synthetic.write_tokenizer_dir(
        root / "src" / "tok", synthetic.upstream_tokenizer_state(TOK_LAYOUT, seed=6), TOK_LAYOUT
    )
    t5 = make_tiny_t5(root / "src" / "t5")
    return convert(model_pt, tok, root / "w", text_encoder_path=t5, chunk_frames=T, text_max_length=8).out_dir


@pytest.fixture(scope="module")
def chunk():
    rng = np.random.default_rng(0)
    renders = rng.integers(0, 256, (T, 2, H, W, 3), dtype=np.uint8)
    masks = (rng.random((T, 2, H, W)) > 0.3).astype(np.uint8)
    renders[masks == 0] = 0
    return validate_chunk(rng.integers(0, 256, (H, W, 3), dtype=np.uint8), renders, masks)


class RecordingGen3c(Gen3cModel):
    """The single-process model, keeping its final latent."""

    def _decode(self, latent, emit):
        self.latent = latent.float().cpu()
        return super()._decode(latent, emit)


@pytest.fixture(scope="module")
def reference(weights_dir, chunk):
    """One process: {guidance: (latent, video)}, with one thread like each CPU worker (the thread count
    changes float32 summation order in the CPU kernels)."""
    model = RecordingGen3c.from_pretrained(weights_dir, device="cpu")
    out = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for guidance in (OPTIONS.guidance, 0.0):
            video = model.generate(chunk, GenerateOptions(**{**OPTIONS.__dict__, "guidance": guidance}))
            out[guidance] = (model.latent, video)
    finally:
        torch.set_num_threads(threads)
    return out


def start_group(weights_dir, world: int, cfg_parallel: str, cfg_batch: bool = False) -> WorkerGroupModel:
    spec = WorkerSpec(
        weights_dir=str(weights_dir),
        devices=("cpu",) * world,
        store_dir="",
        cfg_parallel=cfg_parallel,
        cfg_batch=cfg_batch,
    )
    return WorkerGroupModel(spec, start_timeout_s=300)


def assert_same(group: WorkerGroupModel, video: np.ndarray, ref) -> None:
    latent, ref_video = ref
    got = group.group.last_latent
    assert got.shape == latent.shape
    rel = (got - latent).abs().max() / latent.abs().max()
    assert rel <= 1e-5, f"latent differs by {rel:.2e} relative"
    # the video through the same VAE: float32 differences of that size flip a uint8 truncation here and there
    diff = np.abs(video.astype(np.int16) - ref_video.astype(np.int16))
    assert diff.max() <= 1 and np.count_nonzero(diff) <= 1e-3 * diff.size, (
        diff.max(),
        np.count_nonzero(diff),
    )


@pytest.mark.parametrize(
    ("world", "cfg_parallel", "layout"),
    [(2, "1", (1, 1, 2)), (4, "1", (1, 1, 4)), (4, "2", (2, 1, 2))],  # (2, "2"): the serving test below
)
def test_group_matches_one_process(weights_dir, chunk, reference, world, cfg_parallel, layout):
    # world 2 without CFG groups runs the two passes as one batch of 2, split over both ranks
    model = start_group(weights_dir, world, cfg_parallel, cfg_batch=(world, cfg_parallel) == (2, "1"))
    try:
        assert (model.layout.cfg, model.layout.ring, model.layout.ulysses) == layout
        events = []
        video = model.generate(chunk, OPTIONS, events.append)
        assert_same(model, video, reference[OPTIONS.guidance])
        stages = [(e.stage, e.step, e.total) for e in events]
        assert stages[:2] == [("encode", 0, 5), ("encode", 1, 5)] and stages[-1] == ("decode", 1, 1)
        assert [s for s in stages if s[0] == "denoise"] == [
            ("denoise", 0, 2),
            ("denoise", 1, 2),
            ("denoise", 2, 2),
        ]
        if (
            world == 4 and cfg_parallel == "2"
        ):  # guidance 0: no unconditional pass, both CFG groups run the same
            video = model.generate(chunk, GenerateOptions(**{**OPTIONS.__dict__, "guidance": 0.0}))
            assert_same(model, video, reference[0.0])
    finally:
        model.close()


def test_served_through_triton_io_cancel_kill_and_recovery(weights_dir, chunk, reference):
    """The Triton adapters' request path (registry.load_model + triton_io.run_chunk) on a 2-rank group:
    a cancelled request stops every rank without a reload; a killed rank fails the request with a clear
    error and the group reloads for the next one."""
    from objvid.diffusion import registry
    from objvid.diffusion.triton_io import ChunkError, run_chunk
    from objvid.v1 import diffusion_pb2

    settings = registry.settings_from_parameters({"weights_dir": str(weights_dir), "world_size": "2"}, "cpu")
    model = registry.load_model("gen3c", settings)
    assert isinstance(model, WorkerGroupModel) and model.layout.cfg == 2  # auto: CFG parallel on 2 ranks
    message = diffusion_pb2.GenerateOptions(
        prompt=OPTIONS.prompt,
        negative_prompt=OPTIONS.negative_prompt,
        seed=OPTIONS.seed,
        num_steps=2,
        guidance=2.0,
    )
    inputs = {
        "FIRST_FRAME": chunk.first_frame,
        "RENDERS": chunk.renders,
        "MASKS": chunk.masks,
        "OPTIONS": np.array([message.SerializeToString()], dtype=np.object_),
    }
    try:
        pids = model.group.pids
        seen = []

        def cancelled() -> bool:  # the client goes away once sampling has started
            return len(seen) >= 7

        with pytest.raises(ChunkError) as failure:
            for outputs in run_chunk(model, inputs, cancelled):
                seen.append(outputs)
        assert failure.value.code == "CANCELLED"
        assert model.group.pids == pids  # cancelled on every rank, no reload

        outputs = list(run_chunk(model, inputs))
        assert_same(model, outputs[-1]["VIDEO"], reference[OPTIONS.guidance])

        def kill_rank1() -> bool:
            if len(seen) == 7:
                os.kill(pids[1], signal.SIGKILL)
            seen.append(None)
            return False

        seen.clear()
        with pytest.raises(ChunkError) as failure:
            list(run_chunk(model, inputs, kill_rank1))
        assert failure.value.code == "INTERNAL"
        assert re.search(r"rank 1 \(cpu, pid \d+\) exited with code -9.*restarting", str(failure.value))
        outputs = list(run_chunk(model, inputs))  # waits for the reload
        assert model.group.pids != pids
        assert_same(model, outputs[-1]["VIDEO"], reference[OPTIONS.guidance])
        new_pids = model.group.pids
    finally:
        model.close()
    assert not any(_alive(pid) for pid in [*pids, *new_pids])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_bad_layout_fails_the_load_with_the_reason(weights_dir):
    with pytest.raises(ValueError, match="cfg_parallel 2 needs an even world_size, got 3"):
        start_group(weights_dir, 3, "2")
    with pytest.raises(ValueError, match=r"context-parallel degree \(8\) to divide the 4 attention heads"):
        WorkerGroupModel(WorkerSpec(str(weights_dir), ("cpu",) * 8, "", cfg_parallel="1", cp_mode="ulysses"))


def test_parallel_benchmark_smoke_run(tmp_path):
    """bench/diffusion_parallel.py --device cpu --tiny: the benchmark's code path on CPU ranks."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "bench" / "diffusion_parallel.py"
    cmd = [
        sys.executable,
        str(script),
        "--device",
        "cpu",
        "--tiny",
        "--gpus",
        "2",
        "--steps",
        "1",
        "--reps",
        "1",
    ]
    proc = subprocess.run([*cmd, "--out", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    runs = json.loads((tmp_path / "diffusion_parallel_tiny.json").read_text())["runs"]
    assert [(r["world_size"], r["parallel"]) for r in runs] == [(1, False), (2, True)]
    assert runs[1]["layout"] == "world=2 cfg=2 ring=1 ulysses=1"
    for r in runs:
        assert r["forward_s"] > 0 and r["step_s"] > 0 and r["chunk_s"] == pytest.approx(35 * r["step_s"])
        assert r["efficiency"] > 0
    assert "| 2 | worker group | world=2 cfg=2" in proc.stdout


def _descendants(pid: int) -> set[int]:
    """Process ids below ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.add(child)
            todo.append(child)
    return out


def test_official_triton_serves_gen3c_on_a_worker_group(weights_dir, chunk, reference, tmp_path):
    """The production repository under the real tritonserver with --model-config-name=gpus2 (switched to
    KIND_CPU and the tiny weights): the Python-backend instance spawns 2 ranks, streams progress, returns the
    single-process video, and its ranks stop with the server."""
    import shutil
    import subprocess
    import time

    grpcclient = pytest.importorskip("tritonclient.grpc")
    from diffusion_serving_helpers import generate
    from net_helpers import free_ports
    from test_diffusion_serving import REPO_DIR, wheel_tritonserver

    from objvid.v1 import diffusion_pb2

    repo = tmp_path / "model_repository"
    shutil.copytree(REPO_DIR, repo, ignore=shutil.ignore_patterns("__pycache__"))
    config = repo / "gen3c" / "configs" / "gpus2.pbtxt"
    text = config.read_text()
    assert "kind: KIND_GPU gpus: [ 0 ]" in text and '"/models/gen3c"' in text
    config.write_text(
        text.replace("kind: KIND_GPU gpus: [ 0 ]", "kind: KIND_CPU").replace(
            '"/models/gen3c"', f'"{weights_dir}"'
        )
    )
    binary, backends, env = wheel_tritonserver(tmp_path)
    http, grpc, metrics = free_ports(3)
    cmd = [
        str(binary), f"--model-repository={repo}", f"--backend-directory={backends}",
        "--model-control-mode=explicit", "--load-model=gen3c", "--model-config-name=gpus2",
        "--http-address=127.0.0.1", "--grpc-address=127.0.0.1", "--metrics-address=127.0.0.1",
        f"--http-port={http}", f"--grpc-port={grpc}", f"--metrics-port={metrics}",
        "--exit-timeout-secs=5", "--allow-gpu-metrics=false",
    ]  # fmt: skip
    log_path = tmp_path / "tritonserver.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"127.0.0.1:{grpc}"
    try:
        client = grpcclient.InferenceServerClient(url)
        deadline = time.monotonic() + 300
        while True:
            try:
                if client.is_model_ready("gen3c"):
                    break
            except Exception:  # noqa: BLE001 - not listening yet
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"gen3c did not become ready:\n{log_path.read_text()[-4000:]}")
            time.sleep(0.5)
        config = client.get_model_config("gen3c", as_json=True)["config"]
        assert config["parameters"]["world_size"]["string_value"] == "2"
        ranks = _descendants(proc.pid)
        assert len(ranks) >= 3  # the backend stub and its two spawned ranks
        opts = diffusion_pb2.GenerateOptions(
            prompt=OPTIONS.prompt,
            negative_prompt=OPTIONS.negative_prompt,
            seed=OPTIONS.seed,
            num_steps=2,
            guidance=2.0,
        ).SerializeToString()
        reply = generate(url, "gen3c", chunk.first_frame, chunk.renders, chunk.masks, opts)
        assert reply.error is None, reply.error
        stages = [p.stage for p in reply.progress]
        assert (
            stages[0] == diffusion_pb2.GENERATE_STAGE_ENCODE
            and stages[-1] == diffusion_pb2.GENERATE_STAGE_DONE
        )
        assert sum(s == diffusion_pb2.GENERATE_STAGE_DENOISE for s in stages) == 3
        _, ref_video = reference[OPTIONS.guidance]
        diff = np.abs(reply.video.astype(np.int16) - ref_video.astype(np.int16))
        assert diff.max() <= 1 and np.count_nonzero(diff) <= 1e-3 * diff.size
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    deadline = time.monotonic() + 20
    while any(_alive(pid) for pid in ranks) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not any(_alive(pid) for pid in ranks), "worker ranks outlived tritonserver"
