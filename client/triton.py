"""The diffusion service through Triton's KServe v2 gRPC API (``tritonclient``): readiness and one chunk
streamed (``ModelStreamInfer``, progress messages then the video).

The channel carries the project's message limits and gRPC's retry policy for Triton's readiness calls
(idempotent). A chunk is sent **once**: it is not idempotent in cost (minutes of GPU time) and a
retried stream could run it twice; before sending, the client checks that Triton and the model are
ready (those checks are retried by gRPC while Triton is unreachable).
"""

from __future__ import annotations

import queue
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np

from objvid.client.calls import Deadlines, RetryPolicy
from objvid.client.errors import ServiceError
from objvid.runtime.channels import CHANNEL_OPTIONS
from objvid.v1 import diffusion_pb2

TRITON_SERVICE = "inference.GRPCInferenceService"
#: The gRPC metadata key of Triton's protocol access token (``--token`` of ``objvid-diffusion serve``).
TRITON_TOKEN_HEADER = "triton-grpc-protocol-triton-access-token"


def triton_headers(token: str | None) -> dict[str, str] | None:
    """Call headers carrying ``token`` both ways Triton deployments check it: Triton's own access-token
    header (PyTriton's restricted protocols) and ``authorization: Bearer`` (a gateway in front of it)."""
    return {"authorization": f"Bearer {token}", TRITON_TOKEN_HEADER: token} if token else None


