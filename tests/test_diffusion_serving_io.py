"""``triton_io`` in process: option decoding, the streamed output sequence, cancellation, bad model output."""

from __future__ import annotations

import numpy as np
import pytest

from objvid.diffusion.base import DEFAULT_STEPS, Progress, VideoModel
from objvid.diffusion.preview import PreviewModel
from objvid.diffusion.triton_io import ChunkError, decode_options, error_code, run_chunk
from objvid.v1 import diffusion_pb2


def inputs(t=3, h=16, w=32, opts=None):
    renders = np.full((t, 1, h, w, 3), 80, np.uint8)
    masks = np.ones((t, 1, h, w), np.uint8)
    return {"FIRST_FRAME": renders[0, 0].copy(), "RENDERS": renders, "MASKS": masks, "OPTIONS": opts}


class Scripted(VideoModel):
    """Emits the given progress stages, then returns ``output`` (or a correct black video)."""

    name = "scripted"

    def __init__(self, stages=("encode", "denoise", "done"), output=None):
        self.stages, self.output = stages, output

    def generate(self, chunk, options, progress=None):
        for i, stage in enumerate(self.stages):
            progress(Progress(stage, i, len(self.stages)))
        if self.output is not None:
            return self.output
        return np.zeros((chunk.num_frames, chunk.height, chunk.width, 3), np.uint8)


def test_decode_options():
    assert decode_options(None).num_steps == DEFAULT_STEPS
    raw = diffusion_pb2.GenerateOptions(num_steps=3, prompt="a red cube", seed=0).SerializeToString()
    opts = decode_options(np.array([raw], dtype=np.object_))
    assert (opts.num_steps, opts.seed, opts.prompt) == (3, 0, "a red cube")
    assert decode_options(raw).num_steps == 3
    zero_tail = diffusion_pb2.GenerateOptions(seed=0).SerializeToString()
    assert zero_tail.endswith(b"\x00") and decode_options(zero_tail).seed == 0
    with pytest.raises(ValueError, match="not a serialized"):
        decode_options(zero_tail[:-1])  # what a transport that strips trailing NULs would deliver
    with pytest.raises(ValueError, match="exactly one element"):
        decode_options(np.array([raw, raw], dtype=np.object_))
    with pytest.raises(ValueError, match="must be BYTES"):
        decode_options(np.array([1.5]))


def test_stream_order_and_single_done():
    outs = list(run_chunk(Scripted(), inputs()))
    assert [sorted(o) for o in outs] == [["PROGRESS"], ["PROGRESS"], ["PROGRESS", "VIDEO"]]
    stages = [diffusion_pb2.GenerateProgress.FromString(o["PROGRESS"][0]).stage for o in outs]
    assert stages == [diffusion_pb2.GENERATE_STAGE_ENCODE, diffusion_pb2.GENERATE_STAGE_DENOISE,
                      diffusion_pb2.GENERATE_STAGE_DONE]  # fmt: skip
    assert outs[-1]["VIDEO"].shape == (3, 16, 32, 3)


def test_bad_model_output_is_internal_error():
    with pytest.raises(ChunkError, match="^scripted returned") as info:
        list(run_chunk(Scripted(output=np.zeros((3, 16, 32), np.uint8)), inputs()))
    assert info.value.code == "INTERNAL"


def test_cancellation_stops_generation():
    with pytest.raises(ChunkError) as info:
        list(run_chunk(Scripted(), inputs(), is_cancelled=lambda: True))
    assert info.value.code == "CANCELLED"


def test_invalid_input_raises_before_any_output():
    stream = run_chunk(PreviewModel(), inputs(h=20))
    with pytest.raises(ChunkError, match="^RENDERS height and width must be") as info:
        next(stream)
    assert info.value.code == "INVALID_ARGUMENT"
    missing = inputs()
    del missing["MASKS"]
    with pytest.raises(ChunkError, match="missing input MASKS"):
        next(run_chunk(PreviewModel(), missing))


def test_error_codes():
    from objvid.diffusion.gen3c.memory import GpuMemoryError

    assert error_code(MemoryError()) == "RESOURCE_EXHAUSTED"
    assert error_code(GpuMemoryError("GPU has 1 GiB free: offload transformer")) == "RESOURCE_EXHAUSTED"
    assert error_code(RuntimeError("x")) == "INTERNAL"

    class OutOfMemoryError(RuntimeError):  # same name as torch's, not torch's: no name matching
        pass

    assert error_code(OutOfMemoryError()) == "INTERNAL"


class _FakeTritonError:
    """What the Python backend's ``pb_utils.TritonError`` looks like (message, code constants)."""

    INVALID_ARG, UNAVAILABLE, INTERNAL, CANCELLED = 3, 14, 13, 1

    def __init__(self, message, code=13):
        self.message, self.code = message, code


def test_chunk_errors_carry_typed_codes_for_triton_and_the_stream():
    class PbUtils:
        TritonError = _FakeTritonError

    err = ChunkError("RESOURCE_EXHAUSTED", "GPU too small: offload transformer")
    triton = err.triton_error(PbUtils)
    assert (
        triton.message == "GPU too small: offload transformer" and triton.code == _FakeTritonError.UNAVAILABLE
    )
    progress = diffusion_pb2.GenerateProgress.FromString(err.status_tensor(PreviewModel())[0])
    assert progress.status.code == 8 and progress.status.message == "GPU too small: offload transformer"
    assert ChunkError("INVALID_ARGUMENT", "x").triton_error(PbUtils).code == _FakeTritonError.INVALID_ARG
