"""The client's side of issue 13 against a live cache server: the run's scene is deleted on success,
failure and interrupt; an interrupt after the run finished changes nothing; retries never duplicate;
mTLS with a client certificate; the token never travels in plaintext to a remote address unless allowed."""

from __future__ import annotations

import json
import shutil

import pytest
from cache_service_helpers import make_certs, running

from objvid.cache.requests import Limits
from objvid.client import pipeline
from objvid.client.errors import ObjvidError
from objvid.client.options import GenerateConfig
from objvid.client.ply import ply_bytes
from objvid.client.run import Reporter, Run
from objvid.client.sdk import ObjvidClient
from objvid.client.transport import Transport, check_token_transport, is_loopback
from objvid.testing import assets

W, H = 64, 48


@pytest.fixture(scope="module")
def room(tmp_path_factory) -> dict[str, str]:
    return assets.write_assets(tmp_path_factory.mktemp("assets"), W, H, num_points=300)


def _config(room, tmp_path, **kw) -> GenerateConfig:
    base = dict(image=room["image"], objects=[room["object"]], depth=room["depth"], intrinsics=room["intrinsics"],
                width=2 * W, height=2 * H, frames=5, backend="preview", object_poses=["0,0,2"], out=tmp_path / "o.mp4")  # fmt: skip
    base.update(kw)
    return GenerateConfig(**base)


class InterruptAt(Reporter):
    """A progress sink that raises KeyboardInterrupt (Ctrl-C) when ``stage`` reports progress."""

    def __init__(self, stage: str):
        self.stage = stage

    def update(self, stage, completed=None, total=None, text=None):
        if stage == self.stage:
            raise KeyboardInterrupt


def _scenes(server) -> list[str]:
    return [e.scene_id for e in server.store.entries()]


def _manifest(tmp_path) -> dict:
    return json.loads((tmp_path / "o_work" / "manifest.json").read_text())


def test_the_run_deletes_its_scene_on_success_failure_and_interrupt(room, tmp_path):
    with running(limits=Limits(max_cameras=4)) as server:
        client = ObjvidClient(cache_addr=server.address)
        try:
            ok = pipeline.render(_config(room, tmp_path / "ok", frames=3), client)
            assert ok["frames"] == 3 and _scenes(server) == []
            with pytest.raises(ObjvidError) as err:  # the cache refuses 5 cameras after the scene exists
                pipeline.render(_config(room, tmp_path, frames=5), client)
            assert "RESOURCE_EXHAUSTED" in str(err.value) and "--max-cameras" in str(err.value)
            assert _scenes(server) == [] and _manifest(tmp_path)["status"] == "error"
            with pytest.raises(KeyboardInterrupt):
                pipeline.render(_config(room, tmp_path, frames=3), client, InterruptAt("placement"))
            assert _scenes(server) == [] and _manifest(tmp_path)["status"] == "error"
        finally:
            client.close()
        assert server.metrics.count("DeleteScene", "OK") == 3


def test_an_interrupt_after_the_run_finished_keeps_it_a_success(tmp_path):
    """Ctrl-C / SIGTERM landing during teardown (or right after the manifest is written) leaves the exit
    status and the manifest consistent: the run succeeded."""
    cfg = GenerateConfig(image="a.png", out=tmp_path / "o.mp4")
    run = Run("render", cfg, client=None)
    torn = []

    def teardown():
        torn.append(1)
        raise KeyboardInterrupt  # a second Ctrl-C while the scene is being deleted

    def body(run: Run) -> dict:
        run.workdir.mkdir(parents=True)
        run.teardown(teardown)
        result = run.finish({"video": "o.mp4"})
        raise KeyboardInterrupt  # lands after finish(): the outputs are final
        return result

    result = run.execute(body)
    assert result["video"] == "o.mp4" and result["manifest"].endswith("manifest.json")
    assert _manifest(tmp_path)["status"] == "ok" and torn == [1]


