"""The SDK against a real cache server on 127.0.0.1: scene rebuild on NOT_FOUND, retries on UNAVAILABLE,
deadlines, bearer token and TLS."""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import threading
import time
from concurrent import futures

import grpc
import numpy as np
import pytest
from cache_service_helpers import cube_cloud, make_certs, rgbd, start
from net_helpers import free_ports

from objvid.client import Deadlines, ObjvidClient, RetryPolicy, SceneSession, ServiceError
from objvid.client.placement import parse_object_pose
from objvid.client.ply import ply_bytes
from objvid.v1 import cache_pb2


@pytest.fixture(scope="module")
def server():
    s = start()
    yield s
    s.stop(0)


@pytest.fixture
def client(server):
    c = ObjvidClient(cache_addr=server.address)
    yield c
    c.close()


def _view(client):
    image, depth, K = rgbd()
    return client.rgbd_view(image, depth, K), K


def _cams(K, n=3):
    w2cs = np.stack([np.eye(4)] * n)
    w2cs[:, 0, 3] = np.linspace(0, 0.1, n)
    return np.stack([K] * n), w2cs


def _render(session, K, h, w):
    Ks, w2cs = _cams(K)
    opts = session.client.render_options("fused", ("rgb", "mask", "object_mask"))
    return list(session.render_trajectory(Ks, w2cs, w, h, opts))


def test_scene_session_rebuilds_an_evicted_scene(client):
    view, K = _view(client)
    h, w = view.depth.shape[0], view.depth.shape[1]
    session = SceneSession(client, view)
    session.create()
    pts, cols = cube_cloud()
    session.add_object(ply_bytes(pts, cols), "cube.ply", "cube")
    session.update_object(0, parse_object_pose("0,0.2,1.5"))
    session.update_scene(view, skip_alignment=True)  # a second buffer slot, replayed on rebuild
    before = _render(session, K, h, w)
    assert [f.index for f in before] == [0, 1, 2] and before[0].rgb.shape == (2, h, w, 3)
    assert (before[0].object_mask >= 0).any()

    client.delete_scene(session.scene_id)  # what an eviction looks like to the client
    after = _render(session, K, h, w)
    assert session.rebuilds == 1
    for a, b in zip(before, after, strict=True):
        np.testing.assert_array_equal(a.rgb, b.rgb)
        np.testing.assert_array_equal(a.mask, b.mask)
        assert ((a.object_mask >= 0) == (b.object_mask >= 0)).all()

    client.delete_scene(session.scene_id)
    info = session.update_object(0, parse_object_pose("0,0.2,1.6"))  # unary calls rebuild too
    assert session.rebuilds == 2 and info.object_id == session.object_ids[0]
    session.delete()
    session.delete()  # already gone: no error


def test_not_found_is_reported_with_the_server_message(client):
    with pytest.raises(ServiceError) as err:
        client.get_scene("no-such-scene")
    assert err.value.code == "NOT_FOUND" and "no-such-scene" in err.value.details


def test_a_call_waits_for_a_server_that_is_still_starting():
    """CreateScene is not idempotent (never resent), but it waits for the connection before it is sent."""
    port = free_ports(1)[0]
    holder = {}

    def late_start():
        time.sleep(1.0)
        from objvid.cache.server import CacheServer, ServerConfig

        holder["server"] = CacheServer(
            ServerConfig(host="127.0.0.1", port=port, device="cpu", memory_budget=1 << 30)
        )

    thread = threading.Thread(target=late_start)
    thread.start()
    client = ObjvidClient(
        cache_addr=f"127.0.0.1:{port}",
        retry=RetryPolicy(attempts=5, initial=0.2, maximum=1.0, connect_timeout=30.0),
    )
    try:
        view, _ = _view(client)
        t0 = time.monotonic()
        info = client.create_scene(view)
        assert info.scene_id and time.monotonic() - t0 > 0.5
    finally:
        client.close()
        thread.join()
        holder["server"].stop(0)


