"""UpdateScene and GEN3C's depth alignment (objvid.cache.align): a known inverse-depth scale/shift is recovered,
the view becomes the newest of 2 buffer slots, objects stay a separate layer fused into both slots."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
import torch
from cache_service_helpers import (
    H,
    W,
    cloud_msg,
    cube_cloud,
    decode_frame,
    matrix_transform,
    rgbd,
    running,
    stub_for,
    translation,
    view_msg,
    w2c_shift,
)

from objvid.cache.align import AlignmentError, align_depth, fit_inverse_depth_affine
from objvid.runtime import wire
from objvid.v1 import cache_pb2

SCALE, SHIFT = 2.0, 0.05


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny tensors: one thread avoids OpenMP spin-waits on a shared CI machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# 1/d_true = SCALE / d_view + SHIFT


def ramp_rgbd():
    """Floor (1 below the camera) and a back wall tilted about the x axis: many distinct depths, and every depth
    is unchanged when the camera moves along x. -> (image, depth, K)."""
    image, _, K = rgbd()
    v = np.arange(H, dtype=np.float64)[:, None].repeat(W, 1)
    slope = (v - K[1, 2]) / K[1, 1]
    floor = np.where(slope > 1e-3, 1.0 / np.maximum(slope, 1e-3), np.inf)
    wall = 4.0 / (1.0 - 1.5 * slope)
    return image, np.minimum(floor, wall).astype(np.float32), K


def distort(depth_true: np.ndarray) -> np.ndarray:
    """The view's depth in 'monocular units': inverse depth scaled and shifted away from the truth."""
    return (1.0 / ((1.0 / depth_true - SHIFT) / SCALE)).astype(np.float32)


def test_rigid_fit_recovers_scale_and_shift_exactly():
    _, depth, _ = ramp_rgbd()
    target = torch.from_numpy(depth)
    scale, shift, fit = fit_inverse_depth_affine(
        torch.from_numpy(distort(depth)), target, torch.ones_like(target, dtype=torch.bool)
    )
    assert scale == pytest.approx(SCALE, rel=1e-5) and shift == pytest.approx(SHIFT, abs=1e-6)
    # Only pixels strictly inside both 10-90% quantile ranges take part.
    assert 0 < int(fit.sum()) < 0.8 * depth.size + 1


def test_align_depth_rigid_and_non_rigid():
    _, depth, K = ramp_rgbd()
    target = torch.from_numpy(depth)
    mask = torch.ones_like(target, dtype=torch.bool)
    src = torch.from_numpy(distort(depth))
    K_t, w2c = torch.from_numpy(K), torch.from_numpy(w2c_shift(0.1, yaw_deg=10))
    rigid, valid, rep = align_depth(src, target, mask, K_t, w2c, method="rigid")
    assert valid.all() and rep.method == "rigid"
    np.testing.assert_allclose(rigid.numpy(), depth, rtol=1e-4)
    assert rep.error_after < 1e-3 < rep.error_before
    # Perfect affine data: the non-rigid stage only moves by Adam's normalised steps on float round-off
    # (at most 100 x lr = 0.1 in theory; in practice sign changes keep it near 1).
    nonrigid, _, rep2 = align_depth(src, target, mask, K_t, w2c)
    np.testing.assert_allclose(nonrigid.numpy(), rigid.numpy(), rtol=5e-3)
    assert rep2.pixels_used == rep.pixels_used

    # A smooth non-affine error: the per-pixel scale map removes part of what the affine fit cannot.
    v, u = np.mgrid[0:H, 0:W]
    bump = (1 + 0.04 * np.exp(-((u - 40) ** 2 + (v - 30) ** 2) / 60.0)).astype(np.float32)
    warped_target = target * torch.from_numpy(bump)
    _, _, rep_r = align_depth(src, warped_target, mask, K_t, w2c, method="rigid")
    _, _, rep_n = align_depth(src, warped_target, mask, K_t, w2c)
    assert rep_n.error_after < 0.9 * rep_r.error_after


def test_scale_refinement_equals_a_torch_optim_adam_loop():
    from objvid.cache import align

    _, depth, K = ramp_rgbd()
    d = torch.from_numpy(depth)
    target = d * torch.from_numpy(
        (1 + 0.04 * np.random.default_rng(0).random(depth.shape)).astype(np.float32)
    )
    mask = torch.from_numpy(np.random.default_rng(1).random(depth.shape) > 0.2)
    K_t, T = torch.from_numpy(K).float(), torch.from_numpy(w2c_shift(0.1, yaw_deg=20)).float()
    ours = align.refine_scale_map(d, target, mask, K_t, T)
    # Plain reference: full-image unprojection (upstream's layout), torch.optim.Adam.
    v, u = torch.meshgrid(
        torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32), indexing="ij"
    )
    rays = torch.stack([u, v, torch.ones_like(u)], -1) @ torch.linalg.inv(K_t).T

    def unproject(z):
        return (z[..., None] * rays) @ T[:3, :3].T + T[:3, 3]

    sc = torch.ones_like(d, requires_grad=True)
    opt = torch.optim.Adam([sc], lr=1e-3)
    box = torch.full((1, 1, 3, 3), 1 / 9)
    for _ in range(100):
        data = (unproject(d * sc)[mask] - unproject(target)[mask]).abs().mean()
        smooth = (torch.nn.functional.conv2d(sc[None, None], box, padding=1)[0, 0] - sc).abs().mean()
        opt.zero_grad()
        (data + 0.1 * smooth).backward()
        opt.step()
    torch.testing.assert_close(ours, sc.detach(), rtol=0, atol=1e-6)
    assert (ours - 1).abs().max() > 0.01  # it did move


