"""Same-host ``Render`` over shared memory and the compact wire encodings (issue 18): a real cache server on
127.0.0.1, real /dev/shm regions. The shared-memory and compact paths give the plain gRPC path's arrays bit
for bit; unusable regions get INVALID_ARGUMENT naming the ``shm.*`` field; the SDK falls back to gRPC."""

from __future__ import annotations

import os

import grpc
import numpy as np
import pytest
from cache_service_helpers import (
    H,
    W,
    cloud_msg,
    create_rgbd_scene,
    cube_cloud,
    matrix_transform,
    rgbd,
    start,
    stub_for,
    translation,
    w2c_shift,
)

from objvid.cache.frames import encode_render_response, fill_frame, outputs_to_host, pack_mask_bits
from objvid.cache.render_common import RenderOutput
from objvid.client import ObjvidClient
from objvid.client.errors import ServiceError
from objvid.client.frame_render import is_loopback
from objvid.runtime import shm, wire
from objvid.runtime.frames import decode_frame_bytes, unpack_mask_bits
from objvid.v1 import cache_pb2

ALL = ("rgb", "mask", "depth", "object_mask")


@pytest.fixture(scope="module")
def server():
    srv = start()
    channel, stub = stub_for(srv)
    create_rgbd_scene(stub, scene_id="s")
    pts, cols = cube_cloud()
    stub.AddObject(cache_pb2.AddObjectRequest(scene_id="s", cloud=cloud_msg(pts, cols),
                                              transform=matrix_transform(translation(0.1, 0.3, 1.8))))  # fmt: skip
    srv.stub = stub
    yield srv
    channel.close()
    srv.stop(0)


def _client(server, transport="auto") -> ObjvidClient:
    return ObjvidClient(cache_addr=server.address, render_transport=transport)


def _plain(server, w2c, **opts) -> dict:
    """The plain path: Render's gRPC bytes, decoded."""
    _, _, K = rgbd()
    req = cache_pb2.RenderRequest(scene_id="s", camera=wire.encode_camera(K, w2c, W, H),
                                  options=ObjvidClient.render_options(outputs=ALL, **opts))  # fmt: skip
    resp = server.stub.Render(req, timeout=30)
    return decode_frame_bytes(resp.SerializeToString())


def _assert_same(frame, ref: dict) -> None:
    for name in ALL:
        got = getattr(frame, name)
        assert got is not None, name
        assert got.dtype == ref[name].dtype and got.shape == ref[name].shape, name
        np.testing.assert_array_equal(got, ref[name], err_msg=name)


@pytest.mark.parametrize(
    "pack, fp16", [(False, False), (True, False), (True, True)], ids=["plain", "bits", "bits-fp16"]
)
def test_shm_render_equals_grpc_render_bit_for_bit(server, pack, fp16):
    w2c = w2c_shift(0.05, -0.02, 0.1, yaw_deg=3.0)
    ref = _plain(server, w2c)  # uncompressed gRPC frame
    _, _, K = rgbd()
    opts = ObjvidClient.render_options(outputs=ALL, pack_masks=pack, depth_fp16=fp16)
    with _client(server, "shm") as shm_client, _client(server, "grpc") as grpc_client:
        via_shm = shm_client.render("s", K, w2c, W, H, opts)
        via_grpc = grpc_client.render("s", K, w2c, W, H, opts)
        assert shm_client._frames.transport == "shm" and grpc_client._frames.transport == "grpc"
    if fp16:  # the option's whole point: depth as float16, equal to the float32 depth rounded
        ref["depth"] = ref["depth"].astype(np.float16)
    _assert_same(via_shm, ref)
    _assert_same(via_grpc, ref)
    assert ref["mask"].any() and not ref["mask"].all()


def test_shm_views_without_copy_and_region_reuse(server):
    _, _, K = rgbd()
    opts = ObjvidClient.render_options(outputs=ALL)
    with _client(server) as client:
        assert client.render_transport == "auto"
        a = client.render("s", K, np.eye(4), W, H, opts, copy=False)
        assert client._frames.transport == "shm"
        region = client._frames._local.region
        a_rgb = a.rgb.copy()
        b = client.render("s", K, w2c_shift(0.2), W, H, opts, copy=False)
        assert client._frames._local.region is region  # one region per thread, reused
        assert not a.rgb.flags.writeable
        np.testing.assert_array_equal(b.rgb, _plain(server, w2c_shift(0.2))["rgb"])
        assert not np.array_equal(a_rgb, b.rgb)
        path = region.path
        assert os.path.exists(path)
    assert not os.path.exists(path)  # closing the client unlinks its regions


def test_auto_falls_back_to_grpc_when_the_server_cannot_see_the_region(server, monkeypatch):
    """A server on another host (or container) finds no such region: the SDK switches to gRPC bytes."""
    _, _, K = rgbd()
    opts = ObjvidClient.render_options(outputs=ALL)
    real = shm.ClientRegion.__init__

    def elsewhere(self, size, prefix="objvid-"):  # the region lands where the server does not look
        real(self, size, prefix)
        os.rename(self.path, self.path + "-moved")
        self.path += "-moved"

    monkeypatch.setattr(shm.ClientRegion, "__init__", elsewhere)
    with _client(server) as client:
        frame = client.render("s", K, np.eye(4), W, H, opts)
        assert client._frames.transport == "grpc"
        _assert_same(frame, _plain(server, np.eye(4)))
    with _client(server, "shm") as client, pytest.raises(ServiceError, match="shm.name"):
        client.render("s", K, np.eye(4), W, H, opts)


