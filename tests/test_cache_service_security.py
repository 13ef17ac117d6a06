"""TLS, mutual TLS and the bearer token of the cache service; health and reflection stay open."""

from __future__ import annotations

import shutil

import grpc
import pytest
from cache_service_helpers import create_rgbd_scene, make_certs, running, stub_for
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from objvid.runtime import channels, wire
from objvid.v1 import cache_pb2, cache_pb2_grpc


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    if shutil.which("openssl") is None:
        pytest.skip("the openssl CLI is needed to make test certificates")
    return make_certs(tmp_path_factory.mktemp("certs"))


def _list(stub, **kw):
    return stub.ListScenes(cache_pb2.ListScenesRequest(), timeout=5, **kw)


def test_tls(certs):
    with running(**certs.server()) as server:
        channel, stub = stub_for(server, tls_ca=certs["ca.pem"])
        create_rgbd_scene(stub, scene_id="tls")
        assert [s.scene_id for s in _list(stub).scenes] == ["tls"]
        channel.close()
        plain = cache_pb2_grpc.CacheServiceStub(channels.make_channel(server.address))
        with pytest.raises(grpc.RpcError) as exc:
            _list(plain)
        assert exc.value.code() == grpc.StatusCode.UNAVAILABLE
        wrong_ca = cache_pb2_grpc.CacheServiceStub(
            channels.make_channel(server.address, tls_ca=certs["rogue.pem"])
        )
        with pytest.raises(grpc.RpcError) as exc:
            _list(wrong_ca)
        assert exc.value.code() == grpc.StatusCode.UNAVAILABLE


def test_mutual_tls(certs):
    with running(**certs.server(mtls=True)) as server:
        _, good = stub_for(
            server, tls_ca=certs["ca.pem"], tls_cert=certs["client.pem"], tls_key=certs["client.key"]
        )
        assert _list(good).scenes == []
        _, anonymous = stub_for(server, tls_ca=certs["ca.pem"])
        with pytest.raises(grpc.RpcError) as exc:
            _list(anonymous)
        assert exc.value.code() == grpc.StatusCode.UNAVAILABLE
        _, rogue = stub_for(
            server, tls_ca=certs["ca.pem"], tls_cert=certs["rogue.pem"], tls_key=certs["rogue.key"]
        )
        with pytest.raises(grpc.RpcError) as exc:
            _list(rogue)
        assert exc.value.code() == grpc.StatusCode.UNAVAILABLE


def test_bearer_token(certs):
    token = "s3cret-token"
    with running(token=token, **certs.server()) as server:
        channel, stub = stub_for(server, tls_ca=certs["ca.pem"])
        for metadata in (
            [],
            wire.bearer_metadata("wrong"),
            [("authorization", token)],
            [("authorization", "Bearer ")],
        ):
            with pytest.raises(grpc.RpcError) as exc:
                _list(stub, metadata=metadata)
            assert exc.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "bearer token" in exc.value.details()
        with pytest.raises(grpc.RpcError) as exc:  # streaming RPCs are guarded too
            list(stub.RenderTrajectory(cache_pb2.RenderTrajectoryRequest(scene_id="x"), timeout=5))
        assert exc.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert _list(stub, metadata=wire.bearer_metadata(token)).scenes == []
        assert server.metrics.count("ListScenes", "UNAUTHENTICATED") == 4
        # Probes and reflection need no token.
        assert channels.check_health(channel)
        assert channels.check_health(channel, "objvid.v1.CacheService")
        refl = reflection_pb2_grpc.ServerReflectionStub(channel)
        resp = next(
            refl.ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
            )
        )
        assert "objvid.v1.CacheService" in [s.name for s in resp.list_services_response.service]


def test_token_without_tls_is_refused_unless_allowed():
    with pytest.raises(ValueError, match="allow-insecure-token"):
        running(token="t").__enter__()
    with running(token="t", allow_insecure_token=True) as server:
        _, stub = stub_for(server)
        with pytest.raises(grpc.RpcError) as exc:
            _list(stub)
        assert exc.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert _list(stub, metadata=wire.bearer_metadata("t")).scenes == []
