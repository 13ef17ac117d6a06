"""Python SDK over objvid's real protocols: gRPC stubs for depth and cache, ``tritonclient`` for diffusion.

Every call has a deadline, is retried with exponential backoff on ``UNAVAILABLE``, and carries the bearer
token when one is set. :class:`SceneSession` keeps what it needs to rebuild a scene (inputs, objects and
their final transforms, buffer updates) and re-creates it transparently on ``NOT_FOUND`` (an evicted
scene). Service failures surface as :class:`ServiceError` with the gRPC code and the server's message.

    from objvid.client import ObjvidClient
    with ObjvidClient(depth_addr="127.0.0.1:50051", cache_addr="127.0.0.1:50052",
                      triton_addr="127.0.0.1:8001") as client:
        view = client.lift(image, width=1280, height=704)[0]
        ...
"""

from __future__ import annotations

import logging
import queue
import random
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np

from objvid import wire
from objvid.client.errors import ServiceError
from objvid.v1 import cache_pb2, cache_pb2_grpc, depth_pb2, depth_pb2_grpc, diffusion_pb2, types_pb2

log = logging.getLogger("objvid.client")

RENDER_MODES = {"fused": cache_pb2.RENDER_MODE_FUSED, "full": cache_pb2.RENDER_MODE_FULL,
                "scene": cache_pb2.RENDER_MODE_SCENE, "objects": cache_pb2.RENDER_MODE_OBJECTS}  # fmt: skip