def test_grpc_retries_idempotent_calls_with_one_key():
    """gRPC's retry policy (service config) resends GetScene after UNAVAILABLE, and CreateScene too: it
    carries an idempotency key, the same in every attempt (the cache answers a resend with the first
    answer), so a retry can never create a second scene."""
    attempts = collections.Counter()
    keys = set()

    def failing_twice(method, response):
        def handle(request, context):
            attempts[method] += 1
            if method == "CreateScene":
                keys.add(cache_pb2.CreateSceneRequest.FromString(request).idempotency_key)
            if attempts[method] < 3:
                context.abort(grpc.StatusCode.UNAVAILABLE, "busy")
            return response

        return grpc.unary_unary_rpc_method_handler(
            handle, request_deserializer=lambda b: b, response_serializer=lambda m: m.SerializeToString()
        )

    server = grpc.server(futures.ThreadPoolExecutor(4))
    handlers = {"GetScene": failing_twice("GetScene", cache_pb2.GetSceneResponse()),
                "CreateScene": failing_twice("CreateScene", cache_pb2.CreateSceneResponse())}  # fmt: skip
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("objvid.v1.CacheService", handlers),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    client = ObjvidClient(
        cache_addr=f"127.0.0.1:{port}", retry=RetryPolicy(attempts=4, initial=0.01, maximum=0.05)
    )
    try:
        client.get_scene("s")
        assert attempts["GetScene"] == 3
        client.create_scene(cache_pb2.RgbdView())
        assert attempts["CreateScene"] == 3 and len(keys) == 1 and "" not in keys
    finally:
        client.close()
        server.stop(0)


def test_a_dead_address_fails_fast_with_grpc_reason_until_a_server_listens():
    """Nothing listens at the address: the default policy's first call waits FIRST_CONNECT_TIMEOUT (2 s),
    not the whole retry schedule (7.75 s) plus gRPC's resends, and says why (gRPC's reason); the next
    call does not wait again; once a server listens there, calls reach it."""
    port = free_ports(1)[0]
    client = ObjvidClient(cache_addr=f"127.0.0.1:{port}")
    try:
        t0 = time.monotonic()
        with pytest.raises(ServiceError) as err:
            client.get_scene("x")
        assert err.value.code == "UNAVAILABLE" and err.value.service == "cache"
        assert "Connection refused" in err.value.details and err.value.details.endswith("; waited 2 s")
        assert time.monotonic() - t0 < 10  # generous bound (it used to take ~11.5 s)
        with pytest.raises(ServiceError) as again:
            client.delete_scene("x")
        assert again.value.code == "UNAVAILABLE" and "waited" not in again.value.details
        from objvid.cache.server import CacheServer, ServerConfig

        server = CacheServer(ServerConfig(host="127.0.0.1", port=port, device="cpu", memory_budget=1 << 30))
        try:
            with pytest.raises(ServiceError) as found:
                client.get_scene("x")
            assert found.value.code == "NOT_FOUND"
        finally:
            server.stop(0)
    finally:
        client.close()


def test_unavailable_gives_up_with_a_clear_error():
    client = ObjvidClient(
        cache_addr=f"127.0.0.1:{free_ports(1)[0]}", retry=RetryPolicy(attempts=2, initial=0.05)
    )
    with pytest.raises(ServiceError) as err:
        client.get_scene("x")
    assert err.value.code == "UNAVAILABLE" and err.value.service == "cache"
    client.close()


def test_every_call_has_a_deadline(server, client):
    view, K = _view(client)
    scene_id = client.create_scene(view).scene_id
    slow = ObjvidClient(
        cache_addr=server.address, deadlines=Deadlines(render_base=0.02, render_per_frame=0.0)
    )
    Ks, w2cs = _cams(K, 400)
    h, w = view.depth.shape
    with pytest.raises(ServiceError) as err:
        list(slow.render_trajectory(scene_id, Ks, w2cs, w, h, slow.render_options()))
    assert err.value.code == "DEADLINE_EXCEEDED"
    slow.close()


def test_bearer_token_and_tls(tmp_path):
    certs = make_certs(tmp_path)
    server = start(token="s3cret", **certs.server())
    try:
        good = ObjvidClient(cache_addr=server.address, token="s3cret", tls_ca=tmp_path / "ca.pem")
        view, _ = _view(good)
        assert good.create_scene(view).scene_id
        no_token = ObjvidClient(cache_addr=server.address, tls_ca=certs["ca.pem"])
        with pytest.raises(ServiceError) as err:
            no_token.create_scene(view)
        assert err.value.code == "UNAUTHENTICATED"
        for c in (good, no_token):
            c.close()
    finally:
        server.stop(0)
    with pytest.raises(ValueError, match="--tls-ca .*cannot read"):
        ObjvidClient(cache_addr="127.0.0.1:1", tls_ca=tmp_path / "missing.pem")


