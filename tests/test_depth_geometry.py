"""The multi-view geometry model (VGGT written here) and LiftViews: the official checkpoint layout, loading
through the real path from tiny random-weight checkpoints, posed outputs, service errors."""

from __future__ import annotations

from collections import Counter

import grpc
import numpy as np
import pytest
import torch
from depth_checkpoints import one_torch_thread, small_checkpoint, start_small_server

from objvid.depth.geometry import (
    load_geometry_model,
    model_size,
    read_state_dict,
    save_checkpoint,
)
from objvid.depth.model import ModelLoadError
from objvid.depth.vggt import VGGT, VGGTConfig
from objvid.runtime import channels, wire
from objvid.testing.geometry_model import random_vggt, tiny_config
from objvid.v1 import depth_pb2, depth_pb2_grpc


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    yield from one_torch_thread()


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    net = random_vggt(seed=3)
    path = save_checkpoint(net, tmp_path_factory.mktemp("vggt") / "model.pt")
    return path, net


def _collapse(name: str) -> str:
    return ".".join("N" if p.isdigit() else p for p in name.split("."))


def test_full_size_layout_is_the_official_vggt_1b_checkpoint():
    """Tensor names and shapes of facebook/VGGT-1B (model.pt), minus track_head, built on the meta device."""
    with torch.device("meta"):
        net = VGGT()
    sd = net.state_dict()
    shapes = {k: tuple(v.shape) for k, v in sd.items()}
    assert shapes["aggregator.camera_token"] == (1, 2, 1, 1024)
    assert shapes["aggregator.register_token"] == (1, 2, 4, 1024)
    assert shapes["aggregator.patch_embed.pos_embed"] == (1, 1370, 1024)
    assert shapes["aggregator.patch_embed.register_tokens"] == (1, 4, 1024)
    assert shapes["aggregator.patch_embed.mask_token"] == (1, 1024)
    assert shapes["aggregator.patch_embed.patch_embed.proj.weight"] == (1024, 3, 14, 14)
    assert shapes["aggregator.frame_blocks.23.attn.q_norm.weight"] == (64,)
    assert shapes["aggregator.global_blocks.0.mlp.fc1.weight"] == (4096, 1024)
    assert shapes["camera_head.trunk.3.attn.qkv.weight"] == (6144, 2048)
    assert shapes["camera_head.poseLN_modulation.1.weight"] == (6144, 2048)
    assert shapes["camera_head.pose_branch.fc1.weight"] == (1024, 2048)
    assert shapes["camera_head.pose_branch.fc2.weight"] == (9, 1024)
    assert shapes["camera_head.empty_pose_tokens"] == (1, 1, 9)
    assert [shapes[f"depth_head.projects.{i}.weight"] for i in range(4)] == [
        (256, 2048, 1, 1), (512, 2048, 1, 1), (1024, 2048, 1, 1), (1024, 2048, 1, 1)]  # fmt: skip
    assert shapes["depth_head.resize_layers.0.weight"] == (256, 256, 4, 4)
    assert shapes["depth_head.resize_layers.3.weight"] == (1024, 1024, 3, 3)
    assert "depth_head.resize_layers.2.weight" not in shapes  # Identity
    assert shapes["depth_head.scratch.layer3_rn.weight"] == (256, 1024, 3, 3)
    assert "depth_head.scratch.refinenet4.resConfUnit1.conv1.weight" not in shapes
    assert shapes["depth_head.scratch.output_conv1.weight"] == (128, 256, 3, 3)
    assert shapes["depth_head.scratch.output_conv2.2.weight"] == (2, 32, 1, 1)
    assert shapes["point_head.scratch.output_conv2.2.weight"] == (4, 32, 1, 1)
    groups = Counter(_collapse(k).split(".N.")[0] for k in sd)
    assert groups["aggregator.patch_embed.blocks"] == 24 * 14  # norm1, qkv, proj, ls1, norm2, fc1, fc2, ls2
    assert groups["aggregator.frame_blocks"] == groups["aggregator.global_blocks"] == 24 * 18  # + q/k norms
    assert groups["camera_head.trunk"] == 4 * 14
    assert not any("bias" in k for k in sd if "_rn." in k)  # layerN_rn convs have no bias
    assert 1.190e9 < sum(v.numel() for v in sd.values()) < 1.191e9  # VGGT-1B without its tracking head
    assert VGGTConfig.from_state_dict(sd) == VGGTConfig()
    assert VGGTConfig().dpt_layers == (4, 11, 17, 23)