class DiffusionClient:
    """A Triton server at ``address``. ca: PEM bytes (TLS); ca_path: the same as a file, when known."""

    def __init__(self, address: str, *, ca: bytes | None = None, ca_path: str | None = None,
                 cert: bytes | None = None, key: bytes | None = None,
                 headers: dict[str, str] | None = None, deadlines: Deadlines | None = None,
                 retry: RetryPolicy | None = None):  # fmt: skip
        self.address = address
        self._ca, self._ca_path = ca, ca_path
        self._cert, self._key = cert, key  # mTLS: PEM bytes, written to files for tritonclient
        self._temp_files: list[str] = []
        self._headers = headers or None
        self.deadlines = deadlines or Deadlines()
        self.retry = retry or RetryPolicy()
        self._client = None

    def _connect(self):
        if self._client is None:
            import json

            import tritonclient.grpc as tgrpc

            # A chunk's request is large (121 frames of renders at 720p: ~440 MB): Triton's own limit
            # (2 GiB - 1), not the services' 256 MB.
            options = [(k, v) for k, v in CHANNEL_OPTIONS if "message_length" not in k]
            options += [("grpc.max_send_message_length", tgrpc.MAX_GRPC_MESSAGE_SIZE),
                        ("grpc.max_receive_message_length", tgrpc.MAX_GRPC_MESSAGE_SIZE)]  # fmt: skip
            config = self.retry.service_config((TRITON_SERVICE,))
            if config is not None:
                options += [("grpc.service_config", json.dumps(config)), ("grpc.enable_retries", 1)]
            self._client = tgrpc.InferenceServerClient(self.address, ssl=self._ca is not None,
                                                       root_certificates=self._ca_file(),
                                                       private_key=self._pem_file(self._key, "key"),
                                                       certificate_chain=self._pem_file(self._cert, "cert"),
                                                       channel_args=options)  # fmt: skip
        return self._client

    def _ca_file(self) -> str | None:
        if self._ca is None:
            return None
        if self._ca_path is None:  # tritonclient wants a file
            with tempfile.NamedTemporaryFile(prefix="objvid-ca-", suffix=".pem", delete=False) as f:
                f.write(self._ca)
            self._ca_path = f.name
        return self._ca_path

    def _pem_file(self, data: bytes | None, what: str) -> str | None:
        """tritonclient reads PEM files: a private temporary file (mode 0600), removed by ``close``."""
        if data is None:
            return None
        with tempfile.NamedTemporaryFile(prefix=f"objvid-{what}-", suffix=".pem", delete=False) as f:
            f.write(data)
        self._temp_files.append(f.name)
        return f.name

    def close(self) -> None:
        for path in self._temp_files:
            Path(path).unlink(missing_ok=True)
        self._temp_files.clear()
        if self._client is not None:
            try:
                self._client.close()
            except Exception:  # noqa: BLE001 - closing is best effort
                pass
            self._client = None

    def ready(self, model: str | None = None) -> bool:
        """True when Triton is ready (and ``model`` is loaded and ready)."""
        from tritonclient.utils import InferenceServerException

        try:
            client = self._connect()
            ok = client.is_server_ready(headers=self._headers, client_timeout=self.deadlines.health)
            if ok and model:
                ok = client.is_model_ready(model, headers=self._headers, client_timeout=self.deadlines.health)
            return bool(ok)
        except InferenceServerException:
            return False

    def check_ready(self, model: str) -> None:
        """ServiceError unless Triton serves ``model`` (readiness calls are retried by gRPC's policy):
        ``UNAVAILABLE`` (no server, or not ready), ``NOT_FOUND`` (the model is not loaded and ready)."""
        from tritonclient.utils import InferenceServerException

        client = self._connect()
        kw = {"headers": self._headers, "client_timeout": self.deadlines.health}
        try:
            if not client.is_server_ready(**kw):
                raise ServiceError(
                    "diffusion", model, "UNAVAILABLE", f"Triton at {self.address} is not ready"
                )
            if not client.is_model_ready(model, **kw):
                raise ServiceError("diffusion", model, "NOT_FOUND",
                                   f"model {model!r} is not loaded and ready on Triton at {self.address}")  # fmt: skip
        except InferenceServerException as exc:
            raise triton_error(model, exc, False) from None

    def generate_chunk(self, model: str, first_frame: np.ndarray, renders: np.ndarray | None,
                       masks: np.ndarray | None, options: diffusion_pb2.GenerateOptions | None = None,
                       on_progress: Callable[[diffusion_pb2.GenerateProgress], None] | None = None,
                       source: diffusion_pb2.RenderSource | None = None,
                       ) -> tuple[np.ndarray, diffusion_pb2.GenerateProgress | None]:  # fmt: skip
        """One chunk. first_frame (H, W, 3) uint8; renders (T, N, H, W, 3) uint8; masks (T, N, H, W) uint8
        (1 = rendered); or, with renders = masks = None, ``source``: the model fetches them from its cache
        (RENDER_SOURCE, ``objvid.diffusion.cache_source``). Returns (video (T, H, W, 3) uint8, the last
        progress message)."""
        from tritonclient.utils import InferenceServerException

        client = self._connect()
        self.check_ready(model)
        inputs = _infer_inputs(first_frame, renders, masks, options, source)
        responses: queue.Queue = queue.Queue()
        client.start_stream(callback=lambda result, error: responses.put((result, error)),
                            stream_timeout=self.deadlines.generate_chunk, headers=self._headers)  # fmt: skip
        try:
            try:
                client.async_stream_infer(model, inputs)
            except InferenceServerException as exc:  # the stream broke: its own error came to the callback
                raise _delivered_error(responses, model) or triton_error(model, exc, False) from None
            return self._receive(responses, model, on_progress)
        finally:
            try:
                client.stop_stream(cancel_requests=True)
            except Exception:  # noqa: BLE001 - the stream may already be gone
                pass

    def _receive(self, responses: queue.Queue, model: str, on_progress) -> tuple[np.ndarray, object]:
        """Progress messages (passed to ``on_progress``) until the video; a failure raises ServiceError."""
        deadline = time.monotonic() + self.deadlines.generate_chunk
        last, got_any = None, False
        while True:
            try:
                result, error = responses.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise ServiceError("diffusion", model, "DEADLINE_EXCEEDED",
                                   f"no video after {self.deadlines.generate_chunk:.0f} s", partial=got_any) from None  # fmt: skip
            if error is not None:
                raise triton_error(model, error, got_any)
            got_any = True
            progress = _progress(result)
            if progress is not None:
                last = progress
                if _failed(progress):
                    raise progress_error(model, progress)
                if on_progress is not None:
                    on_progress(progress)
            video = result.as_numpy("VIDEO")
            if video is not None and video.size:
                return video, last


