"""RENDER_SOURCE (issue 18): the diffusion adapter fetches a chunk's renders from a real cache server on
127.0.0.1 by scene id + cameras; the model gets the same renders and masks as through the client, and
so produces the same video. Bad sources are INVALID_ARGUMENT naming RENDER_SOURCE."""

from __future__ import annotations

import json

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

from objvid.client import ObjvidClient
from objvid.diffusion.cache_source import ADDRESS_ENV, READY_FILE_ENV, TOKEN_ENV, CacheSource
from objvid.diffusion.preview import PreviewModel
from objvid.diffusion.registry import settings_from_parameters
from objvid.diffusion.triton_io import ChunkError, run_chunk
from objvid.v1 import cache_pb2


@pytest.fixture(scope="module")
def cache():
    srv = start()
    channel, stub = stub_for(srv)
    create_rgbd_scene(stub, scene_id="s")
    yield srv
    channel.close()
    srv.stop(0)


def _cams(n=4):
    _, _, K = rgbd()
    return np.repeat(K[None], n, 0), np.stack([w2c_shift(0.02 * i) for i in range(n)])


def _video(outputs) -> np.ndarray:
    return [o for o in outputs if "VIDEO" in o][-1]["VIDEO"]


def test_model_fetches_the_renders_the_client_would_have_sent(cache):
    Ks, w2cs = _cams()
    with ObjvidClient(cache_addr=cache.address) as client:
        options = client.render_options("fused", ("rgb", "mask"))
        frames = list(client.render_trajectory("s", Ks, w2cs, W, H, options))
        source = client.render_source("s", Ks, w2cs, W, H, options)
    renders = np.stack([f.rgb for f in frames])
    masks = np.stack([f.mask for f in frames])
    got_r, got_m = CacheSource(cache.address).fetch(source)
    np.testing.assert_array_equal(got_r, renders)
    np.testing.assert_array_equal(got_m, masks)
    first = renders[0, 0].copy()
    model = PreviewModel()
    direct = _video(run_chunk(model, {"FIRST_FRAME": first, "RENDER_SOURCE": np.array([source.SerializeToString()],
                                                                                       dtype=object)},
                              source=CacheSource(cache.address)))  # fmt: skip
    detour = _video(run_chunk(model, {"FIRST_FRAME": first, "RENDERS": renders, "MASKS": masks}))
    np.testing.assert_array_equal(direct, detour)


@pytest.mark.parametrize(
    "inputs, source, text",
    [
        ({"RENDERS": np.zeros((4, 1, H, W, 3), np.uint8)}, True, "not both"),
        ({}, False, "no cache address"),
        ({"_scene": "nope"}, True, "NOT_FOUND"),
        ({"_cams": 0}, True, "RENDER_SOURCE.cameras: empty"),
        ({"_raw": b"\xff\xff"}, True, "not a serialized objvid.v1.RenderSource"),
    ],
)
def test_bad_render_sources_are_invalid_argument(cache, inputs, source, text):
    Ks, w2cs = _cams()
    src = ObjvidClient.render_source(inputs.pop("_scene", "s"), Ks, w2cs, W, H)
    if inputs.pop("_cams", None) == 0:
        del src.cameras[:]
    raw = inputs.pop("_raw", src.SerializeToString())
    req = {
        "FIRST_FRAME": np.zeros((H, W, 3), np.uint8),
        "RENDER_SOURCE": np.array([raw], dtype=object),
        **inputs,
    }
    with pytest.raises(ChunkError) as err:
        list(run_chunk(PreviewModel(), req, source=CacheSource(cache.address) if source else None))
    assert err.value.code == "INVALID_ARGUMENT" and text in err.value.reason


def test_cache_address_comes_from_config_or_environment(monkeypatch):
    monkeypatch.delenv(ADDRESS_ENV, raising=False)
    assert CacheSource.from_config({}) is None
    assert CacheSource.from_config({"cache_address": "a:1", "cache_token": "t"}) == CacheSource("a:1", "t")
    monkeypatch.setenv(ADDRESS_ENV, "b:2")
    assert CacheSource.from_config({}).address == "b:2"
    settings_from_parameters({"cache_address": "a:1"}, "cpu")  # a known Triton parameter