def test_remote_addresses_use_grpc_and_loopback_tries_shm():
    assert is_loopback("127.0.0.1:5") and is_loopback("localhost:5") and is_loopback("[::1]:5")
    assert is_loopback("unix:/tmp/x.sock")
    assert not is_loopback("10.0.0.7:50052") and not is_loopback("cache.objvid.svc:50052")


def test_region_grows_when_the_frame_does_not_fit(server):
    _, _, K = rgbd()
    opts = ObjvidClient.render_options(outputs=ALL)
    with _client(server, "shm") as client:
        client.render("s", K, np.eye(4), W, H, opts)
        client._frames.slots_hint = 0  # estimates far too small from now on
        small = shm.ClientRegion(16)
        client._frames._local.region = small
        client._frames._regions.append(small)
        frame = client.render("s", K, np.eye(4), W, H, opts)
        assert client._frames._local.region is not small and client._frames._local.region.capacity > 16
    _assert_same(frame, _plain(server, np.eye(4)))


def _shm_req(region: shm.ClientRegion | None = None, **fields) -> cache_pb2.RenderRequest:
    _, _, K = rgbd()
    req = cache_pb2.RenderRequest(scene_id="s", camera=wire.encode_camera(K, np.eye(4), W, H))
    if region is not None:
        req.shm.name, req.shm.size, req.shm.key = region.name, region.size, region.key
    for k, v in fields.items():
        setattr(req.shm, k, v)
    return req


@pytest.mark.parametrize(
    "fields, text",
    [
        ({"name": "../etc/passwd"}, "shm.name: must be"),
        ({"name": ""}, "shm.name: must be"),
        ({"name": "objvid-no-such-region-xyz"}, "shm.name: no shared-memory region"),
        ({"key": b"short"}, "shm.key: must be 16 bytes"),
        ({"key": b"k" * 16}, "shm.key: region"),
        ({"size": 1 << 20}, "shm.size: the region is"),
        ({"size": 10}, "shm.size: must exceed"),
    ],
)
def test_bad_regions_are_invalid_argument_naming_the_field(server, fields, text):
    with shm.ClientRegion(1 << 20) as region:
        with pytest.raises(grpc.RpcError) as err:
            server.stub.Render(_shm_req(region, **fields), timeout=30)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert text in err.value.details()


def test_too_small_region_and_png_are_refused_and_nothing_is_written(server):
    with shm.ClientRegion(100) as region:
        with pytest.raises(grpc.RpcError) as err:
            server.stub.Render(_shm_req(region), timeout=30)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "shm.size: the frame needs" in err.value.details()
        assert bytes(region._mm[shm.HEADER : shm.HEADER + 100]) == bytes(100)
        req = _shm_req(region)
        req.options.encoding = cache_pb2.IMAGE_ENCODING_PNG
        with pytest.raises(grpc.RpcError) as err:
            server.stub.Render(req, timeout=30)
        assert (
            err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "options.encoding" in err.value.details()
        )
    # the server keeps serving
    assert server.stub.Render(_shm_req(), timeout=30).frame.num_slots == 1


def test_server_never_writes_a_file_without_the_key(server, tmp_path):
    """A /dev/shm file that is not a client region (no magic + key) is left untouched."""
    name = f"objvid-test-foreign-{os.getpid()}"
    path = os.path.join(shm.SHM_DIR, name)
    with open(path, "wb") as f:
        f.write(b"x" * 4096)
    try:
        with pytest.raises(grpc.RpcError) as err:
            server.stub.Render(_shm_req(name=name, size=4096, key=b"k" * 16), timeout=30)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "shm.key" in err.value.details()
        assert open(path, "rb").read() == b"x" * 4096
    finally:
        os.unlink(path)


# --------------------------------------------------------------------------------------------- encodings


@pytest.mark.parametrize("width", [1, 7, 8, 13, 64])
def test_mask_bits_equal_numpy_packbits_and_unpack_back(width):
    import torch

    m = torch.rand((2, 3, 5, width), generator=torch.Generator().manual_seed(width)) > 0.5
    bits = pack_mask_bits(m).numpy()
    np.testing.assert_array_equal(bits, np.packbits(m.numpy(), axis=-1, bitorder="little"))
    np.testing.assert_array_equal(unpack_mask_bits(bits[0], width), m[0].numpy().astype(np.uint8))


def test_compact_frame_direct_encoding_equals_protobuf_and_decodes_to_the_plain_arrays():
    import torch

    g = torch.Generator().manual_seed(1)
    out = RenderOutput(
        rgb=torch.randint(0, 256, (1, 2, 5, 11, 3), generator=g, dtype=torch.uint8),
        mask=torch.rand((1, 2, 5, 11), generator=g) > 0.5,
        depth=torch.rand((1, 2, 5, 11), generator=g) * 10,
        object_mask=torch.randint(-1, 3, (1, 2, 5, 11), generator=g, dtype=torch.int16),
    )
    plain = decode_frame_bytes(encode_render_response(outputs_to_host(out, ALL)))
    host = outputs_to_host(out, ALL, pack_masks=True, depth_fp16=True)
    data = encode_render_response(host)
    ref = cache_pb2.RenderResponse()
    fill_frame(ref.frame, host, 0, 0, png=False)
    assert data == ref.SerializeToString()
    assert len(data) < len(encode_render_response(outputs_to_host(out, ALL)))
    got = decode_frame_bytes(data)
    for name in ("rgb", "mask", "object_mask"):
        np.testing.assert_array_equal(got[name], plain[name])
    assert got["mask"].dtype == np.uint8
    np.testing.assert_array_equal(got["depth"], plain["depth"].astype(np.float16))


def test_bad_mask_bits_are_named():
    with pytest.raises(ValueError, match="mask_bits"):
        unpack_mask_bits(np.zeros((1, 2, 3), np.uint8), 40)
