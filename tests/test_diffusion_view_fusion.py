"""--view-fusion latent-max: the multi-view fork's per-latent-location vector-max over every view's warp
latents, against an independent loop restatement, and through the gen3c model and the Triton options."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_diffusion_gen3c import T, _record_net_inputs, model, opts, small, weights_dirs  # noqa: F401

from objvid.diffusion.base import GenerateOptions, validate_chunk
from objvid.diffusion.gen3c import view_fusion
from objvid.diffusion.triton_io import decode_options, prepare_chunk
from objvid.v1 import diffusion_pb2


def reference_vector_max(warp: torch.Tensor, mask: torch.Tensor):
    """The fork's rule, one latent location at a time: the view with the largest channel L2 norm wins
    (first on ties) and gives both its warp and its mask latent."""
    V, C, Tl, h, w = warp.shape
    out_w, out_m = torch.empty(C, Tl, h, w), torch.empty(C, Tl, h, w)
    for t in range(Tl):
        for y in range(h):
            for x in range(w):
                norms = [float(torch.sqrt((warp[v, :, t, y, x].double() ** 2).sum())) for v in range(V)]
                best = max(range(V), key=lambda v: (norms[v], -v))
                out_w[:, t, y, x] = warp[best, :, t, y, x]
                out_m[:, t, y, x] = mask[best, :, t, y, x]
    return out_w, out_m


def test_vector_max_matches_the_reference():
    g = torch.Generator().manual_seed(0)
    for V in (1, 2, 5):
        warp = torch.randn(V, 4, 3, 5, 6, generator=g)
        mask = torch.randn(V, 4, 3, 5, 6, generator=g)
        warp[-1, :, 0, 0, 0] = warp[0, :, 0, 0, 0]  # a tie: the first view wins
        got = view_fusion.vector_max(warp, mask)
        want = reference_vector_max(warp, mask)
        torch.testing.assert_close(got[0], want[0], rtol=0, atol=0)
        torch.testing.assert_close(got[1], want[1], rtol=0, atol=0)


def pool_encoder(video: torch.Tensor) -> torch.Tensor:
    """Stand-in VAE: (1, 3, T, H, W) -> (1, 3, T, H/4, W/4) average pool (keeps where things are)."""
    return F.avg_pool3d(video, (1, 4, 4))


def test_latent_max_takes_each_region_from_the_view_that_sees_it():
    t, h, w = 3, 8, 16
    renders = np.full((t, 3, h, w, 3), 128, np.uint8)  # 128 ~ 0 in [-1, 1]: small latent norm
    masks = np.zeros((t, 3, h, w), np.uint8)
    renders[:, 0, :, :8] = 250  # view 0 sees the left half brightly
    renders[:, 1, :, 8:] = 250  # view 1 the right half
    masks[:, 0, :, :8] = 1
    masks[:, 1, :, 8:] = 1
    lat = view_fusion.encode_latent_max(pool_encoder, renders, masks, 2, "cpu", torch.float32)
    assert lat.shape == (1, 12, t, 2, 4)  # [warp, mask, 0, 0] x 3 channels
    warp, mask, rest = lat[0, :3], lat[0, 3:6], lat[0, 6:]
    bright = 250 / 127.5 - 1
    assert torch.allclose(warp, torch.full_like(warp, bright))  # both halves from the view that saw them
    assert torch.allclose(mask, torch.ones_like(mask))  # and their masks with them
    assert torch.count_nonzero(rest) == 0
    with pytest.raises(ValueError, match=r"views V must be in \[1, 8\]"):
        view_fusion.encode_latent_max(pool_encoder, np.zeros((1, 9, h, w, 3), np.uint8),
                                      np.zeros((1, 9, h, w), np.uint8), 2, "cpu", torch.float32)  # fmt: skip


def test_options_and_chunk_checks():
    msg = diffusion_pb2.GenerateOptions(view_fusion=diffusion_pb2.VIEW_FUSION_LATENT_MAX)
    assert decode_options(msg.SerializeToString()).view_fusion == "latent-max"
    assert decode_options(None).view_fusion == "select"
    with pytest.raises(ValueError, match="view_fusion"):
        GenerateOptions(view_fusion="mean").validate()
    r = np.zeros((2, 3, 16, 16, 3), np.uint8)
    m = np.zeros((2, 3, 16, 16), np.uint8)
    first = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(ValueError, match=r"buffer slots N must be in \[1, 2\], got 3"):
        validate_chunk(first, r, m)
    assert validate_chunk(first, r, m, max_slots=8).num_slots == 3

    class Dummy:
        def check_frames(self, n):
            pass

    inputs = {
        "FIRST_FRAME": first,
        "RENDERS": r,
        "MASKS": m,
        "OPTIONS": np.array([msg.SerializeToString()], object),
    }
    chunk, options = prepare_chunk(Dummy(), inputs)
    assert chunk.num_slots == 3 and options.view_fusion == "latent-max"
    with pytest.raises(ValueError, match=r"\[1, 2\], got 3"):
        prepare_chunk(Dummy(), {**inputs, "OPTIONS": None})


def test_gen3c_model_conditions_on_the_fused_views(model, small):  # noqa: F811
    rng = np.random.default_rng(3)
    renders = np.concatenate(
        [small.renders, rng.integers(0, 256, small.renders[:, :1].shape, dtype=np.uint8)], 1
    )
    masks = np.concatenate([small.masks, small.masks[:, :1]], 1)
    three = validate_chunk(small.first_frame, renders, masks, max_slots=8)
    with pytest.raises(ValueError, match="buffer slots N must be <= 2"):
        model.generate(three, opts(num_steps=1))
    seen, handle = _record_net_inputs(model)
    try:
        video = model.generate(three, opts(num_steps=1, view_fusion="latent-max"))
    finally:
        handle.remove()
    assert video.shape == (T, 32, 48, 3)
    x = seen[0][:1]  # (1, 16 + 1 + 64, T', h, w): noisy latent, condition mask, cache latents
    c = model.config
    vae = model.vae
    with torch.inference_mode():
        want = view_fusion.encode_latent_max(vae.encode, renders, masks, c.frame_buffer_max, "cpu", vae.dtype)
    cache = x[0, 17 : 17 + 64].float()
    torch.testing.assert_close(cache[:32], want[0, :32].to(cache.dtype).float(), rtol=1e-3, atol=1e-3)
    assert torch.count_nonzero(cache[32:]) == 0  # slot 1 stays empty
