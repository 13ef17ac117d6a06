"""The real depth service on 127.0.0.1 with small random-weight MoGe checkpoints (v1 and v2)."""

import io
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
from depth_checkpoints import SMALL, one_torch_thread, small_checkpoint, start_small_server
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from PIL import Image as PILImage

from objvid.depth import lift
from objvid.depth.encode import build_response, encode_response
from objvid.depth.server import DepthServer, ServerConfig
from objvid.runtime import channels, wire
from objvid.v1 import depth_pb2, depth_pb2_grpc, types_pb2

MAX_PIXELS = 200_000


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    yield from one_torch_thread()


@pytest.fixture(scope="module")
def ckpt_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("depth-ckpt")


@pytest.fixture(scope="module")
def server(ckpt_dir):
    srv = start_small_server(
        small_checkpoint("v1", ckpt_dir), max_pixels=MAX_PIXELS, max_images=6, micro_batch=2
    )
    yield srv
    srv.stop(0)


@pytest.fixture(scope="module")
def stub(server):
    channel = channels.make_channel(server.address)
    yield depth_pb2_grpc.DepthServiceStub(channel)
    channel.close()


def _rgb(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _jpeg(rgb):
    buf = io.BytesIO()
    PILImage.fromarray(rgb).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _view_arrays(view):
    depth = wire.decode_tensor(view.depth, "depth", dtype=np.float32, ndim=2)
    mask = wire.decode_tensor(view.mask, "mask", dtype=np.bool_, ndim=2)
    image = wire.decode_image(view.image, "image")
    return depth, mask, image, np.asarray(view.intrinsics).reshape(3, 3)


def _direct(server, rgb, infer_hw):
    """The loaded model called directly on the image as GEN3C prepares it: (depth, mask, K_norm) numpy."""
    x = lift.images_to_tensor([lift.resize_for_inference(rgb, infer_hw)], server.model.device)
    pred = server.model(x)
    return pred.depth[0].numpy(), pred.mask[0].numpy(), pred.intrinsics[0].double().numpy()


def _code(call):
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code(), info.value.details()


# ---------------------------------------------------------------------------------------------------
# Outputs


def test_outputs_shapes_dtypes_for_raw_png_and_jpeg(stub, server):
    rgb = _rgb(90, 160)
    images = [wire.encode_image(rgb), wire.encode_image(rgb, png=True), types_pb2.Image(encoded=_jpeg(rgb))]
    resp = stub.Lift(depth_pb2.LiftRequest(images=images), timeout=60)
    assert resp.model == server.config.model
    assert len(resp.views) == 3
    for view in resp.views:
        depth, mask, image, k = _view_arrays(view)
        assert (view.height, view.width) == (64, 128)
        assert depth.shape == (64, 128) and mask.shape == (64, 128) and image.shape == (64, 128, 3)
        assert image.dtype == np.uint8
        assert np.isfinite(depth).all() and depth.min() >= 0 and depth.max() <= lift.MAX_DEPTH
        assert k[0, 2] == 64.0 and k[1, 2] == 32.0 and k[2, 2] == 1.0
    # PNG is lossless: raw and PNG inputs give the same result.
    np.testing.assert_array_equal(_view_arrays(resp.views[0])[0], _view_arrays(resp.views[1])[0])


def test_image_output_is_the_input_resized(stub):
    rgb = np.empty((72, 128, 3), np.uint8)
    rgb[...] = (10, 200, 30)
    view = stub.Lift(
        depth_pb2.LiftRequest(images=[wire.encode_image(rgb)], width=96, height=48), timeout=60
    ).views[0]
    assert np.all(_view_arrays(view)[2] == (10, 200, 30))


def test_intrinsics_scale_with_the_working_size(stub, server):
    rgb = _rgb(100, 150, seed=3)
    _, _, k_norm = _direct(server, rgb, (72, 128))
    view = stub.Lift(
        depth_pb2.LiftRequest(images=[wire.encode_image(rgb)], width=256, height=96), timeout=60
    ).views[0]
    k = np.asarray(view.intrinsics).reshape(3, 3)
    assert (view.width, view.height) == (256, 96)
    assert k[0, 2] == 128.0 and k[1, 2] == 48.0  # cx = W / 2, cy = H / 2
    np.testing.assert_allclose(k[0, 0], k_norm[0, 0] * 128 * (256 / 128), rtol=1e-6)  # fx by the W ratio
    np.testing.assert_allclose(k[1, 1], k_norm[1, 1] * 72 * (96 / 72), rtol=1e-6)  # fy by the H ratio


def test_gen3c_defaults_720_to_704(ckpt_dir):
    srv = DepthServer(
        ServerConfig(
            model=str(small_checkpoint("v1", ckpt_dir)),
            host="127.0.0.1",
            port=0,
            metrics_port=None,
            num_tokens=64,
        )
    ).start()
    try:
        rgb = _rgb(500, 900, seed=4)
        with channels.make_channel(srv.address) as channel:
            resp = depth_pb2_grpc.DepthServiceStub(channel).Lift(
                depth_pb2.LiftRequest(images=[wire.encode_image(rgb, png=True)]), timeout=120
            )
        depth, mask, image, k = _view_arrays(resp.views[0])
        assert depth.shape == (704, 1280) and mask.shape == (704, 1280) and image.shape == (704, 1280, 3)
        raw_depth, raw_mask, k_norm = _direct(srv, rgb, (720, 1280))
        assert k[0, 2] == 640.0 and k[1, 2] == 352.0
        np.testing.assert_allclose(k[0, 0], k_norm[0, 0] * 1280, rtol=1e-6)
        np.testing.assert_allclose(k[1, 1], k_norm[1, 1] * 720 * (704 / 720), rtol=1e-6)
        expected = lift.clean_depth(raw_depth, raw_mask, (704, 1280)).numpy()
        np.testing.assert_allclose(depth, expected, rtol=1e-5, atol=1e-4)
        assert 0.05 < mask.mean() < 0.95  # the fixture's model marks part of the image invalid
    finally:
        srv.stop(0)


def test_mask_and_invalid_depth_without_resize(stub, server):
    rgb = _rgb(72, 128, seed=5)
    raw_depth, raw_mask, _ = _direct(server, rgb, (72, 128))
    view = stub.Lift(
        depth_pb2.LiftRequest(images=[wire.encode_image(rgb)], width=128, height=72), timeout=60
    ).views[0]
    depth, mask, _, _ = _view_arrays(view)
    np.testing.assert_array_equal(mask, raw_mask)  # the raw validity mask
    assert mask.any() and (~mask).any()
    np.testing.assert_array_equal(depth[~mask], lift.MASKED_DEPTH)  # masked -> 1000 exactly
    np.testing.assert_allclose(depth[mask], np.clip(raw_depth[mask], 0, lift.MAX_DEPTH), rtol=1e-5, atol=1e-5)


def test_keep_aspect(stub):
    rgb = _rgb(120, 160, seed=6)  # 3:4
    req = depth_pb2.LiftRequest(images=[wire.encode_image(rgb)], width=128, keep_aspect=True)
    view = stub.Lift(req, timeout=60).views[0]
    assert (view.width, view.height) == (128, 96)
    k = np.asarray(view.intrinsics).reshape(3, 3)
    assert k[0, 2] == 64.0 and k[1, 2] == 48.0


def test_batch_equals_one_by_one(stub):
    images = [
        wire.encode_image(_rgb(72, 128, seed=7)),
        wire.encode_image(_rgb(90, 100, seed=8), png=True),
        types_pb2.Image(encoded=_jpeg(_rgb(60, 200, seed=9))),
        wire.encode_image(_rgb(72, 128, seed=10)),
        wire.encode_image(_rgb(50, 50, seed=11)),
    ]
    batch = stub.Lift(depth_pb2.LiftRequest(images=images), timeout=60).views
    assert len(batch) == len(images)
    for image, view in zip(images, batch, strict=True):
        single = stub.Lift(depth_pb2.LiftRequest(images=[image]), timeout=60).views[0]
        d_b, m_b, i_b, k_b = _view_arrays(view)
        d_s, m_s, i_s, k_s = _view_arrays(single)
        np.testing.assert_array_equal(i_b, i_s)
        assert (m_b != m_s).mean() < 1e-3
        same = m_b == m_s
        np.testing.assert_allclose(d_b[same], d_s[same], rtol=1e-4, atol=1e-3)
        np.testing.assert_allclose(k_b, k_s, rtol=1e-4)


def test_direct_and_protobuf_encodings_agree(server):
    req = depth_pb2.LiftRequest(
        images=[wire.encode_image(_rgb(72, 128, seed=13)), wire.encode_image(_rgb(30, 40))]
    )
    reference = server.servicer.lift(req, None, build_response)
    assert isinstance(reference, depth_pb2.LiftResponse)
    assert server.servicer.lift(req, None, encode_response) == reference.SerializeToString()


def test_omit_image_leaves_only_the_image_out(server, stub):
    rgb = _rgb(64, 128, seed=14)
    full = stub.Lift(depth_pb2.LiftRequest(images=[wire.encode_image(rgb)]), timeout=60)
    req = depth_pb2.LiftRequest(images=[wire.encode_image(rgb)], omit_image=True)
    slim = stub.Lift(req, timeout=60)
    assert not slim.views[0].HasField("image") and full.views[0].HasField("image")
    assert full.ByteSize() - slim.ByteSize() >= 64 * 128 * 3  # 3 bytes per pixel saved
    stripped = depth_pb2.LiftResponse()
    stripped.CopyFrom(full)
    stripped.views[0].ClearField("image")
    assert slim == stripped
    reference = server.servicer.lift(req, None, build_response)
    assert server.servicer.lift(req, None, encode_response) == reference.SerializeToString()


def test_sdk_lift_with_omit_image(server):
    from objvid.client import ObjvidClient

    rgb = _rgb(64, 128, seed=15)
    images = [rgb, wire.encode_image(rgb, png=True).encoded]
    with ObjvidClient(depth_addr=server.address) as client:
        full = client.lift(images)
        slim = client.lift(images, omit_image=True)
        (smaller,) = client.lift([rgb], width=64, height=32, omit_image=True)
    assert slim[0].image is rgb  # the caller's own pixels: they are at the working size
    assert slim[1].image is None and smaller.image is None  # bytes / another size: nothing to stand in
    for a, b in zip(full, slim, strict=True):
        np.testing.assert_array_equal(a.depth, b.depth)
        np.testing.assert_array_equal(a.mask, b.mask)
        np.testing.assert_array_equal(a.K, b.K)
    assert smaller.depth.shape == (32, 64) and smaller.K[0, 2] == 32.0


def test_concurrent_requests(stub):
    req = depth_pb2.LiftRequest(images=[wire.encode_image(_rgb(72, 128, seed=12))])
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: stub.Lift(req, timeout=60), range(6)))
    first = _view_arrays(results[0].views[0])[0]
    for r in results[1:]:
        np.testing.assert_array_equal(_view_arrays(r.views[0])[0], first)