def test_tiny_checkpoint_loads_through_the_real_path_and_reproduces_the_network(tiny_ckpt):
    path, net = tiny_ckpt
    model = load_geometry_model(str(path), device="cpu")
    assert model.net.cfg == tiny_config()
    x = torch.rand(1, 3, 3, 28, 56)
    with torch.inference_mode():
        a, b = net.eval()(x), model.net(x)
    for k in ("pose_enc", "depth", "depth_conf"):
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    assert a["depth"].shape == (1, 3, 28, 56) and (a["depth_conf"] >= 1).all()


def test_lift_views_outputs_posed_views_at_the_working_size(tiny_ckpt):
    path, _ = tiny_ckpt
    model = load_geometry_model(str(path), device="cpu")
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 256, (90, 160, 3), dtype=np.uint8) for _ in range(3)]
    views = model.lift_views(imgs, (64, 112), confidence_percentile=25)
    assert len(views) == 3
    np.testing.assert_array_equal(views[0].w2c, np.eye(4))
    for v in views:
        assert v.depth.shape == v.mask.shape == v.confidence.shape == (64, 112)
        assert v.image.shape == (64, 112, 3) and v.image.dtype == np.uint8
        assert np.isfinite(v.depth).all() and (v.depth > 0).all()
        R = v.w2c[:3, :3]
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-5)
        assert v.K[0, 0] > 0 and v.K[1, 1] > 0 and v.K[0, 2] == pytest.approx(56.0)  # W/2 at the working size
        assert 0.7 < v.mask.mean() < 0.8  # the lowest 25% confidence is masked
    one = model.lift_views(imgs[:1], (64, 112))
    np.testing.assert_array_equal(one[0].w2c, np.eye(4))
    with pytest.raises(ValueError, match="confidence_percentile"):
        model.lift_views(imgs, (64, 112), confidence_percentile=100)


def test_model_size_keeps_the_aspect_on_the_patch_grid():
    assert model_size((704, 1280), 518, 14) == (280, 518)
    assert model_size((1280, 704), 518, 14) == (518, 280)
    assert model_size((64, 112), 56, 14) == (28, 56)


def test_loading_errors_name_the_file(tiny_ckpt, tmp_path, monkeypatch):
    path, net = tiny_ckpt
    sd = read_state_dict(path)
    # the official file also holds the tracking head: dropped, everything else strict
    with_track = dict(sd, **{"track_head.fnet.weight": torch.zeros(2)})
    p = tmp_path / "with_track.pt"
    torch.save(with_track, p)
    load_geometry_model(str(p), device="cpu")
    broken = {k: v for k, v in sd.items() if not k.startswith("camera_head.trunk_norm")}
    p = tmp_path / "broken.pt"
    torch.save(broken, p)
    with pytest.raises(
        ModelLoadError, match=r"broken\.pt does not fit VGGT: missing \['camera_head\.trunk_norm"
    ):
        load_geometry_model(str(p), device="cpu")
    p = tmp_path / "other.pt"
    torch.save({"weight": torch.zeros(3)}, p)
    with pytest.raises(ModelLoadError, match=r"other\.pt is not a VGGT checkpoint"):
        load_geometry_model(str(p), device="cpu")
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelLoadError, match=r"cannot read checkpoint .*garbage\.pt"):
        load_geometry_model(str(tmp_path / "garbage.pt"), device="cpu")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(ModelLoadError) as err:
        load_geometry_model("facebook/VGGT-1B", device="cpu", model_dir=tmp_path / "models")
    msg = str(err.value)
    assert "HF_HUB_OFFLINE" in msg and str(tmp_path / "models" / "facebook" / "VGGT-1B" / "model.pt") in msg


def test_safetensors_checkpoint_loads(tiny_ckpt, tmp_path):
    from safetensors.torch import save_file

    path, net = tiny_ckpt
    p = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(p))
    model = load_geometry_model(str(p), device="cpu")
    for (k, a), b in zip(net.state_dict().items(), model.net.state_dict().values(), strict=True):
        assert torch.equal(a, b), k


