"""Client-side helpers for the diffusion serving tests: chunks, one streamed request."""

from __future__ import annotations

import queue
from dataclasses import dataclass, field

import grpc
import numpy as np
import tritonclient.grpc as grpcclient

from objvid.v1 import diffusion_pb2


def _code_name(number: int) -> str:
    return next(c.name for c in grpc.StatusCode if c.value[0] == number)


def options(**kw) -> bytes:
    return diffusion_pb2.GenerateOptions(**kw).SerializeToString()


def chunk(t=5, n=2, h=32, w=48, seed=0):
    """(first_frame, renders, masks): random content, ~25% holes per slot painted black."""
    rng = np.random.default_rng(seed)
    renders = rng.integers(0, 256, (t, n, h, w, 3), dtype=np.uint8)
    masks = (rng.random((t, n, h, w)) > 0.25).astype(np.uint8)
    renders[masks == 0] = 0
    return renders[0, 0].copy(), renders, masks


@dataclass
class Reply:
    progress: list = field(default_factory=list)  # GenerateProgress messages, in arrival order
    video: np.ndarray | None = None
    error: str | None = None  # the Triton error's text
    status: tuple[str, str] | None = None  # (gRPC code name, message) from GenerateProgress.status


def generate(url, model, first, renders, masks, opts: bytes | None = b"", dtypes=("UINT8", "UINT8", "UINT8"),
             headers: dict | None = None):  # fmt: skip
    """One streamed request, as a client does it: ends at the response with VIDEO or at an error."""
    client = grpcclient.InferenceServerClient(url)
    replies: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: replies.put((result, error)), headers=headers)
    try:
        inputs = []
        for name, array, dtype in (("FIRST_FRAME", first, dtypes[0]), ("RENDERS", renders, dtypes[1]),
                                   ("MASKS", masks, dtypes[2])):  # fmt: skip
            tensor = grpcclient.InferInput(name, list(array.shape), dtype)
            tensor.set_data_from_numpy(array)
            inputs.append(tensor)
        if opts is not None:
            tensor = grpcclient.InferInput("OPTIONS", [1], "BYTES")
            tensor.set_data_from_numpy(np.array([opts], dtype=np.object_))
            inputs.append(tensor)
        client.async_stream_infer(model, inputs)
        reply = Reply()
        while True:
            result, error = replies.get(timeout=180)
            if error is not None:
                reply.error = str(error)
                return reply
            progress = diffusion_pb2.GenerateProgress.FromString(result.as_numpy("PROGRESS")[0])
            if progress.HasField("status"):  # a failed request: the typed status, then the error
                reply.status = (_code_name(progress.status.code), progress.status.message)
                continue
            reply.progress.append(progress)
            video = result.as_numpy("VIDEO")
            if video is not None:
                reply.video = video
                return reply
    finally:
        client.stop_stream()
        client.close()


def assert_serving(url):
    client = grpcclient.InferenceServerClient(url)
    assert client.is_server_live() and client.is_server_ready()
    reply = generate(url, "preview", *chunk(t=2, seed=9))
    assert reply.error is None and reply.video.shape == (2, 32, 48, 3)