@dataclass(frozen=True)
class Deadlines:
    """Per-call deadlines in seconds (the client never waits forever)."""

    health: float = 5.0
    lift: float = 900.0
    create_scene: float = 300.0
    unary: float = 120.0
    update_scene: float = 900.0
    render_base: float = 120.0
    render_per_frame: float = 30.0
    generate_chunk: float = 4 * 3600.0


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff for UNAVAILABLE: attempts in total, first delay, growth, cap (seconds), +-jitter fraction."""

    attempts: int = 6
    initial: float = 0.25
    multiplier: float = 2.0
    maximum: float = 8.0
    jitter: float = 0.2

    def delays(self) -> Iterator[float]:
        delay = self.initial
        for _ in range(self.attempts - 1):
            yield delay * (1 + self.jitter * (2 * random.random() - 1))
            delay = min(delay * self.multiplier, self.maximum)


@dataclass
class LiftedView:
    """A lifted image. image (H, W, 3) uint8 (None: omitted, see ``ObjvidClient.lift``); depth (H, W)
    float32; mask (H, W) bool; K (3, 3) pixels."""

    image: np.ndarray | None
    depth: np.ndarray
    mask: np.ndarray
    K: np.ndarray
    model: str = ""


@dataclass
class RenderedFrame:
    """One rendered camera. rgb (N, H, W, 3) uint8 and mask (N, H, W) uint8 (1 = rendered) per buffer slot
    (newest first); depth (N, H, W) float32 and object_mask (N, H, W) int16 (-1 = none) when requested."""

    index: int
    rgb: np.ndarray | None = None
    mask: np.ndarray | None = None
    depth: np.ndarray | None = None
    object_mask: np.ndarray | None = None


def _read_ca(tls_ca: str | Path | bytes | None) -> bytes | None:
    if tls_ca is None or isinstance(tls_ca, bytes):
        return tls_ca
    try:
        return Path(tls_ca).read_bytes()
    except OSError as exc:
        raise ValueError(f"--tls-ca {tls_ca}: cannot read ({exc.strerror or exc})") from None


def _service_error(service: str, method: str, err: grpc.RpcError) -> ServiceError:
    code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    details = err.details() if hasattr(err, "details") else str(err)
    return ServiceError(service, method, code.name if code else "UNKNOWN", details or "")


def decode_frame(msg: cache_pb2.Frame) -> RenderedFrame:
    """``objvid.v1.Frame`` -> RenderedFrame (arrays view the message bytes where possible)."""
    out = RenderedFrame(int(msg.index))
    if len(msg.rgb):
        out.rgb = np.stack([wire.decode_image(img, f"frame[{msg.index}].rgb") for img in msg.rgb])
    if len(msg.mask):
        out.mask = np.stack(
            [wire.decode_image(m, f"frame[{msg.index}].mask", grayscale=True) for m in msg.mask]
        )
        if msg.mask[0].WhichOneof("content") == "encoded":  # PNG masks are 255 / 0
            out.mask = (out.mask > 127).astype(np.uint8)
    if msg.HasField("depth"):
        out.depth = wire.decode_tensor(msg.depth, "frame.depth", dtype=np.float32, ndim=3)
    if msg.HasField("object_mask"):
        out.object_mask = wire.decode_tensor(msg.object_mask, "frame.object_mask", dtype=np.int16, ndim=3)
    return out


class ObjvidClient:
    """Connections to the depth, cache and Triton servers (any may be None when a command does not need it).

    token: bearer token sent on every call; tls_ca: PEM path or bytes (TLS to every server when set).
    """

    def __init__(
        self,
        depth_addr: str | None = None,
        cache_addr: str | None = None,
        triton_addr: str | None = None,
        *,
        token: str | None = None,
        tls_ca: str | Path | bytes | None = None,
        deadlines: Deadlines | None = None,
        retry: RetryPolicy | None = None,
    ):
        self.depth_addr, self.cache_addr, self.triton_addr = depth_addr, cache_addr, triton_addr
        self.token = token
        self.deadlines = deadlines or Deadlines()
        self.retry = retry or RetryPolicy()
        self._ca = _read_ca(tls_ca)
        self._ca_path = str(tls_ca) if isinstance(tls_ca, str | Path) else None
        self._metadata = wire.bearer_metadata(token)
        self._channels: dict[str, grpc.Channel] = {}
        self._depth = self._cache = None
        self._triton = None
        if depth_addr:
            self._depth = depth_pb2_grpc.DepthServiceStub(self._channel(depth_addr))
        if cache_addr:
            self._cache = cache_pb2_grpc.CacheServiceStub(self._channel(cache_addr))

    # -------------------------------------------------------------------------------- plumbing

    def _channel(self, address: str) -> grpc.Channel:
        if address not in self._channels:
            self._channels[address] = wire.make_channel(address, tls_ca=self._ca)
        return self._channels[address]

    def close(self) -> None:
        for ch in self._channels.values():
            ch.close()
        self._channels.clear()
        if self._triton is not None:
            try:
                self._triton.close()
            except Exception:  # noqa: BLE001 - closing is best effort
                pass
            self._triton = None

    def __enter__(self) -> ObjvidClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _need(self, stub, service: str):
        if stub is None:
            raise ServiceError(service, "connect", "FAILED_PRECONDITION", f"no {service} address configured")
        return stub

    def _call(self, service: str, method: str, fn: Callable, request, timeout: float):
        """Unary call with deadline, bearer token and backoff on UNAVAILABLE."""
        delays = self.retry.delays()
        while True:
            try:
                return fn(request, timeout=timeout, metadata=self._metadata)
            except grpc.RpcError as err:
                if err.code() == grpc.StatusCode.UNAVAILABLE:
                    delay = next(delays, None)
                    if delay is not None:
                        log.info("event=retry service=%s method=%s delay=%.2f", service, method, delay)
                        time.sleep(delay)
                        continue
                raise _service_error(service, method, err) from None

    def healthy(self, address: str, service: str = "") -> bool:
        """True when the gRPC server at ``address`` reports SERVING."""
        return wire.check_health(self._channel(address), service, timeout=self.deadlines.health)

    # -------------------------------------------------------------------------------- depth

    def lift(self, images: Sequence[np.ndarray | bytes], width: int = 0, height: int = 0,
             keep_aspect: bool = False, omit_image: bool = False) -> list[LiftedView]:  # fmt: skip
        """Images ((H, W, 3) uint8 arrays or PNG/JPEG bytes) -> one LiftedView each at width x height.

        omit_image: the server leaves the resized image out (3 bytes/pixel less to receive); a view's
        ``image`` is then the input array when that is already at the working size, else None.
        """
        stub = self._need(self._depth, "depth")
        req = depth_pb2.LiftRequest(
            width=width, height=height, keep_aspect=keep_aspect, omit_image=omit_image
        )
        for img in images:
            if isinstance(img, bytes | bytearray):
                req.images.add(encoded=bytes(img))
            else:
                req.images.append(wire.encode_image(np.ascontiguousarray(img)))
        resp = self._call("depth", "Lift", stub.Lift, req, self.deadlines.lift)
        views = []
        for i, v in enumerate(resp.views):
            depth = wire.decode_tensor(v.depth, f"views[{i}].depth", dtype=np.float32, ndim=2)
            mask = wire.decode_tensor(v.mask, f"views[{i}].mask", dtype=[np.bool_, np.uint8], ndim=2).astype(
                bool
            )
            K = wire.decode_matrix(v.intrinsics, 3, 3, f"views[{i}].intrinsics")
            if v.HasField("image"):
                image = np.array(wire.decode_image(v.image, f"views[{i}].image"))
            else:  # omit_image: the caller's own pixels, when they are at the working size
                given = images[i]
                same = isinstance(given, np.ndarray) and given.shape[:2] == depth.shape
                image = given if same else None
            views.append(LiftedView(image, np.array(depth), mask, K, resp.model))
        return views

    # -------------------------------------------------------------------------------- cache

    @staticmethod
    def rgbd_view(image: np.ndarray, depth: np.ndarray, K: np.ndarray, w2c: np.ndarray | None = None,
                  mask: np.ndarray | None = None) -> cache_pb2.RgbdView:  # fmt: skip
        """(H, W, 3) uint8, (H, W) float32 z-depth, K (3, 3), w2c (4, 4) (default I), mask (H, W) bool."""
        h, w = depth.shape
        view = cache_pb2.RgbdView(
            image=wire.encode_image(np.ascontiguousarray(image)),
            depth=wire.encode_tensor(np.asarray(depth, dtype=np.float32)),
            camera=wire.encode_camera(K, np.eye(4) if w2c is None else w2c, w, h),
        )
        if mask is not None:
            view.mask.CopyFrom(wire.encode_tensor(np.asarray(mask, dtype=bool)))
        return view

    def create_scene(self, view: cache_pb2.RgbdView, filter_points_threshold: float = 0.0,
                     scene_id: str = "") -> cache_pb2.SceneInfo:  # fmt: skip
        stub = self._need(self._cache, "cache")
        req = cache_pb2.CreateSceneRequest(
            rgbd=view, filter_points_threshold=filter_points_threshold, scene_id=scene_id
        )
        return self._call("cache", "CreateScene", stub.CreateScene, req, self.deadlines.create_scene).scene

    def add_object(self, scene_id: str, data: bytes, filename: str, *, name: str = "",
                   transform: types_pb2.Transform | None = None, sample_points: int = 0) -> cache_pb2.ObjectInfo:  # fmt: skip
        """Object file bytes (.ply/.obj/.glb/.gltf/.stl, format from ``filename``) -> ObjectInfo."""
        stub = self._need(self._cache, "cache")
        req = cache_pb2.AddObjectRequest(
            scene_id=scene_id, file=cache_pb2.ObjectFile(data=data, filename=filename, sample_points=sample_points),
            name=name,
        )  # fmt: skip
        if transform is not None:
            req.transform.CopyFrom(transform)
        return self._call("cache", "AddObject", stub.AddObject, req, self.deadlines.unary).object

    def place_object(self, scene_id: str, object_id: int, anchor: tuple[float, float] | None = None,
                     height: float | None = None) -> cache_pb2.ObjectInfo:  # fmt: skip
        stub = self._need(self._cache, "cache")
        req = cache_pb2.PlaceObjectRequest(scene_id=scene_id, object_id=object_id)
        if anchor is not None:
            req.anchor_u, req.anchor_v = float(anchor[0]), float(anchor[1])
        if height is not None:
            req.height = float(height)
        return self._call("cache", "PlaceObject", stub.PlaceObject, req, self.deadlines.unary).object

    def update_object(
        self, scene_id: str, object_id: int, transform: types_pb2.Transform
    ) -> cache_pb2.ObjectInfo:
        stub = self._need(self._cache, "cache")
        req = cache_pb2.UpdateObjectRequest(scene_id=scene_id, object_id=object_id, transform=transform)
        return self._call("cache", "UpdateObject", stub.UpdateObject, req, self.deadlines.unary).object

    def update_scene(self, scene_id: str, view: cache_pb2.RgbdView,
                     skip_alignment: bool = False) -> cache_pb2.UpdateSceneResponse:  # fmt: skip
        stub = self._need(self._cache, "cache")
        req = cache_pb2.UpdateSceneRequest(scene_id=scene_id, view=view, skip_alignment=skip_alignment)
        return self._call("cache", "UpdateScene", stub.UpdateScene, req, self.deadlines.update_scene)

    def get_scene(self, scene_id: str) -> cache_pb2.SceneInfo:
        stub = self._need(self._cache, "cache")
        req = cache_pb2.GetSceneRequest(scene_id=scene_id)
        return self._call("cache", "GetScene", stub.GetScene, req, self.deadlines.unary).scene

    def delete_scene(self, scene_id: str) -> None:
        stub = self._need(self._cache, "cache")
        req = cache_pb2.DeleteSceneRequest(scene_id=scene_id)
        self._call("cache", "DeleteScene", stub.DeleteScene, req, self.deadlines.unary)

    def export_scene(self, scene_id: str, exclude_objects: bool = False) -> bytes:
        stub = self._need(self._cache, "cache")
        req = cache_pb2.ExportSceneRequest(scene_id=scene_id, exclude_objects=exclude_objects)
        return self._call("cache", "ExportScene", stub.ExportScene, req, self.deadlines.unary).ply

    @staticmethod
    def render_options(mode: str = "fused", outputs: Sequence[str] = ("rgb", "mask"), png: bool = False,
                       splat: str = "gen3c", object_radius_px: float = 0.0) -> cache_pb2.RenderOptions:  # fmt: skip
        """Cache render options; object_radius_px 0 = the cache server's default."""
        if mode not in RENDER_MODES:
            raise ValueError(f"render mode must be one of {', '.join(RENDER_MODES)}, got {mode!r}")
        names = {"rgb": cache_pb2.RENDER_OUTPUT_RGB, "mask": cache_pb2.RENDER_OUTPUT_MASK,
                 "depth": cache_pb2.RENDER_OUTPUT_DEPTH, "object_mask": cache_pb2.RENDER_OUTPUT_OBJECT_MASK}  # fmt: skip
        return cache_pb2.RenderOptions(
            mode=RENDER_MODES[mode],
            splat=cache_pb2.SPLAT_KIND_ZBUFFER if splat == "zbuffer" else cache_pb2.SPLAT_KIND_GEN3C,
            outputs=[names[o] for o in outputs],
            encoding=cache_pb2.IMAGE_ENCODING_PNG if png else cache_pb2.IMAGE_ENCODING_RAW,
            object_radius_px=object_radius_px,
        )

    def render_trajectory(self, scene_id: str, Ks: np.ndarray, w2cs: np.ndarray, width: int, height: int,
                          options: cache_pb2.RenderOptions) -> Iterator[RenderedFrame]:  # fmt: skip
        """Stream the renders of cameras Ks (T, 3, 3) / w2cs (T, 4, 4), in order (frame.index = 0..T-1).

        On UNAVAILABLE the stream is reopened with backoff for the cameras not yet received.
        """
        stub = self._need(self._cache, "cache")
        cams = [wire.encode_camera(K, w, width, height) for K, w in zip(Ks, w2cs, strict=True)]
        done = 0
        delays = self.retry.delays()
        while done < len(cams):
            req = cache_pb2.RenderTrajectoryRequest(scene_id=scene_id, cameras=cams[done:], options=options)
            timeout = self.deadlines.render_base + self.deadlines.render_per_frame * (len(cams) - done)
            stream = stub.RenderTrajectory(req, timeout=timeout, metadata=self._metadata)
            try:
                for resp in stream:
                    frame = decode_frame(resp.frame)
                    frame.index = done
                    done += 1
                    yield frame
            except grpc.RpcError as err:
                if err.code() == grpc.StatusCode.UNAVAILABLE:
                    delay = next(delays, None)
                    if delay is not None:
                        log.info(
                            "event=retry service=cache method=RenderTrajectory from=%d delay=%.2f",
                            done,
                            delay,
                        )
                        time.sleep(delay)
                        continue
                raise _service_error("cache", "RenderTrajectory", err) from None
            finally:
                stream.cancel()
            if done < len(cams):
                raise ServiceError("cache", "RenderTrajectory", "DATA_LOSS",
                                   f"stream ended after {done} of {len(cams)} frames")  # fmt: skip

    # -------------------------------------------------------------------------------- triton

    def _triton_client(self):
        if self._triton is None:
            if not self.triton_addr:
                raise ServiceError(
                    "diffusion", "connect", "FAILED_PRECONDITION", "no Triton address configured"
                )
            import tritonclient.grpc as tgrpc

            self._triton = tgrpc.InferenceServerClient(
                self.triton_addr, ssl=self._ca is not None, root_certificates=self._triton_ca_path()
            )
        return self._triton

    def _triton_ca_path(self) -> str | None:
        if self._ca is None:
            return None
        if self._ca_path is None:  # tritonclient wants a file
            import tempfile

            f = tempfile.NamedTemporaryFile(prefix="objvid-ca-", suffix=".pem", delete=False)
            f.write(self._ca)
            f.close()
            self._ca_path = f.name
        return self._ca_path

    @property
    def _headers(self) -> dict[str, str] | None:
        return dict(self._metadata) or None

    def triton_ready(self, model: str | None = None) -> bool:
        """True when Triton is ready (and ``model`` is loaded and ready)."""
        from tritonclient.utils import InferenceServerException

        try:
            client = self._triton_client()
            ok = client.is_server_ready(headers=self._headers, client_timeout=self.deadlines.health)
            if ok and model:
                ok = client.is_model_ready(model, headers=self._headers, client_timeout=self.deadlines.health)
            return bool(ok)
        except InferenceServerException:
            return False

    def generate_chunk(
        self,
        model: str,
        first_frame: np.ndarray,
        renders: np.ndarray,
        masks: np.ndarray,
        options: diffusion_pb2.GenerateOptions | None = None,
        on_progress: Callable[[diffusion_pb2.GenerateProgress], None] | None = None,
    ) -> tuple[np.ndarray, diffusion_pb2.GenerateProgress | None]:
        """One chunk through Triton's streaming API.

        first_frame (H, W, 3) uint8; renders (T, N, H, W, 3) uint8; masks (T, N, H, W) uint8 (1 = rendered).
        Returns (video (T, H, W, 3) uint8, the last progress message). Retries UNAVAILABLE with backoff.
        """
        delays = self.retry.delays()
        while True:
            try:
                return self._stream_chunk(model, first_frame, renders, masks, options, on_progress)
            except ServiceError as err:
                if err.code == "UNAVAILABLE" and not err.partial:
                    delay = next(delays, None)
                    if delay is not None:
                        log.info("event=retry service=diffusion method=ModelStreamInfer delay=%.2f", delay)
                        time.sleep(delay)
                        self.close_triton()
                        continue
                raise

    def close_triton(self) -> None:
        if self._triton is not None:
            try:
                self._triton.close()
            except Exception:  # noqa: BLE001
                pass
            self._triton = None

    def _stream_chunk(self, model, first_frame, renders, masks, options, on_progress):
        import tritonclient.grpc as tgrpc
        from tritonclient.utils import InferenceServerException

        client = self._triton_client()
        inputs = []
        for name, arr in (("FIRST_FRAME", first_frame), ("RENDERS", renders), ("MASKS", masks)):
            arr = np.ascontiguousarray(arr, dtype=np.uint8)
            inp = tgrpc.InferInput(name, list(arr.shape), "UINT8")
            inp.set_data_from_numpy(arr)
            inputs.append(inp)
        opt = tgrpc.InferInput("OPTIONS", [1], "BYTES")
        opt.set_data_from_numpy(np.array([(options or diffusion_pb2.GenerateOptions()).SerializeToString()],
                                         dtype=np.object_))  # fmt: skip
        inputs.append(opt)
        responses: queue.Queue = queue.Queue()
        client.start_stream(
            callback=lambda result, error: responses.put((result, error)),
            stream_timeout=self.deadlines.generate_chunk,
            headers=self._headers,
        )
        got_any = False
        last: diffusion_pb2.GenerateProgress | None = None
        try:
            client.async_stream_infer(model, inputs)
            deadline = time.monotonic() + self.deadlines.generate_chunk
            while True:
                try:
                    result, error = responses.get(timeout=max(0.1, deadline - time.monotonic()))
                except queue.Empty:
                    raise ServiceError("diffusion", model, "DEADLINE_EXCEEDED",
                                       f"no video after {self.deadlines.generate_chunk:.0f} s", partial=got_any) from None  # fmt: skip
                if error is not None:
                    raise _triton_error(model, error, got_any)
                got_any = True
                progress = result.as_numpy("PROGRESS")
                if progress is not None and progress.size:
                    last = diffusion_pb2.GenerateProgress.FromString(_as_bytes(progress.reshape(-1)[0]))
                    if on_progress is not None:
                        on_progress(last)
                video = result.as_numpy("VIDEO")
                if video is not None and video.size:
                    return video, last
        except InferenceServerException as exc:
            raise _triton_error(model, exc, got_any) from None
        finally:
            try:
                client.stop_stream(cancel_requests=True)
            except Exception:  # noqa: BLE001 - the stream may already be gone
                pass


