"""Wire helpers: tensor/image/camera codecs and the shared gRPC server builder."""

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from objvid.runtime import channels, wire
from objvid.serving.config import ServingConfig
from objvid.serving.server import Binding, GrpcServer
from objvid.v1 import cache_pb2, cache_pb2_grpc, types_pb2


@pytest.mark.parametrize("dtype", wire.supported_dtypes(), ids=lambda d: d.name)
def test_tensor_round_trip_every_dtype(dtype):
    rng = np.random.default_rng(0)
    arr = (rng.random((3, 4, 2)) * 100).astype(dtype)
    msg = wire.encode_tensor(arr)
    out = wire.decode_tensor(types_pb2.Tensor.FromString(msg.SerializeToString()))
    assert out.dtype == arr.dtype.newbyteorder("=") or out.dtype == arr.dtype
    np.testing.assert_array_equal(out, arr)
    assert list(msg.shape) == [3, 4, 2]


def test_tensor_decode_is_zero_copy_and_readonly():
    msg = wire.encode_tensor(np.arange(12, dtype=np.float32).reshape(3, 4))
    out = wire.decode_tensor(msg)
    assert not out.flags.writeable
    assert out.base is not None


def test_tensor_big_endian_and_non_contiguous_inputs():
    arr = np.arange(6, dtype=">f4").reshape(2, 3)
    out = wire.decode_tensor(wire.encode_tensor(arr))
    np.testing.assert_array_equal(out, arr.astype("<f4"))
    sliced = np.arange(20, dtype=np.int32).reshape(4, 5)[:, ::2]
    np.testing.assert_array_equal(wire.decode_tensor(wire.encode_tensor(sliced)), sliced)


def test_tensor_from_torch():
    torch = pytest.importorskip("torch")
    t = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    np.testing.assert_array_equal(wire.decode_tensor(wire.encode_tensor(t)), t.numpy())


@pytest.mark.parametrize(
    "msg, match",
    [
        (types_pb2.Tensor(dtype=types_pb2.DTYPE_FLOAT32, shape=[2, 2], data=b"\0" * 15), "byte count 15"),
        (types_pb2.Tensor(dtype=99, shape=[1], data=b"\0"), "unknown dtype code 99"),
        (types_pb2.Tensor(dtype=types_pb2.DTYPE_UNSPECIFIED, shape=[1], data=b"\0"), "unknown dtype code 0"),
        (types_pb2.Tensor(dtype=types_pb2.DTYPE_UINT8, shape=[-1, 2], data=b""), "negative dimension"),
        (types_pb2.Tensor(dtype=types_pb2.DTYPE_UINT8, shape=[2**40, 2**40], data=b""), "overflows"),
        (types_pb2.Tensor(dtype=types_pb2.DTYPE_UINT8, shape=[], data=b""), "empty shape"),
    ],
)
def test_tensor_bad_input(msg, match):
    with pytest.raises(ValueError, match=match) as exc:
        wire.decode_tensor(msg, "depth")
    assert str(exc.value).startswith("depth:")


def test_tensor_expectations():
    msg = wire.encode_tensor(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="dtype must be uint8"):
        wire.decode_tensor(msg, "x", dtype=np.uint8)
    with pytest.raises(ValueError, match="expected 3 dims"):
        wire.decode_tensor(msg, "x", ndim=3)
    with pytest.raises(ValueError, match=r"expected shape \['\*', 4\]"):
        wire.decode_tensor(msg, "x", shape=[None, 4])
    with pytest.raises(ValueError, match="unsupported dtype complex64"):
        wire.encode_tensor(np.zeros(2, np.complex64), "x")


def test_image_codecs():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    np.testing.assert_array_equal(wire.decode_image(wire.encode_image(img, png=True)), img)
    np.testing.assert_array_equal(wire.decode_image(wire.encode_image(img)), img)
    mask = (rng.random((5, 7)) > 0.5).astype(np.uint8) * 255
    np.testing.assert_array_equal(wire.decode_image(wire.encode_image(mask, png=True), grayscale=True), mask)
    with pytest.raises(ValueError, match="images\\[2\\]: not a decodable image"):
        wire.decode_image(types_pb2.Image(encoded=b"not a png"), "images[2]")
    with pytest.raises(ValueError, match="img: missing"):
        wire.decode_image(types_pb2.Image(), "img")


def test_camera_codec():
    K = np.array([[100.0, 0, 32], [0, 100, 24], [0, 0, 1]])
    w2c = np.eye(4)
    w2c[0, 3] = 0.5
    K2, w2c2, w, h = wire.decode_camera(wire.encode_camera(K, w2c, 64, 48))
    np.testing.assert_array_equal(K2, K)
    np.testing.assert_array_equal(w2c2, w2c)
    assert (w, h) == (64, 48)
    bad = types_pb2.Camera(
        intrinsics=[1.0] * 8, world_to_camera=np.eye(4).ravel().tolist(), width=1, height=1
    )
    with pytest.raises(ValueError, match="cam.intrinsics: expected 9 values"):
        wire.decode_camera(bad, "cam")
    nan = wire.encode_camera(K, w2c, 4, 4)
    nan.world_to_camera[3] = float("nan")
    with pytest.raises(ValueError, match="world_to_camera: values must be finite"):
        wire.decode_camera(nan)