def test_cli_reports_an_unreachable_service_in_one_line(tmp_path):
    from objvid.testing.assets import write_assets

    a = write_assets(tmp_path / "a", 64, 48, num_points=200)
    dead = f"127.0.0.1:{free_ports(1)[0]}"
    proc = subprocess.run(
        [sys.executable, "-m", "objvid.client", "render", "--image", a["image"], "--depth", a["depth"],
         "--intrinsics", a["intrinsics"], "--width", "64", "--height", "48", "--frames", "2",
         "--cache-addr", dead, "--out", str(tmp_path / "o.mp4")],
        capture_output=True, text=True, timeout=120, env=dict(os.environ, OBJVID_CLIENT_CONNECT_TIMEOUT="1.5"),
    )  # fmt: skip
    assert proc.returncode == 1
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("error: scene: cache service unreachable"), proc.stderr
    assert "Connection refused" in line and line.endswith("; waited 1.5 s)"), (
        line
    )  # OBJVID_CLIENT_CONNECT_TIMEOUT
    assert not (tmp_path / "o.mp4").exists()


def test_generate_checks_triton_before_any_depth_or_render_work(tmp_path):
    """Every address is dead: the first thing ``generate`` contacts is Triton (is the model served?), so
    a wrong --triton-addr fails at once instead of after the depth lifting and the chunk's renders."""
    from objvid.testing.assets import write_assets

    a = write_assets(tmp_path / "a", 64, 48, num_points=200)
    depth, cache, triton = (f"127.0.0.1:{p}" for p in free_ports(3))
    proc = subprocess.run(
        [sys.executable, "-m", "objvid.client", "generate", "--image", a["image"], "--object", a["object"], "--width", "64",
         "--height", "48", "--frames", "121", "--depth-addr", depth, "--cache-addr", cache,
         "--triton-addr", triton, "--out", str(tmp_path / "o.mp4")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1
    line = proc.stderr.strip().splitlines()[-1]
    assert (
        line.startswith("error: diffusion: diffusion service unreachable") and "Connection refused" in line
    ), proc.stderr
    m = json.loads((tmp_path / "o_work" / "manifest.json").read_text())
    assert m["status"] == "error" and set(m["timings"]) == {"inputs", "total"}, m["timings"]
    assert not (tmp_path / "o.mp4").exists()


class _CountingServer:
    """A real gRPC server on ``port``: a health service that counts its Check calls, and GetScene."""

    def __init__(self, port: int = 0):
        from grpc_health.v1 import health, health_pb2_grpc

        checks = self.checks = collections.Counter()

        class Counting(health.HealthServicer):
            def Check(self, request, context):
                checks["Check"] += 1
                return super().Check(request, context)

        self.server = grpc.server(futures.ThreadPoolExecutor(4))
        health_pb2_grpc.add_HealthServicer_to_server(Counting(), self.server)
        handler = grpc.unary_unary_rpc_method_handler(
            lambda request, context: cache_pb2.GetSceneResponse(),
            request_deserializer=lambda b: b, response_serializer=lambda m: m.SerializeToString(),
        )  # fmt: skip
        self.server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("objvid.v1.CacheService", {"GetScene": handler}),)
        )
        self.port = self.server.add_insecure_port(f"127.0.0.1:{port}")
        self.server.start()


def test_calls_skip_the_connection_wait_while_the_channel_is_ready():
    """Once the server has answered and the channel is READY, calls go out without a health check first
    (a round trip per call, per-frame Render included); after the server goes away the next call waits
    for the restarted one again (no gRPC retries here: only that wait makes the call succeed)."""
    first = _CountingServer()
    client = ObjvidClient(cache_addr=f"127.0.0.1:{first.port}",
                          retry=RetryPolicy(attempts=1, connect_timeout=10.0))  # fmt: skip
    try:
        client.get_scene("s")
        assert first.checks["Check"] == 1
        deadline = time.monotonic() + 5
        while not client._connections.connected(client.cache_addr) and time.monotonic() < deadline:
            time.sleep(0.01)  # the READY notice comes on gRPC's own thread
        for _ in range(20):
            client.get_scene("s")
        assert first.checks["Check"] == 1

        first.server.stop(0).wait()
        time.sleep(0.5)  # the channel notices the closed connection and leaves READY
        assert not client._connections.connected(client.cache_addr)
        holder = {}
        late = threading.Timer(0.5, lambda: holder.setdefault("s", _CountingServer(first.port)))
        late.start()
        t0 = time.monotonic()
        client.get_scene("s")  # waits for the restarted server instead of failing UNAVAILABLE
        late.join()
        assert time.monotonic() - t0 > 0.3 and holder["s"].checks["Check"] >= 1
        holder["s"].server.stop(0)
    finally:
        client.close()