def _as_bytes(value) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    return bytes(value)


_TRITON_CODES = ("INVALID_ARGUMENT", "RESOURCE_EXHAUSTED", "CANCELLED", "INTERNAL", "UNAVAILABLE",
                 "DEADLINE_EXCEEDED", "UNAUTHENTICATED", "NOT_FOUND")  # fmt: skip
_CODE_LINE = re.compile(r"\b(" + "|".join(_TRITON_CODES) + r"): (.+)")


def _triton_error(model: str, exc, partial: bool) -> ServiceError:
    """A tritonclient exception -> ServiceError with the model's own ``CODE: reason`` line when present
    (PyTriton prefixes it with a server-side traceback, which is dropped here)."""
    status = str(exc.status() or "") if hasattr(exc, "status") else ""
    message = (exc.message() if hasattr(exc, "message") else str(exc)) or status
    found = _CODE_LINE.findall(message)
    if found:
        code, reason = found[-1]
        return ServiceError("diffusion", model, code, reason.strip(), partial=partial)
    code = next((name for name in _TRITON_CODES if name in status), "UNKNOWN")
    if "unknown model" in message or "is not found" in message:
        code = "NOT_FOUND"
    last = [line.strip() for line in message.strip().splitlines() if line.strip()]
    return ServiceError("diffusion", model, code, last[-1] if last else status, partial=partial)