# ---------------------------------------------------------------------------------------------------
# Errors, and serving afterwards


def test_errors_and_the_server_keeps_serving(stub):
    good = wire.encode_image(_rgb(72, 128))
    inv, exh = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED
    big_png = wire.encode_image(np.zeros((500, 500, 3), np.uint8), png=True)
    truncated = wire.encode_image(_rgb(72, 128), png=True).encoded[:200]
    cases = [
        (depth_pb2.LiftRequest(), inv, "images: empty batch"),
        (
            depth_pb2.LiftRequest(images=[good, types_pb2.Image(encoded=b"definitely not an image")]),
            inv,
            r"images\[1\]",
        ),
        (depth_pb2.LiftRequest(images=[good, good, types_pb2.Image(encoded=truncated)]), inv, r"images\[2\]"),
        (depth_pb2.LiftRequest(images=[types_pb2.Image()]), inv, r"images\[0\]: missing"),
        (
            depth_pb2.LiftRequest(
                images=[types_pb2.Image(pixels=wire.encode_tensor(np.zeros((4, 4), np.uint8)))]
            ),
            inv,
            r"images\[0\]: raw pixels must be \(H, W, 3\)",
        ),
        (
            depth_pb2.LiftRequest(
                images=[
                    types_pb2.Image(
                        pixels=types_pb2.Tensor(dtype=types_pb2.DTYPE_UINT8, shape=[2, 2, 3], data=b"x")
                    )
                ]
            ),
            inv,
            r"images\[0\]: byte count",
        ),
        (
            depth_pb2.LiftRequest(images=[good, wire.encode_image(np.zeros((500, 500, 3), np.uint8))]),
            exh,
            r"images\[1\]",
        ),
        (depth_pb2.LiftRequest(images=[big_png]), exh, r"images\[0\]: 500x500"),
        (depth_pb2.LiftRequest(images=[good], width=640), inv, "width/height"),
        (depth_pb2.LiftRequest(images=[good], width=64, height=32, keep_aspect=True), inv, "height"),
        (depth_pb2.LiftRequest(images=[good], width=1000, height=1000), exh, "width/height"),
        (depth_pb2.LiftRequest(images=[good], width=4000, keep_aspect=True), exh, "working size"),
        (depth_pb2.LiftRequest(images=[good] * 7), exh, "7 images exceed"),
    ]
    for request, code, pattern in cases:
        got, details = _code(lambda request=request: stub.Lift(request, timeout=60))
        assert got == code, (pattern, details)
        assert re.search(pattern, details), (pattern, details)
        # still serving after every bad request
        assert len(stub.Lift(depth_pb2.LiftRequest(images=[good]), timeout=60).views) == 1


