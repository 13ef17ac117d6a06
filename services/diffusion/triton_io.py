"""Triton tensors <-> :class:`VideoModel` calls, shared by both adapters.

The official Python-backend repository (``model_repository/*/1/model.py``) and the PyTriton server
(``pytriton_server.py``) both call :func:`run_chunk`, so local and production serving run the same code.

Inputs (``max_batch_size: 0``, shapes as sent):
  FIRST_FRAME uint8 [H, W, 3]; RENDERS uint8 [T, N, H, W, 3]; MASKS uint8 [T, N, H, W] (1 = rendered);
  OPTIONS BYTES [1] = serialized ``objvid.v1.GenerateOptions`` (optional; absent = defaults);
  RENDER_SOURCE BYTES [1] = serialized ``objvid.v1.RenderSource`` INSTEAD of RENDERS + MASKS: the model
  fetches the renders from its configured cache service (``objvid.diffusion.cache_source``), so they do
  not pass through the client. Exactly one of (RENDERS + MASKS) and RENDER_SOURCE.
Outputs (decoupled, several responses per request):
  PROGRESS BYTES [1] = serialized ``objvid.v1.GenerateProgress`` in every response;
  VIDEO uint8 [T, H, W, 3] in the last data response only (its PROGRESS has stage DONE).
Errors: a last data response whose PROGRESS carries ``status`` (``GenerateStatus``: the gRPC code number
and the one-line reason; typed, because Triton's stream delivers errors as bare strings), then one error
response ``TritonError(reason, code)`` with the closest Triton code (``TRITON_CODES``) that ends the stream.
Codes: INVALID_ARGUMENT (bad inputs), RESOURCE_EXHAUSTED (GPU or host memory), CANCELLED, INTERNAL.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping

import numpy as np
from google.protobuf import message as pb_message
from google.protobuf import unknown_fields

from objvid.diffusion.base import (
    MAX_BUFFER_SLOTS,
    MAX_FUSION_VIEWS,
    ChunkInputs,
    GenerateOptions,
    Progress,
    VideoModel,
    validate_chunk,
)
from objvid.diffusion.cache_source import ADDRESS_ENV, READY_FILE_ENV, CacheSource, decode_source
from objvid.runtime import errors
from objvid.serving.status import is_device_oom
from objvid.v1 import diffusion_pb2

log = logging.getLogger("objvid.diffusion.triton")

#: (name, numpy dtype, dims, optional); ``bytes`` = Triton TYPE_STRING / BYTES.
INPUTS: tuple[tuple[str, type, tuple[int, ...], bool], ...] = (
    ("FIRST_FRAME", np.uint8, (-1, -1, 3), False),
    ("RENDERS", np.uint8, (-1, -1, -1, -1, 3), True),
    ("MASKS", np.uint8, (-1, -1, -1, -1), True),
    ("OPTIONS", bytes, (1,), True),
    ("RENDER_SOURCE", bytes, (1,), True),
)
OUTPUTS: tuple[tuple[str, type, tuple[int, ...]], ...] = (
    ("VIDEO", np.uint8, (-1, -1, -1, 3)),
    ("PROGRESS", bytes, (1,)),
)
INPUT_NAMES = tuple(name for name, *_ in INPUTS)

_STAGES = {
    "encode": diffusion_pb2.GENERATE_STAGE_ENCODE,
    "denoise": diffusion_pb2.GENERATE_STAGE_DENOISE,
    "decode": diffusion_pb2.GENERATE_STAGE_DECODE,
    "done": diffusion_pb2.GENERATE_STAGE_DONE,
}


#: gRPC status code name -> (code number, Triton python-backend ``TritonError`` code name). Triton has no
#: RESOURCE_EXHAUSTED: UNAVAILABLE (try later / smaller / with offloading) is the closest.
STATUS_CODES: dict[str, tuple[int, str]] = {
    "CANCELLED": (1, "CANCELLED"),
    "INVALID_ARGUMENT": (3, "INVALID_ARG"),
    "RESOURCE_EXHAUSTED": (8, "UNAVAILABLE"),
    "INTERNAL": (13, "INTERNAL"),
}


class ChunkError(Exception):
    """A request failed: ``code`` (a ``STATUS_CODES`` name) and ``reason``, the one-line message."""

    def __init__(self, code: str, reason: str):
        super().__init__(reason)
        self.code = code
        self.reason = reason

    def status_tensor(self, model: VideoModel) -> np.ndarray:
        """The PROGRESS tensor carrying this failure (``GenerateProgress.status``)."""
        msg = diffusion_pb2.GenerateProgress(
            model=model.name,
            preview=model.preview,
            status=diffusion_pb2.GenerateStatus(code=STATUS_CODES[self.code][0], message=self.reason),
        )
        return np.array([msg.SerializeToString()], dtype=np.object_)

    def triton_error(self, pb_utils):
        """``pb_utils.TritonError(reason, code)`` (Python backend; older backends take the message only)."""
        code = getattr(pb_utils.TritonError, STATUS_CODES[self.code][1], None)
        return pb_utils.TritonError(self.reason) if code is None else pb_utils.TritonError(self.reason, code)


class Cancelled(Exception):
    """Raised inside the progress callback when the client went away; aborts generation."""


def decode_options(value: np.ndarray | bytes | None) -> GenerateOptions:
    """OPTIONS tensor ([1] BYTES, or raw bytes, or None) -> validated :class:`GenerateOptions`."""
    if value is None:
        raw = b""
    elif isinstance(value, bytes | bytearray):
        raw = bytes(value)
    else:
        array = np.asarray(value)
        if array.size != 1:
            raise ValueError(f"OPTIONS must hold exactly one element, got shape {tuple(array.shape)}")
        raw = array.reshape(-1)[0]
        if isinstance(raw, np.ndarray | np.generic):
            raw = raw.item()
        if isinstance(raw, str):
            raw = raw.encode()
        if not isinstance(raw, bytes | bytearray):
            raise ValueError(
                f"OPTIONS must be BYTES (a serialized objvid.v1.GenerateOptions), got {array.dtype}"
            )
    try:
        msg = diffusion_pb2.GenerateOptions.FromString(bytes(raw))
    except pb_message.DecodeError as err:
        raise ValueError(
            f"OPTIONS is not a serialized objvid.v1.GenerateOptions ({len(raw)} bytes): {err}"
        ) from None
    unknown = sorted({field.field_number for field in unknown_fields.UnknownFieldSet(msg)})
    if unknown:
        raise ValueError(
            f"OPTIONS has fields unknown to objvid.v1.GenerateOptions (numbers {unknown}): "
            "not a GenerateOptions message, or the client's schema is newer than the server's"
        )
    options = GenerateOptions.from_proto(msg)
    options.validate()
    return options


def prepare_chunk(
    model: VideoModel, inputs: Mapping[str, np.ndarray | None], source: CacheSource | None = None
) -> tuple[ChunkInputs, GenerateOptions]:
    """Decode and validate one request's tensors for ``model``; raise ValueError naming the problem.

    RENDER_SOURCE: the renders and masks are fetched from the cache at ``source`` (the server's config).
    """
    for name, _, _, optional in INPUTS:
        if not optional and inputs.get(name) is None:
            raise ValueError(f"missing input {name}")
    renders, masks = inputs.get("RENDERS"), inputs.get("MASKS")
    if inputs.get("RENDER_SOURCE") is not None:
        if renders is not None or masks is not None:
            raise ValueError("RENDER_SOURCE: send either RENDERS + MASKS or RENDER_SOURCE, not both")
        if source is None:
            raise ValueError(
                "RENDER_SOURCE: this server has no cache address (model parameter cache_address or "
                f"{ADDRESS_ENV}, or cache_ready_file / {READY_FILE_ENV}); send RENDERS + MASKS"
            )
        renders, masks = source.fetch(decode_source(inputs["RENDER_SOURCE"]))
    elif renders is None or masks is None:
        raise ValueError(f"missing input {'RENDERS' if renders is None else 'MASKS'} (or send RENDER_SOURCE)")
    options = decode_options(inputs.get("OPTIONS"))
    max_slots = MAX_FUSION_VIEWS if options.view_fusion == "latent-max" else MAX_BUFFER_SLOTS
    chunk = validate_chunk(inputs["FIRST_FRAME"], renders, masks, max_slots)
    model.check_frames(chunk.num_frames)
    check_size = getattr(model, "check_size", None)  # optional: models with a maximum resolution
    if check_size is not None:
        check_size(chunk.height, chunk.width)
    return chunk, options


def progress_tensor(model: VideoModel, event: Progress) -> np.ndarray:
    """A :class:`Progress` -> PROGRESS tensor: [1] object array holding a serialized GenerateProgress."""
    msg = diffusion_pb2.GenerateProgress(
        step=event.step,
        total=event.total,
        stage=_STAGES.get(event.stage, diffusion_pb2.GENERATE_STAGE_UNSPECIFIED),
        message=event.message,
        model=model.name,
        preview=model.preview,
    )
    return np.array([msg.SerializeToString()], dtype=np.object_)


def error_code(exc: BaseException) -> str:
    """Status code name for an exception raised inside generation (typed checks, no name matching)."""
    if isinstance(exc, Cancelled):
        return "CANCELLED"
    if isinstance(exc, MemoryError | errors.ResourceExhausted) or is_device_oom(exc):
        return "RESOURCE_EXHAUSTED"
    return "INTERNAL"


def run_chunk(
    model: VideoModel,
    inputs: Mapping[str, np.ndarray | None],
    is_cancelled: Callable[[], bool] | None = None,
    source: CacheSource | None = None,
) -> Iterator[dict[str, np.ndarray]]:
    """Serve one request: yields output dicts, ``{"PROGRESS"}`` while generating, then
    ``{"VIDEO", "PROGRESS"(stage DONE)}``. Raises :class:`ChunkError` (nothing yielded for bad input).

    Generation runs in a worker thread so progress events stream while it samples; ``is_cancelled``
    (polled at every progress event) aborts it when the client is gone.
    """
    try:
        chunk, options = prepare_chunk(model, inputs, source)
    except ValueError as err:
        log.info("event=request_rejected model=%s reason=%r", model.name, str(err))
        raise ChunkError("INVALID_ARGUMENT", str(err)) from None
    start = time.perf_counter()
    log.info(
        "event=chunk_start model=%s frames=%d slots=%d height=%d width=%d steps=%d seed=%d",
        model.name, chunk.num_frames, chunk.num_slots, chunk.height, chunk.width, options.num_steps, options.seed,
    )  # fmt: skip
    events: queue.Queue = queue.Queue()
    stop = threading.Event()

    def on_progress(event: Progress) -> None:
        if stop.is_set() or (is_cancelled is not None and is_cancelled()):
            raise Cancelled("client cancelled the request")
        if event.stage != "done":  # DONE goes out once, with the VIDEO
            events.put(("progress", event))

    def work() -> None:
        try:
            events.put(("video", model.generate(chunk, options, on_progress)))
        except BaseException as exc:  # noqa: BLE001 - every failure becomes an error response
            events.put(("error", exc))

    worker = threading.Thread(target=work, name=f"generate-{model.name}", daemon=True)
    worker.start()
    try:
        while True:
            kind, payload = events.get()
            if kind == "progress":
                yield {"PROGRESS": progress_tensor(model, payload)}
            elif kind == "error":
                code = error_code(payload)
                log.warning("event=chunk_failed model=%s code=%s error=%r", model.name, code, payload)
                raise ChunkError(code, f"{model.name} generation failed: {type(payload).__name__}: {payload}")
            else:
                video = _check_video(model, chunk, payload)
                seconds = time.perf_counter() - start
                log.info("event=chunk_done model=%s frames=%d seconds=%.2f", model.name, len(video), seconds)
                done = Progress("done", chunk.num_frames, chunk.num_frames, f"video ready in {seconds:.1f} s")
                yield {"VIDEO": video, "PROGRESS": progress_tensor(model, done)}
                return
    finally:
        stop.set()


def _check_video(model: VideoModel, chunk: ChunkInputs, video) -> np.ndarray:
    expected = (chunk.num_frames, chunk.height, chunk.width, 3)
    if not isinstance(video, np.ndarray) or video.dtype != np.uint8 or video.shape != expected:
        got = (getattr(video, "dtype", type(video).__name__), tuple(getattr(video, "shape", ())))
        raise ChunkError("INTERNAL", f"{model.name} returned {got}, expected uint8 {expected}")
    return np.ascontiguousarray(video)


class PythonBackendModel:
    """The Triton Python-backend model (official repository layout), minus the ``pb_utils`` import.

    ``model_repository/<name>/1/model.py`` subclasses it as ``TritonPythonModel`` and passes the
    ``triton_python_backend_utils`` module, which only exists inside Triton's backend stub. The model is
    chosen by the ``model`` parameter or else the Triton model name; ``config.pbtxt`` parameters become
    :class:`objvid.diffusion.registry.ModelSettings`; KIND_GPU instances run on ``cuda:<device id>``.
    """

    def __init__(self, pb_utils):
        self.pb = pb_utils
        self.model: VideoModel | None = None
        self.source: CacheSource | None = None

    def initialize(self, args: dict) -> None:
        import json

        from objvid.diffusion import registry

        config = json.loads(args["model_config"])
        if not self.pb.using_decoupled_model_transaction_policy(config):
            raise self.pb.TritonModelException(
                f"{args['model_name']}: config.pbtxt must set model_transaction_policy {{ decoupled: true }}"
            )
        params = {key: value.get("string_value", "") for key, value in config.get("parameters", {}).items()}
        kind = args.get("model_instance_kind", "CPU")
        device = f"cuda:{args.get('model_instance_device_id', 0)}" if kind == "GPU" else "cpu"
        name = params.get("model") or args["model_name"]
        self.model = registry.load_model(name, registry.settings_from_parameters(params, device))
        self.source = CacheSource.from_config(params)  # RENDER_SOURCE requests (cache_source.py)

    def execute(self, requests) -> None:
        for request in requests:
            self._serve(request)
        return None

    def _serve(self, request) -> None:
        """Stream one request's responses; FINAL rides on the VIDEO response or on the error."""
        pb = self.pb
        final = pb.TRITONSERVER_RESPONSE_COMPLETE_FINAL
        sender = request.get_response_sender()
        try:
            inputs = {}
            for name in INPUT_NAMES:
                tensor = pb.get_input_tensor_by_name(request, name)
                inputs[name] = None if tensor is None else tensor.as_numpy()
            for outputs in run_chunk(self.model, inputs, sender.is_cancelled, self.source):
                tensors = [pb.Tensor(name, value) for name, value in outputs.items()]
                sender.send(
                    pb.InferenceResponse(output_tensors=tensors), flags=final if "VIDEO" in outputs else 0
                )
        except Exception as exc:  # noqa: BLE001 - keep serving whatever happens
            err = (
                exc if isinstance(exc, ChunkError) else ChunkError("INTERNAL", f"{type(exc).__name__}: {exc}")
            )
            if not isinstance(exc, ChunkError):
                log.error(
                    "event=request_failed model=%s error=%s", self.model.name if self.model else "?", err
                )
            try:
                tensors = [pb.Tensor("PROGRESS", err.status_tensor(self.model))]
                sender.send(pb.InferenceResponse(output_tensors=tensors), flags=0)
                sender.send(pb.InferenceResponse(error=err.triton_error(pb)), flags=final)
            except Exception:  # noqa: BLE001 - the stream may already be closed
                log.warning("event=error_not_sent model=%s", self.model.name if self.model else "?")

    def finalize(self) -> None:
        close = getattr(self.model, "close", None)  # a multi-GPU worker group stops its processes
        if close is not None:
            close()
        self.model = None