def test_token_is_never_sent_in_plaintext_to_a_remote_address(tmp_path):
    plain = Transport()
    with pytest.raises(
        ValueError, match=r"--token: would be sent in plaintext to cache\.example:50052; give --tls-ca"
    ):
        check_token_transport("t", plain, ["127.0.0.1:1", "cache.example:50052"], allow_insecure=False)
    check_token_transport("t", plain, ["127.0.0.1:50052", "localhost:1", "[::1]:2"], allow_insecure=False)
    check_token_transport("t", plain, ["cache.example:50052"], allow_insecure=True)  # warns, allowed
    check_token_transport(None, plain, ["cache.example:50052"], allow_insecure=False)
    assert is_loopback("127.0.0.2:5") and not is_loopback("10.0.0.1:5") and not is_loopback("cache:5")
    with pytest.raises(ValueError, match="--token: would be sent in plaintext"):
        ObjvidClient(cache_addr="10.1.2.3:50052", token="secret")
    (tmp_path / "c.pem").write_bytes(b"x")
    with pytest.raises(ValueError, match=r"--tls-cert: a client certificate \(mTLS\) needs --tls-ca"):
        ObjvidClient(cache_addr="10.1.2.3:50052", tls_cert=tmp_path / "c.pem", tls_key=tmp_path / "c.pem")
    with pytest.raises(ValueError, match="give both or neither"):
        ObjvidClient(cache_addr="10.1.2.3:50052", tls_ca=tmp_path / "c.pem", tls_cert=tmp_path / "c.pem")


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    if shutil.which("openssl") is None:
        pytest.fail("the openssl CLI is needed to make test certificates")
    return make_certs(tmp_path_factory.mktemp("certs"))


def test_client_certificate_mtls(certs):
    with running(**certs.server(mtls=True)) as server:
        good = ObjvidClient(cache_addr=server.address, tls_ca=certs.path("ca.pem"),
                            tls_cert=certs.path("client.pem"), tls_key=certs.path("client.key"))  # fmt: skip
        try:
            with pytest.raises(Exception) as err:
                good.get_scene("none")
            assert getattr(err.value, "code", "") == "NOT_FOUND"  # authenticated: the server answered
        finally:
            good.close()
        anonymous = ObjvidClient(cache_addr=server.address, tls_ca=certs.path("ca.pem"))
        try:
            with pytest.raises(Exception) as err:
                anonymous.get_scene("none")
            assert getattr(err.value, "code", "") == "UNAVAILABLE"  # the handshake is refused
        finally:
            anonymous.close()


def test_sdk_retries_reuse_one_idempotency_key_against_the_real_cache(room):
    """A CreateScene resent with the same key (what gRPC's retry does) makes one scene."""
    import numpy as np

    from objvid.testing.assets import render_room

    with running() as server:
        client = ObjvidClient(cache_addr=server.address)
        try:
            image, depth, K = render_room(W, H)
            view = client.rgbd_view(image, depth, K)
            a = client.create_scene(view, idempotency_key="same")
            b = client.create_scene(view, idempotency_key="same")
            assert a.scene_id == b.scene_id and len(server.store.entries()) == 1
            pts = np.zeros((4, 3), np.float32)
            pts[:, 0] = [0, 1, 2, 3]
            data = ply_bytes(pts, np.zeros((4, 3), np.uint8))
            o1 = client.add_object(a.scene_id, data, "p.ply", idempotency_key="obj")
            o2 = client.add_object(a.scene_id, data, "p.ply", idempotency_key="obj")
            assert o1 == o2 and len(client.get_scene(a.scene_id).objects) == 1
            with pytest.raises(Exception) as err:
                client.create_scene(client.rgbd_view(image[::-1].copy(), depth, K), idempotency_key="same")
            assert getattr(err.value, "code", "") == "INVALID_ARGUMENT"
        finally:
            client.close()