# ---------------------------------------------------------------------------------------------------
# Health, reflection, readiness, metrics


def test_health_and_reflection(server):
    with channels.make_channel(server.address) as channel:
        assert channels.check_health(channel)
        assert channels.check_health(channel, "objvid.v1.DepthService")
        refl = reflection_pb2_grpc.ServerReflectionStub(channel)
        reply = next(
            refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        )
        names = {s.name for s in reply.list_services_response.service}
        assert "objvid.v1.DepthService" in names and "grpc.health.v1.Health" in names


def test_not_serving_until_the_model_is_loaded(ckpt_dir):
    srv = DepthServer(
        ServerConfig(
            model=str(small_checkpoint("v1", ckpt_dir)), host="127.0.0.1", port=0, metrics_port=None, **SMALL
        )
    ).listen()
    try:
        with channels.make_channel(srv.address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            status = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status
            assert status == health_pb2.HealthCheckResponse.NOT_SERVING
            stub = depth_pb2_grpc.DepthServiceStub(channel)
            req = depth_pb2.LiftRequest(images=[wire.encode_image(_rgb(72, 128))])
            code, details = _code(lambda: stub.Lift(req, timeout=30))
            assert code == grpc.StatusCode.UNAVAILABLE and "loading" in details
            srv.load()
            assert channels.check_health(channel) and channels.check_health(channel, "objvid.v1.DepthService")
            assert len(stub.Lift(req, timeout=60).views) == 1
    finally:
        srv.stop(0)


def _scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        return r.read().decode()


def _sample(text, name, labels=""):
    m = re.search(rf"^{re.escape(name + labels)} ([0-9.e+-]+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def test_metrics_endpoint_counts_requests(stub, server):
    before = _scrape(server.metrics_port)
    good = depth_pb2.LiftRequest(images=[wire.encode_image(_rgb(72, 128))] * 2)
    stub.Lift(good, timeout=60)
    stub.Lift(good, timeout=60)
    _code(lambda: stub.Lift(depth_pb2.LiftRequest(), timeout=60))
    after = _scrape(server.metrics_port)
    ok = '{code="OK"}'
    assert (
        _sample(after, "objvid_depth_requests_total", ok) - _sample(before, "objvid_depth_requests_total", ok)
        == 2
    )
    bad = '{code="INVALID_ARGUMENT"}'
    assert (
        _sample(after, "objvid_depth_requests_total", bad)
        - _sample(before, "objvid_depth_requests_total", bad)
        == 1
    )
    assert _sample(after, "objvid_depth_images_total") - _sample(before, "objvid_depth_images_total") == 4
    assert (
        _sample(after, "objvid_depth_request_seconds_count")
        - _sample(before, "objvid_depth_request_seconds_count")
        == 3
    )
    assert _sample(after, "objvid_depth_model_load_seconds") > 0
    assert _sample(after, "objvid_depth_model_loaded") == 1
    assert _sample(after, "objvid_depth_stage_seconds_count", '{stage="lift"}') > 0


# ---------------------------------------------------------------------------------------------------
# MoGe v2


def test_v2_checkpoint_serves(ckpt_dir):
    srv = start_small_server(small_checkpoint("v2", ckpt_dir), metrics_port=None)
    try:
        assert srv.model.version == "v2"
        with channels.make_channel(srv.address) as channel:
            resp = depth_pb2_grpc.DepthServiceStub(channel).Lift(
                depth_pb2.LiftRequest(images=[wire.encode_image(_rgb(80, 120))] * 2), timeout=60
            )
        for view in resp.views:
            depth, mask, image, k = _view_arrays(view)
            assert depth.shape == (64, 128) and mask.shape == (64, 128) and image.shape == (64, 128, 3)
            assert k[0, 2] == 64.0 and k[1, 2] == 32.0
            assert np.isfinite(depth).all() and depth.min() >= 0
    finally:
        srv.stop(0)


# ---------------------------------------------------------------------------------------------------
# The real command line, as a subprocess


def _read_lines(stream, out: queue.Queue):
    for line in stream:
        out.put(line)
    out.put(None)


def test_python_m_objvid_depth_serve_subprocess(ckpt_dir):
    ckpt = small_checkpoint("v1", ckpt_dir)
    env = dict(os.environ, OBJVID_DEPTH_NUM_TOKENS="64", OBJVID_DEPTH_WIDTH="96", OBJVID_DEPTH_HEIGHT="48")
    env["OMP_NUM_THREADS"] = "1"  # see depth_checkpoints.one_torch_thread
    cmd = [
        sys.executable,
        "-m",
        "objvid.depth",
        "serve",
        "--model",
        str(ckpt),
        "--host",
        "127.0.0.1",
        "--port",
        "0",
    ]
    cmd += [
        "--metrics-host",
        "127.0.0.1",
        "--metrics-port",
        "0",
        "--infer-width",
        "128",
        "--infer-height",
        "72",
    ]
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_read_lines, args=(proc.stderr, lines), daemon=True).start()
    log, address = [], None
    try:
        deadline = time.monotonic() + 120
        while address is None and time.monotonic() < deadline:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            assert line is not None, "server exited early:\n" + "".join(log)
            log.append(line)
            m = re.search(r"event=ready address=([\d.]+:\d+) metrics_port=(\d+)", line)
            if m:
                address, metrics_port = m.group(1), int(m.group(2))
        assert address, "".join(log)
        with channels.make_channel(address) as channel:
            grpc.channel_ready_future(channel).result(timeout=30)
            assert channels.check_health(channel, "objvid.v1.DepthService")
            view = (
                depth_pb2_grpc.DepthServiceStub(channel)
                .Lift(depth_pb2.LiftRequest(images=[wire.encode_image(_rgb(72, 128), png=True)]), timeout=60)
                .views[0]
            )
        assert (view.width, view.height) == (96, 48)  # defaults from OBJVID_DEPTH_WIDTH/HEIGHT
        assert 'objvid_depth_requests_total{code="OK"} 1.0' in _scrape(metrics_port)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        rest = []
        while (line := lines.get(timeout=10)) is not None:
            rest.append(line)
        assert any("event=stopped" in line for line in rest), "".join(rest)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