def _infer_inputs(first_frame, renders, masks, options, source=None) -> list:
    """The model's inputs (triton_io's layout): FIRST_FRAME, RENDERS, MASKS uint8 (or RENDER_SOURCE) and
    OPTIONS (bytes)."""
    import tritonclient.grpc as tgrpc

    inputs = []
    if source is not None:
        src = tgrpc.InferInput("RENDER_SOURCE", [1], "BYTES")
        src.set_data_from_numpy(np.array([source.SerializeToString()], dtype=np.object_))
        inputs.append(src)
    for name, arr in (("FIRST_FRAME", first_frame), ("RENDERS", renders), ("MASKS", masks)):
        if arr is None:
            continue
        arr = np.ascontiguousarray(arr, dtype=np.uint8)
        inp = tgrpc.InferInput(name, list(arr.shape), "UINT8")
        inp.set_data_from_numpy(arr)
        inputs.append(inp)
    opt = tgrpc.InferInput("OPTIONS", [1], "BYTES")
    opt.set_data_from_numpy(np.array([(options or diffusion_pb2.GenerateOptions()).SerializeToString()],
                                     dtype=np.object_))  # fmt: skip
    inputs.append(opt)
    return inputs


def input_bytes(first_frame, renders, masks, options=None, source=None) -> int:
    """Tensor bytes of one chunk's request as :func:`_infer_inputs` builds it (uint8 arrays; a BYTES element
    is its length prefix + payload); gRPC framing and tensor names are not counted."""
    arrays = sum(np.asarray(a).size for a in (first_frame, renders, masks) if a is not None)
    opts = len((options or diffusion_pb2.GenerateOptions()).SerializeToString()) + 4
    return int(arrays + opts + (len(source.SerializeToString()) + 4 if source is not None else 0))


def _delivered_error(responses: queue.Queue, model: str, wait_s: float = 1.0) -> ServiceError | None:
    """The error the stream callback received (waiting up to ``wait_s`` for it), if any."""
    try:
        _, error = responses.get(timeout=wait_s)
    except queue.Empty:
        return None
    return None if error is None else triton_error(model, error, False)


def _progress(result) -> diffusion_pb2.GenerateProgress | None:
    value = result.as_numpy("PROGRESS")
    if value is None or not value.size:
        return None
    raw = value.reshape(-1)[0]
    return diffusion_pb2.GenerateProgress.FromString(raw.encode() if isinstance(raw, str) else bytes(raw))


def _failed(progress: diffusion_pb2.GenerateProgress) -> bool:
    """True when the model reported a failure in this progress message (``status``, a GenerateStatus)."""
    return progress.HasField("status") and progress.status.code != 0


#: gRPC status code number -> name (the numbers of google.rpc.Code).
_CODE_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}


def progress_error(model: str, progress: diffusion_pb2.GenerateProgress) -> ServiceError:
    """A failure the model reported in its progress stream (``status.code``: a gRPC code number). Triton's
    own error response follows it; its text is not needed."""
    code = _CODE_NAMES.get(progress.status.code, "UNKNOWN")
    return ServiceError("diffusion", model, code, progress.status.message, partial=True)


def triton_error(model: str, exc, partial: bool) -> ServiceError:
    """A tritonclient exception (a transport or Triton-level failure) -> ServiceError with its gRPC
    status code (``exc.status()``, e.g. ``StatusCode.UNAVAILABLE``); UNKNOWN when Triton gave none."""
    status = str(exc.status() or "") if hasattr(exc, "status") else ""
    message = (exc.message() if hasattr(exc, "message") else str(exc)) or status
    code = status.rsplit(".", 1)[-1] if status.startswith("StatusCode.") else "UNKNOWN"
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    return ServiceError("diffusion", model, code, lines[-1] if lines else status, partial=partial)