def test_align_needs_cache_coverage():
    _, depth, K = ramp_rgbd()
    none = torch.zeros(depth.shape, dtype=torch.bool)
    with pytest.raises(AlignmentError, match="skip_alignment"):
        align_depth(torch.from_numpy(depth), torch.from_numpy(depth), none, torch.from_numpy(K), torch.eye(4))


def _render(stub, sid, w2c, K, mode=1, outputs=(1, 2, 3, 4)):
    req = cache_pb2.RenderRequest(
        scene_id=sid,
        camera=wire.encode_camera(K, w2c, W, H),
        options=cache_pb2.RenderOptions(mode=mode, outputs=list(outputs)),
    )
    return decode_frame(stub.Render(req, timeout=30).frame)


def test_update_scene_aligns_adds_a_slot_and_keeps_objects_separate():
    image, depth, K = ramp_rgbd()
    new_cam = w2c_shift(0.05)  # pure x move: floor and wall depths are unchanged at the new camera
    with running() as server:
        _, stub = stub_for(server)
        stub.CreateScene(cache_pb2.CreateSceneRequest(scene_id="long", rgbd=view_msg(image, depth, K)))
        pts, cols = cube_cloud(size=0.5)
        oid = stub.AddObject(
            cache_pb2.AddObjectRequest(
                scene_id="long",
                cloud=cloud_msg(pts, cols),
                transform=matrix_transform(translation(0.0, 0.4, 1.6)),
            )
        ).object.object_id
        before = stub.ExportScene(
            cache_pb2.ExportSceneRequest(scene_id="long", exclude_objects=True)
        ).num_points

        new_image = np.random.default_rng(5).integers(0, 256, (H, W, 3), dtype=np.uint8)
        resp = stub.UpdateScene(
            cache_pb2.UpdateSceneRequest(
                scene_id="long", view=view_msg(new_image, distort(depth), K, new_cam)
            ),
            timeout=60,
        )
        rep = resp.alignment
        assert rep.scale == pytest.approx(SCALE, rel=0.02) and rep.shift == pytest.approx(SHIFT, abs=0.01)
        assert rep.pixels_used > 0.3 * H * W and rep.error_after < 0.05 * rep.error_before
        assert resp.scene.num_buffer_slots == 2

        # The newest slot (0) seen from its own camera is the aligned depth: close to the true depth.
        got = _render(stub, "long", new_cam, K, mode=3, outputs=(1, 2, 3))
        m = got["mask"][0]
        assert m.mean() > 0.9
        rel = np.abs(got["depth"][0][m] / depth[m] - 1)
        assert np.median(rel) < 0.005 and np.mean(rel < 0.02) > 0.98  # a few border pixels blend with holes
        np.testing.assert_array_equal(got["rgb"][0][m], new_image[m])

        # Objects are fused into both slots and never baked into the scene points.
        fused = _render(stub, "long", new_cam, K)
        assert fused["rgb"].shape[0] == 2
        for slot in range(2):
            assert (fused["object_mask"][slot] == oid).sum() > 20
        ex = stub.ExportScene(cache_pb2.ExportSceneRequest(scene_id="long", exclude_objects=True)).num_points
        full = stub.ExportScene(cache_pb2.ExportSceneRequest(scene_id="long")).num_points
        assert ex > before and full - ex == len(pts)

        # A further view replaces slot 0; the seed view stays in the last slot.
        resp2 = stub.UpdateScene(
            cache_pb2.UpdateSceneRequest(
                scene_id="long", view=view_msg(new_image, depth, K, new_cam), skip_alignment=True
            )
        )
        assert resp2.scene.num_buffer_slots == 2 and resp2.alignment.scale == 0
        seed = _render(stub, "long", np.eye(4), K, mode=3, outputs=(1, 2))
        np.testing.assert_array_equal(seed["rgb"][1][seed["mask"][1]], image[seed["mask"][1]])


def test_update_scene_errors():
    image, depth, K = ramp_rgbd()
    with running() as server:
        _, stub = stub_for(server)
        stub.CreateScene(cache_pb2.CreateSceneRequest(scene_id="u", rgbd=view_msg(image, depth, K)))
        away = w2c_shift(yaw_deg=180)  # the cache is behind this camera: nothing to align to
        with pytest.raises(grpc.RpcError) as exc:
            stub.UpdateScene(cache_pb2.UpdateSceneRequest(scene_id="u", view=view_msg(image, depth, K, away)))
        assert (
            exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "skip_alignment" in exc.value.details()
        )
        bad = view_msg(image, depth, K, w2c_shift(0.05))
        bad.camera.world_to_camera[0] = 3.0
        with pytest.raises(grpc.RpcError) as exc:
            stub.UpdateScene(cache_pb2.UpdateSceneRequest(scene_id="u", view=bad))
        assert "view.camera.world_to_camera: not a rigid transform" in exc.value.details()
        assert stub.GetScene(cache_pb2.GetSceneRequest(scene_id="u")).scene.num_buffer_slots == 1