# ---------------------------------------------------------------------------------------------------
# A scene that survives eviction


@dataclass
class _ObjectRecipe:
    data: bytes
    filename: str
    name: str
    transform: types_pb2.Transform | None = None  # the latest known object-to-world transform
    object_id: int = -1


@dataclass
class SceneSession:
    """A cache scene plus its recipe; calls that fail with NOT_FOUND rebuild the scene and retry once.

    The rebuild replays CreateScene, every object at its latest transform (so placement is not re-run)
    and every UpdateScene in order. ``object_ids`` maps the caller's object index to the server's id.
    """

    client: ObjvidClient
    view: cache_pb2.RgbdView
    filter_points_threshold: float = 0.0
    scene_id: str = ""
    objects: list[_ObjectRecipe] = field(default_factory=list)
    updates: list[tuple[cache_pb2.RgbdView, bool]] = field(default_factory=list)
    info: cache_pb2.SceneInfo | None = None
    rebuilds: int = 0

    def create(self) -> cache_pb2.SceneInfo:
        self.info = self.client.create_scene(self.view, self.filter_points_threshold, self.scene_id)
        self.scene_id = self.info.scene_id
        return self.info

    def _rebuild(self) -> None:
        log.warning("event=scene_rebuild scene=%s objects=%d updates=%d", self.scene_id, len(self.objects),
                    len(self.updates))  # fmt: skip
        self.rebuilds += 1
        self.create()
        for obj in self.objects:
            info = self.client.add_object(
                self.scene_id, obj.data, obj.filename, name=obj.name, transform=obj.transform
            )
            obj.object_id = info.object_id
        for view, skip in self.updates:
            self.client.update_scene(self.scene_id, view, skip)

    def _with_rebuild(self, fn: Callable):
        try:
            return fn()
        except ServiceError as err:
            if err.code != "NOT_FOUND" or err.service != "cache":
                raise
        self._rebuild()
        return fn()

    @property
    def object_ids(self) -> list[int]:
        return [o.object_id for o in self.objects]

    def add_object(self, data: bytes, filename: str, name: str = "",
                   transform: types_pb2.Transform | None = None) -> cache_pb2.ObjectInfo:  # fmt: skip
        recipe = _ObjectRecipe(data, filename, name, transform)
        info = self._with_rebuild(lambda: self.client.add_object(self.scene_id, data, filename, name=name,
                                                                 transform=transform))  # fmt: skip
        recipe.object_id = info.object_id
        recipe.transform = types_pb2.Transform(matrix=info.transform)
        self.objects.append(recipe)
        return info

    def _record(self, index: int, info: cache_pb2.ObjectInfo) -> cache_pb2.ObjectInfo:
        self.objects[index].transform = types_pb2.Transform(matrix=info.transform)
        return info

    def place_object(self, index: int, anchor=None, height=None) -> cache_pb2.ObjectInfo:
        info = self._with_rebuild(lambda: self.client.place_object(self.scene_id, self.objects[index].object_id,
                                                                   anchor, height))  # fmt: skip
        return self._record(index, info)

    def update_object(self, index: int, transform: types_pb2.Transform) -> cache_pb2.ObjectInfo:
        info = self._with_rebuild(lambda: self.client.update_object(self.scene_id, self.objects[index].object_id,
                                                                    transform))  # fmt: skip
        return self._record(index, info)

    def update_scene(
        self, view: cache_pb2.RgbdView, skip_alignment: bool = False
    ) -> cache_pb2.UpdateSceneResponse:
        resp = self._with_rebuild(lambda: self.client.update_scene(self.scene_id, view, skip_alignment))
        self.updates.append((view, skip_alignment))
        self.info = resp.scene
        return resp

    def render_trajectory(self, Ks, w2cs, width, height, options) -> Iterator[RenderedFrame]:
        """Like ObjvidClient.render_trajectory; on NOT_FOUND rebuilds and resumes at the next frame."""
        done = 0
        rebuilt = False
        while True:
            try:
                for frame in self.client.render_trajectory(self.scene_id, Ks[done:], w2cs[done:], width, height,
                                                           options):  # fmt: skip
                    frame.index = done
                    done += 1
                    yield frame
                return
            except ServiceError as err:
                if err.code != "NOT_FOUND" or rebuilt:
                    raise
                rebuilt = True
                self._rebuild()

    def delete(self) -> None:
        try:
            self.client.delete_scene(self.scene_id)
        except ServiceError as err:
            if err.code != "NOT_FOUND":
                raise