class _EmptyCache(cache_pb2_grpc.CacheServiceServicer):
    def ListScenes(self, request, context):
        return cache_pb2.ListScenesResponse()

    def GetScene(self, request, context):  # echoes the id: a large request gives a large response
        return cache_pb2.GetSceneResponse(scene=cache_pb2.SceneInfo(scene_id=request.scene_id))


def test_server_health_and_reflection():
    handle = GrpcServer(
        "empty",
        ServingConfig(host="127.0.0.1", port=0),
        [Binding(cache_pb2_grpc.add_CacheServiceServicer_to_server, _EmptyCache(), "objvid.v1.CacheService")],
    ).bind()
    try:
        channel = channels.make_channel(f"127.0.0.1:{handle.port}")
        assert not channels.check_health(channel)
        handle.set_serving(True)
        assert channels.check_health(channel)
        assert channels.check_health(channel, "objvid.v1.CacheService")
        health = health_pb2_grpc.HealthStub(channel)
        with pytest.raises(grpc.RpcError) as exc:
            health.Check(health_pb2.HealthCheckRequest(service="nope"), timeout=2)
        assert exc.value.code() == grpc.StatusCode.NOT_FOUND
        refl = reflection_pb2_grpc.ServerReflectionStub(channel)
        responses = list(
            refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        )
        names = {s.name for s in responses[0].list_services_response.service}
        assert {
            "objvid.v1.CacheService",
            "grpc.health.v1.Health",
            "grpc.reflection.v1alpha.ServerReflection",
        } <= names
        stub = cache_pb2_grpc.CacheServiceStub(channel)
        assert len(stub.ListScenes(cache_pb2.ListScenesRequest(), timeout=2).scenes) == 0
        # Messages larger than gRPC's default 4 MiB pass both ways.
        big_id = "x" * (6 << 20)
        reply = stub.GetScene(cache_pb2.GetSceneRequest(scene_id=big_id), timeout=10)
        assert reply.scene.scene_id == big_id
        channel.close()
    finally:
        handle.stop(0)


def test_channel_retry_policy_is_a_service_config():
    config = channels.retry_service_config("objvid.v1.CacheService", ["GetScene", "Render"], max_attempts=3)
    (method,) = config["methodConfig"]
    assert method["name"] == [{"service": "objvid.v1.CacheService", "method": "GetScene"},
                              {"service": "objvid.v1.CacheService", "method": "Render"}]  # fmt: skip
    assert method["retryPolicy"]["maxAttempts"] == 3
    assert method["retryPolicy"]["retryableStatusCodes"] == ["UNAVAILABLE"]
    with pytest.raises(ValueError, match="max_attempts"):
        channels.retry_service_config("s", ["m"], max_attempts=1)
    with pytest.raises(ValueError, match="tls_cert/tls_key"):
        channels.make_channel("127.0.0.1:1", tls_cert=b"pem")


class _FlakyCache(cache_pb2_grpc.CacheServiceServicer):
    """UNAVAILABLE for the first two ListScenes calls, then OK (a restarting backend, seen by gRPC's retry)."""

    def __init__(self):
        self.calls = 0

    def ListScenes(self, request, context):
        self.calls += 1
        if self.calls <= 2:
            context.abort(grpc.StatusCode.UNAVAILABLE, "warming up")
        return cache_pb2.ListScenesResponse()


def test_grpc_retries_idempotent_calls_on_unavailable():
    flaky = _FlakyCache()
    handle = GrpcServer(
        "flaky",
        ServingConfig(host="127.0.0.1", port=0),
        [Binding(cache_pb2_grpc.add_CacheServiceServicer_to_server, flaky, "objvid.v1.CacheService")],
    ).bind()
    try:
        retry = channels.retry_service_config(
            "objvid.v1.CacheService", ["ListScenes"], initial_backoff_s=0.01
        )
        with channels.make_channel(handle.address, service_config=retry) as channel:
            stub = cache_pb2_grpc.CacheServiceStub(channel)
            assert list(stub.ListScenes(cache_pb2.ListScenesRequest(), timeout=10).scenes) == []
        assert flaky.calls == 3
        flaky.calls = 0
        with channels.make_channel(handle.address) as channel:  # without the policy: the first failure shows
            with pytest.raises(grpc.RpcError) as exc:
                cache_pb2_grpc.CacheServiceStub(channel).ListScenes(cache_pb2.ListScenesRequest(), timeout=10)
            assert exc.value.code() == grpc.StatusCode.UNAVAILABLE and flaky.calls == 1
    finally:
        handle.stop(0)