def test_lift_views_rpc(tiny_ckpt, tmp_path):
    path, _ = tiny_ckpt
    geometry = load_geometry_model(str(path), device="cpu")
    srv = start_small_server(small_checkpoint("v1", tmp_path), max_images=4, warmup=False)
    try:
        channel = channels.make_channel(srv.address)
        stub = depth_pb2_grpc.DepthServiceStub(channel)
        rng = np.random.default_rng(1)
        imgs = [wire.encode_image(rng.integers(0, 256, (60, 100, 3), dtype=np.uint8)) for _ in range(2)]
        with pytest.raises(grpc.RpcError) as err:
            stub.LiftViews(depth_pb2.LiftViewsRequest(images=imgs), timeout=60)
        assert (
            err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            and "--geometry-model" in err.value.details()
        )
        srv.servicer.geometry_model = geometry
        resp = stub.LiftViews(
            depth_pb2.LiftViewsRequest(images=imgs, width=112, height=64, include_confidence=True), timeout=60
        )
        assert resp.model == str(path) and len(resp.views) == 2
        direct = geometry.lift_views([wire.decode_image(i) for i in imgs], (64, 112))
        for pv, d in zip(resp.views, direct, strict=True):
            depth = wire.decode_tensor(pv.view.depth)
            np.testing.assert_array_equal(depth, d.depth)
            np.testing.assert_array_equal(wire.decode_tensor(pv.view.mask), d.mask)
            np.testing.assert_array_equal(wire.decode_tensor(pv.confidence), d.confidence)
            np.testing.assert_allclose(np.array(pv.world_to_camera).reshape(4, 4), d.w2c)
            np.testing.assert_allclose(np.array(pv.view.intrinsics).reshape(3, 3), d.K)
            assert pv.view.width == 112 and pv.view.height == 64 and pv.view.HasField("image")
        assert np.array(resp.views[0].world_to_camera).reshape(4, 4).tolist() == np.eye(4).tolist()
        bad = [
            (depth_pb2.LiftViewsRequest(), grpc.StatusCode.INVALID_ARGUMENT, "images: empty"),
            (depth_pb2.LiftViewsRequest(images=imgs * 3), grpc.StatusCode.RESOURCE_EXHAUSTED, "limit of 4"),
            (depth_pb2.LiftViewsRequest(images=imgs, confidence_percentile=150), grpc.StatusCode.INVALID_ARGUMENT,
             "confidence_percentile"),
            (depth_pb2.LiftViewsRequest(images=[imgs[0], wire.encode_image(np.zeros((4, 4), np.uint8))][:1]
                                        + [depth_pb2.LiftViewsRequest().images.add()]),
             grpc.StatusCode.INVALID_ARGUMENT, r"images\[1\]: missing"),
        ]  # fmt: skip
        for req, code, text in bad:
            with pytest.raises(grpc.RpcError) as err:
                stub.LiftViews(req, timeout=60)
            assert err.value.code() == code and __import__("re").search(text, err.value.details()), (
                err.value.details()
            )
        channel.close()
    finally:
        srv.stop(0)


def test_pose_encoding_follows_vggt_conventions():
    """Quaternion scalar last (as scipy), w2c = [R | t], focal lengths from the fields of view."""
    from scipy.spatial.transform import Rotation

    from objvid.depth.vggt import pose_to_camera

    rng = np.random.default_rng(0)
    q = rng.normal(size=(5, 4))
    t = rng.normal(size=(5, 3))
    fov = rng.uniform(0.5, 1.5, size=(5, 2))
    enc = torch.from_numpy(np.concatenate([t, q, fov], 1)).float()
    w2c, K = pose_to_camera(enc, 280, 518)
    R = Rotation.from_quat(q / np.linalg.norm(q, axis=1, keepdims=True)).as_matrix()  # (x, y, z, w)
    np.testing.assert_allclose(w2c[:, :3, :3].numpy(), R, atol=1e-5)
    np.testing.assert_allclose(w2c[:, :3, 3].numpy(), t, atol=1e-6)
    np.testing.assert_allclose(K[:, 1, 1].numpy(), 140 / np.tan(fov[:, 0] / 2), rtol=1e-5)  # fov_v -> fy
    np.testing.assert_allclose(K[:, 0, 0].numpy(), 259 / np.tan(fov[:, 1] / 2), rtol=1e-5)  # fov_h -> fx
    assert K[0, 0, 2] == 259 and K[0, 1, 2] == 140


def test_rope_matches_a_table_lookup_restatement():
    """VGGT's RoPE builds cos/sin tables over integer positions and looks them up per token; ours computes
    the angles directly. Same numbers."""
    from objvid.depth.vggt.layers import Rope2D, grid_positions

    x = torch.randn(2, 3, 12, 16)  # (B, heads, N, D)
    pos = grid_positions(2, 3, 4, "cpu")
    got = Rope2D(100.0)(x, pos)

    def one_axis(t, p):
        d = t.shape[-1]
        inv = 1.0 / (100.0 ** (torch.arange(0, d, 2).float() / d))
        table = torch.outer(torch.arange(int(p.max()) + 1).float(), inv)
        table = torch.cat([table, table], -1)
        cos = torch.nn.functional.embedding(p, table.cos())[:, None]
        sin = torch.nn.functional.embedding(p, table.sin())[:, None]
        rot = torch.cat([-t[..., d // 2 :], t[..., : d // 2]], -1)
        return t * cos + rot * sin

    want = torch.cat([one_axis(x[..., :8], pos[..., 0]), one_axis(x[..., 8:], pos[..., 1])], -1)
    torch.testing.assert_close(got, want)
