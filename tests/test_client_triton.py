"""The SDK's diffusion calls against a real PyTriton server (the local stack's, preview model): a chunk
with progress, and failures that keep their status code (typed, from the stream; no message parsing)."""

from __future__ import annotations

import numpy as np
import psutil
import pytest

from objvid.client import ObjvidClient, ServiceError
from objvid.client.stack import LocalStack, StackConfig
from objvid.v1 import diffusion_pb2

pytestmark = pytest.mark.slow

H, W, T = 32, 48, 3


@pytest.fixture(scope="module")
def triton(tmp_path_factory):
    cfg = StackConfig(depth=False, cache=False, backend="preview", device="cpu")
    with LocalStack(cfg, tmp_path_factory.mktemp("logs")) as stack:
        pids = stack.pids()
        with ObjvidClient(triton_addr=stack.triton_addr) as client:
            yield client
    _, alive = psutil.wait_procs([psutil.Process(p) for p in pids if psutil.pid_exists(p)], timeout=10)
    assert not alive  # tritonserver and the Python backend stub included


def _chunk(seed: int = 0):
    rng = np.random.default_rng(seed)
    renders = rng.integers(0, 256, (T, 1, H, W, 3), dtype=np.uint8)
    masks = (rng.random((T, 1, H, W)) > 0.2).astype(np.uint8)
    return renders[0, 0].copy(), renders, masks


def test_a_chunk_streams_progress_then_the_video(triton):
    first, renders, masks = _chunk()
    seen: list[diffusion_pb2.GenerateProgress] = []
    video, last = triton.generate_chunk("preview", first, renders, masks, on_progress=seen.append)
    assert video.shape == (T, H, W, 3) and video.dtype == np.uint8
    assert seen and last.stage == diffusion_pb2.GENERATE_STAGE_DONE and last.preview


def test_a_bad_request_fails_with_its_status_code(triton):
    first, renders, masks = _chunk()
    with pytest.raises(ServiceError) as err:
        triton.generate_chunk("preview", first, renders, masks[:, :, :-1])  # MASKS one row short
    assert err.value.code == "INVALID_ARGUMENT" and err.value.service == "diffusion"
    assert err.value.details.startswith("MASKS must be") and "Traceback" not in err.value.details
    video, _ = triton.generate_chunk("preview", first, renders, masks)  # the server serves on
    assert video.shape == (T, H, W, 3)


def test_an_unknown_model_is_not_found(triton):
    first, renders, masks = _chunk()
    with pytest.raises(ServiceError) as err:
        triton.generate_chunk("no-such-model", first, renders, masks)
    assert err.value.code == "NOT_FOUND" and "no-such-model" in err.value.details


def test_the_token_reaches_a_protected_triton(tmp_path):
    env = {"OBJVID_DIFFUSION_TOKEN": "s3cret", "OBJVID_DIFFUSION_ALLOW_INSECURE_TOKEN": "1"}
    cfg = StackConfig(depth=False, cache=False, backend="preview", device="cpu", extra_env=env)
    first, renders, masks = _chunk(1)
    with LocalStack(cfg, tmp_path) as stack:
        with ObjvidClient(triton_addr=stack.triton_addr, token="s3cret") as client:
            video, _ = client.generate_chunk("preview", first, renders, masks)
            assert video.shape == (T, H, W, 3)
        with ObjvidClient(triton_addr=stack.triton_addr) as anonymous, pytest.raises(ServiceError) as err:
            anonymous.generate_chunk("preview", first, renders, masks)
        # Triton ends the stream RPC itself: its gRPC status, read from the exception, not from the text.
        assert err.value.code == "UNAVAILABLE" and "restricted" in err.value.details
