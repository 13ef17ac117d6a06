"""Python SDK over objvid's real protocols: gRPC stubs for depth and cache, ``tritonclient`` for diffusion.

Every call has a deadline, carries the bearer token when one is set, waits for a server that is still
starting, and idempotent calls are retried on ``UNAVAILABLE`` by gRPC's own retry policy (see
:mod:`objvid.client.calls` for which calls and why). :class:`SceneSession` re-creates an evicted scene
transparently. Service failures surface as :class:`ServiceError` with the gRPC code and the server's
message. Streamed render frames are decoded without protobuf objects (:mod:`objvid.client.frames`).

    from objvid.client import ObjvidClient
    with ObjvidClient(depth_addr="127.0.0.1:50051", cache_addr="127.0.0.1:50052",
                      triton_addr="127.0.0.1:8001") as client:
        view = client.lift(image, width=1280, height=704)[0]
        ...
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import grpc
import numpy as np

from objvid.client.calls import Connections, Deadlines, RetryPolicy, service_error
from objvid.client.errors import ServiceError
from objvid.client.frame_render import FrameRenderer
from objvid.client.frames import LiftedView, RenderedFrame, frame_from_bytes
from objvid.client.session import SceneSession
from objvid.client.transport import Transport, check_token_transport
from objvid.client.triton import DiffusionClient, triton_headers
from objvid.runtime import channels, wire
from objvid.v1 import cache_pb2, cache_pb2_grpc, depth_pb2, depth_pb2_grpc, diffusion_pb2, types_pb2

log = logging.getLogger("objvid.client")

RENDER_MODES = {"fused": cache_pb2.RENDER_MODE_FUSED, "full": cache_pb2.RENDER_MODE_FULL,
                "scene": cache_pb2.RENDER_MODE_SCENE, "objects": cache_pb2.RENDER_MODE_OBJECTS}  # fmt: skip
RENDER_OUTPUTS = {"rgb": cache_pb2.RENDER_OUTPUT_RGB, "mask": cache_pb2.RENDER_OUTPUT_MASK,
                  "depth": cache_pb2.RENDER_OUTPUT_DEPTH, "object_mask": cache_pb2.RENDER_OUTPUT_OBJECT_MASK}  # fmt: skip
DEPTH_SERVICE, CACHE_SERVICE = "objvid.v1.DepthService", "objvid.v1.CacheService"
HEALTH_SERVICE = "grpc.health.v1.Health"


def new_key() -> str:
    """A fresh idempotency key (one per logical call; gRPC's retries of that call resend it)."""
    return uuid.uuid4().hex


class ObjvidClient:
    """Connections to the depth, cache and Triton servers (any may be None when a command does not need it).

    token: bearer token sent on every call; tls_ca: PEM path or bytes (TLS to every server when set);
    tls_cert / tls_key: a client certificate and its key (mTLS; PEM paths or bytes). A token is refused
    over plaintext to a non-loopback address unless ``allow_insecure_token`` (``objvid.client.transport``).
    render_transport: ``render``'s transport, ``auto`` (shared memory with a same-host cache server,
    else gRPC), ``shm`` or ``grpc``.
    """

    def __init__(
        self,
        depth_addr: str | None = None,
        cache_addr: str | None = None,
        triton_addr: str | None = None,
        *,
        token: str | None = None,
        tls_ca: str | Path | bytes | None = None,
        tls_cert: str | Path | bytes | None = None,
        tls_key: str | Path | bytes | None = None,
        allow_insecure_token: bool = False,
        deadlines: Deadlines | None = None,
        retry: RetryPolicy | None = None,
        render_transport: str = "auto",
    ):
        self.depth_addr, self.cache_addr, self.triton_addr = depth_addr, cache_addr, triton_addr
        self.token = token
        self.deadlines = deadlines or Deadlines()
        self.retry = retry or RetryPolicy()
        self.transport = Transport.load(tls_ca, tls_cert, tls_key)
        check_token_transport(
            token, self.transport, (depth_addr, cache_addr, triton_addr), allow_insecure_token
        )
        self._ca = self.transport.ca
        self._metadata = wire.bearer_metadata(token)
        self._channels: dict[str, grpc.Channel] = {}
        self._connections = Connections(self.retry, self._probe_channel)
        self.render_transport = render_transport  # per-frame Render: auto | shm | grpc (frame_render.py)
        self._frames: FrameRenderer | None = None
        self._depth = self._cache = self._render_stream = None
        if depth_addr:
            self._depth = depth_pb2_grpc.DepthServiceStub(self._channel(depth_addr))
        if cache_addr:
            channel = self._channel(cache_addr)
            self._cache = cache_pb2_grpc.CacheServiceStub(channel)
            # Raw response bytes: decoded by the zero-copy frame decoder, not by protobuf.
            self._render_stream = channel.unary_stream(
                f"/{CACHE_SERVICE}/RenderTrajectory",
                request_serializer=cache_pb2.RenderTrajectoryRequest.SerializeToString,
                response_deserializer=None,
            )
        self._diffusion = None
        if triton_addr:
            ca_path = str(tls_ca) if isinstance(tls_ca, str | Path) else None
            self._diffusion = DiffusionClient(triton_addr, ca=self._ca, ca_path=ca_path,
                                              cert=self.transport.cert, key=self.transport.key,
                                              headers=triton_headers(token), deadlines=self.deadlines,
                                              retry=self.retry)  # fmt: skip

    # -------------------------------------------------------------------------------- plumbing

    def _channel(self, address: str) -> grpc.Channel:
        if address not in self._channels:
            config = self.retry.service_config((DEPTH_SERVICE, CACHE_SERVICE, HEALTH_SERVICE))
            t = self.transport
            self._channels[address] = channels.make_channel(
                address, tls_ca=t.ca, tls_cert=t.cert, tls_key=t.key, service_config=config
            )
        return self._channels[address]

    def _probe_channel(self, address: str) -> grpc.Channel:
        """A channel to ``address`` without retries: why a server does not answer, at once (calls.probe)."""
        t = self.transport
        return channels.make_channel(address, tls_ca=t.ca, tls_cert=t.cert, tls_key=t.key)

    def _connected(self, address: str, service: str, method: str) -> None:
        """Wait for the server at ``address`` to accept calls (calls.Connections); UNAVAILABLE if it does not."""
        self._connections.wait(self._channel(address), address, service, method)

    def close(self) -> None:
        if self._frames is not None:
            self._frames.close()
            self._frames = None
        for ch in self._channels.values():
            ch.close()
        self._channels.clear()
        self.close_triton()

    def close_triton(self) -> None:
        if self._diffusion is not None:
            self._diffusion.close()

    def __enter__(self) -> ObjvidClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _need(self, stub, service: str):
        if stub is None:
            raise ServiceError(service, "connect", "FAILED_PRECONDITION", f"no {service} address configured")
        return stub

    def _call(self, service: str, method: str, request, timeout: float):
        """Unary call: waits for the server to accept connections, then sends once with the deadline and
        the bearer token (idempotent methods are retried by gRPC's policy, :mod:`objvid.client.calls`)."""
        address = self.depth_addr if service == "depth" else self.cache_addr
        stub = self._need(self._depth if service == "depth" else self._cache, service)
        self._connected(address, service, method)
        try:
            return getattr(stub, method)(request, timeout=timeout, metadata=self._metadata)
        except grpc.RpcError as err:
            raise service_error(service, method, err) from None

    def healthy(self, address: str, service: str = "") -> bool:
        """True when the gRPC server at ``address`` reports SERVING."""
        return channels.check_health(self._channel(address), service, timeout=self.deadlines.health)

    # -------------------------------------------------------------------------------- depth

    def lift(self, images: Sequence[np.ndarray | bytes], width: int = 0, height: int = 0,
             keep_aspect: bool = False, omit_image: bool = False) -> list[LiftedView]:  # fmt: skip
        """Images ((H, W, 3) uint8 arrays or PNG/JPEG bytes) -> one LiftedView each at width x height.

        omit_image: the server leaves the resized image out (3 bytes/pixel less to receive); a view's
        ``image`` is then the input array when that is already at the working size, else None.
        """
        req = depth_pb2.LiftRequest(
            width=width, height=height, keep_aspect=keep_aspect, omit_image=omit_image
        )
        for img in images:
            if isinstance(img, bytes | bytearray):
                req.images.add(encoded=bytes(img))
            else:
                req.images.append(wire.encode_image(np.ascontiguousarray(img)))
        resp = self._call("depth", "Lift", req, self.deadlines.lift)
        return [self._lifted(i, v, images[i], resp.model) for i, v in enumerate(resp.views)]

    def lift_views(self, images: Sequence[np.ndarray], width: int = 0, height: int = 0,
                   confidence_percentile: float = 0.0) -> list[LiftedView]:  # fmt: skip
        """N views of one static scene ((H, W, 3) uint8) -> posed LiftedViews (``w2c`` set, view 0 =
        identity) at width x height, from the depth service's geometry model (LiftViews)."""
        req = depth_pb2.LiftViewsRequest(
            width=width, height=height, confidence_percentile=confidence_percentile
        )
        for img in images:
            req.images.append(wire.encode_image(np.ascontiguousarray(img)))
        resp = self._call("depth", "LiftViews", req, self.deadlines.lift)
        views = []
        for i, pv in enumerate(resp.views):
            view = self._lifted(i, pv.view, images[i], resp.model)
            view.w2c = wire.decode_matrix(pv.world_to_camera, 4, 4, f"views[{i}].world_to_camera")
            views.append(view)
        return views

    @staticmethod
    def _lifted(i: int, v, given, model: str) -> LiftedView:
        depth = wire.decode_tensor(v.depth, f"views[{i}].depth", dtype=np.float32, ndim=2)
        mask = wire.decode_tensor(v.mask, f"views[{i}].mask", dtype=[np.bool_, np.uint8], ndim=2).astype(bool)
        K = wire.decode_matrix(v.intrinsics, 3, 3, f"views[{i}].intrinsics")
        if v.HasField("image"):
            image = np.array(wire.decode_image(v.image, f"views[{i}].image"))
        else:  # omit_image: the caller's own pixels, when they are at the working size
            image = given if isinstance(given, np.ndarray) and given.shape[:2] == depth.shape else None
        return LiftedView(image, np.array(depth), mask, K, model)

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

    def create_scene(self, view: cache_pb2.RgbdView | cache_pb2.RgbdViews, filter_points_threshold: float = 0.0,
                     scene_id: str = "", idempotency_key: str | None = None) -> cache_pb2.SceneInfo:  # fmt: skip
        """CreateScene with an idempotency key (a fresh one unless given): gRPC may resend it safely. ``view``:
        one RGB-D view, or N posed views (``RgbdViews``: a multi-view scene)."""
        source = {"views" if isinstance(view, cache_pb2.RgbdViews) else "rgbd": view}
        req = cache_pb2.CreateSceneRequest(filter_points_threshold=filter_points_threshold, scene_id=scene_id,
                                           idempotency_key=idempotency_key or new_key(), **source)  # fmt: skip
        return self._call("cache", "CreateScene", req, self.deadlines.create_scene).scene

    def create_video_scene(self, frames: list[cache_pb2.RgbdView], filter_points_threshold: float = 0.0,
                           scene_id: str = "", per_message: int = 4) -> cache_pb2.SceneInfo:  # fmt: skip
        """A video scene from posed RGB-D frames (in order), streamed ``per_message`` frames a message."""

        def requests():
            for a in range(0, len(frames), per_message):
                req = cache_pb2.CreateVideoSceneRequest(frames=frames[a : a + per_message])
                if a == 0:
                    req.scene_id, req.num_frames = scene_id, len(frames)
                    req.filter_points_threshold = filter_points_threshold
                yield req

        timeout = self.deadlines.create_scene * max(1, len(frames) // 8)
        return self._call("cache", "CreateVideoScene", requests(), timeout).scene

    def add_object(self, scene_id: str, data: bytes, filename: str, *, name: str = "",
                   transform: types_pb2.Transform | None = None, sample_points: int = 0,
                   idempotency_key: str | None = None) -> cache_pb2.ObjectInfo:  # fmt: skip
        """Object file bytes (.ply/.obj/.glb/.gltf/.stl, format from ``filename``) -> ObjectInfo. Sent with
        an idempotency key (a fresh one unless given): a resend never adds the object twice."""
        file = cache_pb2.ObjectFile(data=data, filename=filename, sample_points=sample_points)
        req = cache_pb2.AddObjectRequest(scene_id=scene_id, file=file, name=name,
                                         idempotency_key=idempotency_key or new_key())  # fmt: skip
        if transform is not None:
            req.transform.CopyFrom(transform)
        return self._call("cache", "AddObject", req, self.deadlines.unary).object

    def place_object(self, scene_id: str, object_id: int, anchor: tuple[float, float] | None = None,
                     height: float | None = None, scale: float | None = None) -> cache_pb2.ObjectInfo:  # fmt: skip
        req = cache_pb2.PlaceObjectRequest(scene_id=scene_id, object_id=object_id)
        if anchor is not None:
            req.anchor_u, req.anchor_v = float(anchor[0]), float(anchor[1])
        if height is not None:
            req.height = float(height)
        if scale is not None:  # scene units per object unit: real size
            req.scale = float(scale)
        return self._call("cache", "PlaceObject", req, self.deadlines.unary).object

    def update_object(
        self, scene_id: str, object_id: int, transform: types_pb2.Transform
    ) -> cache_pb2.ObjectInfo:
        req = cache_pb2.UpdateObjectRequest(scene_id=scene_id, object_id=object_id, transform=transform)
        return self._call("cache", "UpdateObject", req, self.deadlines.unary).object

    def update_scene(self, scene_id: str, view: cache_pb2.RgbdView, skip_alignment: bool = False,
                     idempotency_key: str | None = None) -> cache_pb2.UpdateSceneResponse:  # fmt: skip
        req = cache_pb2.UpdateSceneRequest(scene_id=scene_id, view=view, skip_alignment=skip_alignment,
                                           idempotency_key=idempotency_key or new_key())  # fmt: skip
        return self._call("cache", "UpdateScene", req, self.deadlines.update_scene)

    def get_scene(self, scene_id: str) -> cache_pb2.SceneInfo:
        req = cache_pb2.GetSceneRequest(scene_id=scene_id)
        return self._call("cache", "GetScene", req, self.deadlines.unary).scene

    def delete_scene(self, scene_id: str, timeout: float | None = None) -> None:
        req = cache_pb2.DeleteSceneRequest(scene_id=scene_id)
        self._call("cache", "DeleteScene", req, self.deadlines.unary if timeout is None else timeout)

    def export_scene(
        self, scene_id: str, exclude_objects: bool = False, object_id: int | None = None
    ) -> bytes:
        """Binary PLY of the scene (+ objects, world frame); object_id: only that object, in its own frame."""
        req = cache_pb2.ExportSceneRequest(scene_id=scene_id, exclude_objects=exclude_objects)
        if object_id is not None:
            req.object_id = object_id
        return self._call("cache", "ExportScene", req, self.deadlines.unary).ply

    @staticmethod
    def render_options(mode: str = "fused", outputs: Sequence[str] = ("rgb", "mask"), png: bool = False,
                       splat: str = "gen3c", object_radius_px: float = 0.0, pack_masks: bool = False,
                       depth_fp16: bool = False) -> cache_pb2.RenderOptions:  # fmt: skip
        """Cache render options; object_radius_px 0 = the cache server's default; pack_masks: masks travel
        as bits (decoded to the same arrays); depth_fp16: depth travels (and arrives) as float16."""
        if mode not in RENDER_MODES:
            raise ValueError(f"render mode must be one of {', '.join(RENDER_MODES)}, got {mode!r}")
        return cache_pb2.RenderOptions(
            mode=RENDER_MODES[mode],
            splat=cache_pb2.SPLAT_KIND_ZBUFFER if splat == "zbuffer" else cache_pb2.SPLAT_KIND_GEN3C,
            outputs=[RENDER_OUTPUTS[o] for o in outputs],
            encoding=cache_pb2.IMAGE_ENCODING_PNG if png else cache_pb2.IMAGE_ENCODING_RAW,
            object_radius_px=object_radius_px,
            pack_masks=pack_masks,
            depth_fp16=depth_fp16,
        )

    def render(self, scene_id: str, K: np.ndarray, w2c: np.ndarray, width: int, height: int,
               options: cache_pb2.RenderOptions, copy: bool = True) -> RenderedFrame:  # fmt: skip
        """One camera (K (3, 3), w2c (4, 4)) -> RenderedFrame; over shared memory when the cache server is
        on this host (``transport`` of the constructor, :mod:`objvid.client.frame_render`), else gRPC bytes.
        copy=False: shared-memory arrays are views valid until this thread's next ``render``."""
        if self._frames is None:
            channel = self._channel(self._need(self.cache_addr, "cache"))
            connect = functools.partial(self._connected, self.cache_addr, "cache", "Render")
            self._frames = FrameRenderer(channel, self.cache_addr, self._metadata, self.deadlines.unary,
                                         self.render_transport, connect)  # fmt: skip
        req = cache_pb2.RenderRequest(scene_id=scene_id, camera=wire.encode_camera(K, w2c, width, height),
                                      options=options)  # fmt: skip
        return self._frames.render(req, copy)

    def render_trajectory(self, scene_id: str, Ks: np.ndarray, w2cs: np.ndarray, width: int, height: int,
                          options: cache_pb2.RenderOptions, start_frame: int = 0,
                          object_tracks: list[cache_pb2.ObjectTrack] = ()) -> Iterator[RenderedFrame]:  # fmt: skip
        """Stream the renders of cameras Ks (T, 3, 3) / w2cs (T, 4, 4), in order (frame.index = 0..T-1).
        Video scenes: camera f renders source frame ``start_frame + f``; ``object_tracks`` per-frame poses.

        A stream broken by UNAVAILABLE after some frames is reopened for the cameras not yet received
        (at most ``retry.attempts`` times; gRPC itself retries only before the first frame).
        """
        call = self._need(self._render_stream, "cache")
        cams = [wire.encode_camera(K, w, width, height) for K, w in zip(Ks, w2cs, strict=True)]
        done, reopened = 0, 0
        while done < len(cams):
            req = cache_pb2.RenderTrajectoryRequest(scene_id=scene_id, cameras=cams[done:], options=options,
                                                    start_frame=start_frame + done if start_frame or object_tracks
                                                    else 0, object_tracks=object_tracks)  # fmt: skip
            timeout = self.deadlines.render_base + self.deadlines.render_per_frame * (len(cams) - done)
            self._connected(self.cache_addr, "cache", "RenderTrajectory")
            stream = call(req, timeout=timeout, metadata=self._metadata)
            before = done
            try:
                for data in stream:
                    yield frame_from_bytes(data, done)
                    done += 1
            except grpc.RpcError as err:
                resumable = err.code() == grpc.StatusCode.UNAVAILABLE and done > before
                if not resumable or reopened + 1 >= self.retry.attempts:
                    raise service_error("cache", "RenderTrajectory", err, partial=done > 0) from None
                reopened += 1
                log.info("event=render_resume from=%d attempt=%d", done, reopened)
                continue
            finally:
                stream.cancel()
            if done < len(cams):
                raise ServiceError("cache", "RenderTrajectory", "DATA_LOSS",
                                   f"stream ended after {done} of {len(cams)} frames")  # fmt: skip

    # -------------------------------------------------------------------------------- diffusion

    def _diffusion_client(self) -> DiffusionClient:
        if self._diffusion is None:
            raise ServiceError("diffusion", "connect", "FAILED_PRECONDITION", "no Triton address configured")
        return self._diffusion

    def triton_ready(self, model: str | None = None) -> bool:
        """True when Triton is ready (and ``model`` is loaded and ready)."""
        return self._diffusion_client().ready(model)

    def check_model(self, model: str) -> None:
        """ServiceError unless Triton serves ``model``: ``UNAVAILABLE`` (no server there, or not ready) or
        ``NOT_FOUND`` (the model is not loaded); a run checks this before its first chunk's work."""
        self._diffusion_client().check_ready(model)

    def generate_chunk(self, model: str, first_frame: np.ndarray, renders: np.ndarray | None,
                       masks: np.ndarray | None, options: diffusion_pb2.GenerateOptions | None = None,
                       on_progress: Callable[[diffusion_pb2.GenerateProgress], None] | None = None,
                       source: diffusion_pb2.RenderSource | None = None,
                       ) -> tuple[np.ndarray, diffusion_pb2.GenerateProgress | None]:  # fmt: skip
        """One chunk through Triton's streaming API (sent once, see :mod:`objvid.client.triton`).

        first_frame (H, W, 3) uint8; renders (T, N, H, W, 3) uint8; masks (T, N, H, W) uint8 (1 = rendered).
        renders = masks = None with ``source`` (``render_source``): the model fetches the renders from its
        cache itself; they never pass through this client.
        Returns (video (T, H, W, 3) uint8, the last progress message).
        """
        return self._diffusion_client().generate_chunk(
            model, first_frame, renders, masks, options, on_progress, source
        )

    @staticmethod
    def render_source(scene_id: str, Ks: np.ndarray, w2cs: np.ndarray, width: int, height: int,
                      options: cache_pb2.RenderOptions | None = None) -> diffusion_pb2.RenderSource:  # fmt: skip
        """A chunk's renders by reference (scene + cameras), for ``generate_chunk(..., source=...)``."""
        cams = [wire.encode_camera(K, w, width, height) for K, w in zip(Ks, w2cs, strict=True)]
        return diffusion_pb2.RenderSource(scene_id=scene_id, cameras=cams, options=options)


__all__ = ["Deadlines", "LiftedView", "ObjvidClient", "RenderedFrame", "RetryPolicy", "SceneSession"]