def test_generate_stage_asks_for_packed_masks_and_slot0_object_masks_only(cache):
    """object_mask_slots = 1: the server sends slot 0's object mask only."""
    Ks, w2cs = _cams(2)
    with ObjvidClient(cache_addr=cache.address) as client:
        options = client.render_options("fused", ("rgb", "mask", "object_mask"), pack_masks=True)
        options.object_mask_slots = 1
        frames = list(client.render_trajectory("s", Ks, w2cs, W, H, options))
        plain = list(client.render_trajectory("s", Ks, w2cs, W, H, client.render_options(
            "fused", ("rgb", "mask", "object_mask"))))  # fmt: skip
    for f, p in zip(frames, plain, strict=True):
        assert f.object_mask.shape == (1, H, W)
        np.testing.assert_array_equal(f.object_mask, p.object_mask[:1])
        np.testing.assert_array_equal(f.mask, p.mask)
        np.testing.assert_array_equal(f.rgb, p.rgb)
    assert cache_pb2.RenderOptions(object_mask_slots=1).object_mask_slots == 1


def test_ready_file_names_the_cache_read_at_each_fetch(cache, tmp_path, monkeypatch):
    """The local stack's wiring: the server setting is the cache's ready file, read when a request comes."""
    for name in (ADDRESS_ENV, TOKEN_ENV):
        monkeypatch.delenv(name, raising=False)
    ready = tmp_path / "cache.ready.json"
    monkeypatch.setenv(READY_FILE_ENV, str(ready))
    source = CacheSource.from_config()
    assert source == CacheSource("", ready_file=str(ready))
    assert CacheSource.from_config({"cache_address": "a:1"}).address == "a:1"  # an address wins
    Ks, w2cs = _cams(2)
    src = ObjvidClient.render_source("s", Ks, w2cs, W, H)
    with pytest.raises(RuntimeError, match="ready file .* is not readable"):
        source.fetch(src)  # the cache has not written it yet
    host, port = cache.address.rsplit(":", 1)
    ready.write_text(json.dumps({"service": "cache", "host": host, "port": int(port)}))
    renders, masks = source.fetch(src)
    assert renders.shape == (2, 1, H, W, 3) and masks.any()
    ready.write_text(json.dumps({"service": "cache", "host": "10.0.0.5", "port": int(port)}))
    with pytest.raises(RuntimeError, match="only a loopback host"):
        source.fetch(src)


def test_video_scene_source_carries_start_frame_and_object_tracks(tmp_path):
    """RenderSource.start_frame / object_tracks render what the client's RenderTrajectory renders."""
    from test_cache_video_service import video_stream

    from objvid.testing.video import synthetic_rgbd_video

    video = synthetic_rgbd_video(frames=6, height=32, width=48)
    srv = start()
    channel, stub = stub_for(srv)
    try:
        stub.CreateVideoScene(video_stream(video, float32_depth=True), timeout=60)
        pts, cols = cube_cloud(size=0.1)
        oid = stub.AddObject(cache_pb2.AddObjectRequest(scene_id="clip", cloud=cloud_msg(pts, cols),
                                                        transform=matrix_transform(translation(0, 0, 2.5))),
                             timeout=30).object.object_id  # fmt: skip
        poses = [matrix_transform(translation(0.1 * i, 0, 2.5)) for i in range(6)]
        tracks = [cache_pb2.ObjectTrack(object_id=oid, poses=poses)]
        Ks, w2cs = video["K"][2:5], video["w2c"][2:5]
        with ObjvidClient(cache_addr=srv.address) as client:
            options = client.render_options("fused", ("rgb", "mask"), pack_masks=True)
            want = list(client.render_trajectory("clip", Ks, w2cs, 48, 32, options, start_frame=2,
                                                 object_tracks=tracks))  # fmt: skip
            source = client.render_source("clip", Ks, w2cs, 48, 32, options)
        got_plain = CacheSource(srv.address).fetch(source)[0]
        source.start_frame = 2
        source.object_tracks.extend(tracks)
        got_r, got_m = CacheSource(srv.address).fetch(source)
        np.testing.assert_array_equal(got_r, np.stack([f.rgb for f in want]))
        np.testing.assert_array_equal(got_m, np.stack([f.mask for f in want]))
        assert not np.array_equal(got_plain, got_r)  # frames 0.. without the track differ
    finally:
        channel.close()
        srv.stop(0)
