"""GEN3C building blocks: sampler vs upstream's scheduler loop, conditioning layout, attention fast path vs
diffusers' reference, runtime channel layout vs diffusers' own, memory policy, weight files."""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch

from objvid.diffusion.gen3c import conditioning, memory, sampler, transformer, weights
from objvid.diffusion.gen3c.config import Gen3cConfig, transformer_config_tiny
from objvid.diffusion.gen3c.model import bf16_round, video_to_uint8

# -- sampler -------------------------------------------------------------------------------------------------


def upstream_scheduler():
    from diffusers import EDMEulerScheduler

    return EDMEulerScheduler(sigma_max=80, sigma_min=0.0002, sigma_data=0.5)


def test_schedule_matches_upstream_scheduler():
    ref = upstream_scheduler()
    ref.set_timesteps(35)
    ours = sampler.EdmSchedule()
    sig = ours.sigmas(35)
    assert torch.equal(sig, ref.sigmas.float())
    assert sig[0] == pytest.approx(80.0) and sig[34] == pytest.approx(0.0002) and sig[35] == 0
    assert ours.init_noise_sigma == ref.init_noise_sigma
    for i in (0, 17, 34):
        s = float(sig[i])
        assert ours.c_noise(s) == pytest.approx(float(ref.timesteps[i]), rel=1e-6)
        assert ours.c_in(s) == pytest.approx(float(ref._get_conditioning_c_in(sig[i])), rel=1e-6)
    # sigma <= condition_augment_sigma (0.001) on the last two of 35 steps: no condition replacement there.
    assert [float(s) <= 0.001 for s in sig[:35]].count(True) == 2


def toy_net(x_scaled: torch.Tensor, c_noise: float, uncond: bool) -> torch.Tensor:
    """A deterministic stand-in for the DiT output F (depends on input, noise level and branch)."""
    return torch.tanh(0.7 * x_scaled + 0.1 * c_noise) * (0.5 if uncond else 1.0) + (0.2 if uncond else 0.0)


def upstream_sample(noise, gt, indicator, guidance, steps, aug_sigma, aug_noise):
    """Upstream ``DiffusionV2WModel.generate_samples_from_batch`` in float32, written against diffusers'
    EDMEulerScheduler exactly as upstream calls it (scale_model_input, step, the reverse preconditioning)."""
    sch = upstream_scheduler()
    sch.set_timesteps(steps)
    sd = sch.config.sigma_data
    xt = noise * sch.init_noise_sigma
    for t in sch.timesteps:
        sch._init_step_index(t)
        sigma = sch.sigmas[sch.step_index]
        ind = torch.zeros_like(indicator) if aug_sigma >= sigma else indicator
        aug = sch.precondition_inputs(gt + aug_noise * aug_sigma, aug_sigma)
        aug_unscaled = aug / (1 / ((sigma**2 + sd**2) ** 0.5))
        new_xt = ind * aug_unscaled + (1 - ind) * xt
        scaled = sch.scale_model_input(new_xt, timestep=t)
        out_c = toy_net(scaled, float(t), False)
        out_u = toy_net(scaled, float(t), True)
        out = out_c + guidance * (out_c - out_u)
        c_skip = sd**2 / (sigma**2 + sd**2)
        c_out = sigma * sd / (sigma**2 + sd**2) ** 0.5
        latent_unscaled = (gt - c_skip * new_xt) / c_out
        out = ind * latent_unscaled + (1 - ind) * out
        xt = sch.step(out, t, new_xt).prev_sample
    return xt


@pytest.mark.parametrize("guidance", [0.0, 1.0, 3.5])
def test_sampler_reproduces_upstream_loop(guidance):
    shape = (1, 4, 3, 2, 2)
    noise = sampler.initial_noise(shape, seed=3)
    gt = torch.randn(shape, generator=torch.Generator().manual_seed(9))
    aug = sampler.augment_noise(shape, seed=3)
    ind = conditioning.condition_indicator(3, 1)
    calls = []

    def denoise(x, c_noise, with_uncond):
        calls.append(with_uncond)
        return toy_net(x, c_noise, False), (toy_net(x, c_noise, True) if with_uncond else None)

    ours = sampler.sample(denoise, noise, gt, ind, sampler.EdmSchedule(), 12, guidance, 0.001, aug)
    ref = upstream_sample(noise, gt, ind, guidance, 12, 0.001, aug)
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-4)
    assert calls == [guidance != 0] * 12
    torch.testing.assert_close(
        ours[:, :, :1], gt[:, :, :1], rtol=0, atol=0.01
    )  # condition frame ~ clean latent


def test_noises_are_seeded_and_augment_noise_is_upstreams():
    a = sampler.initial_noise((2, 3), 5)
    assert torch.equal(a, sampler.initial_noise((2, 3), 5)) and not torch.equal(
        a, sampler.initial_noise((2, 3), 6)
    )
    ref = np.random.RandomState(5).standard_normal((2, 3)).astype(np.float32)
    assert np.array_equal(sampler.augment_noise((2, 3), 5).numpy(), ref)
    assert sampler.augment_noise((4,), 2**40 + 3).shape == (4,)


# -- conditioning --------------------------------------------------------------------------------------------


def mean_encoder(video: torch.Tensor) -> torch.Tensor:
    """Stand-in VAE: (1, 3, T, H, W) -> (1, 16, 2, 1, 1) filled with the video's mean."""
    return video.mean().expand(1, 16, 2, 1, 1).clone()


def test_cache_latents_order_and_empty_slots():
    t, h, w = 9, 16, 16
    renders = np.zeros((t, 2, h, w, 3), np.uint8)
    masks = np.zeros((t, 2, h, w), np.uint8)
    renders[:, 0] = 191  # warp_0 -> 191 / 127.5 - 1
    masks[:, 0] = 1  # mask_0 -> +1
    renders[:, 1] = 64  # warp_1
    # mask_1 all holes -> -1
    lat = conditioning.encode_cache_latents(mean_encoder, renders, masks, 2, "cpu", torch.float32)
    assert lat.shape == (1, 64, 2, 1, 1)
    blocks = [float(lat[0, 16 * i : 16 * (i + 1)].unique()) for i in range(4)]
    assert blocks == pytest.approx([191 / 127.5 - 1, 1.0, 64 / 127.5 - 1, -1.0], abs=1e-6)
    one = conditioning.encode_cache_latents(
        mean_encoder, renders[:, :1], masks[:, :1], 2, "cpu", torch.float32
    )
    assert torch.equal(one[:, :32], lat[:, :32]) and torch.count_nonzero(one[:, 32:]) == 0
    with pytest.raises(ValueError, match="buffer slots N must be in \\[1, 1\\]"):
        conditioning.encode_cache_latents(mean_encoder, renders, masks, 1, "cpu", torch.float32)


def test_first_frame_video_and_mask_video():
    frame = np.arange(4 * 4 * 3, dtype=np.uint8).reshape(4, 4, 3) * 5
    vid = conditioning.first_frame_video(frame, 9, "cpu", torch.float32)
    assert vid.shape == (1, 3, 9, 4, 4)
    torch.testing.assert_close(vid[0, :, 0], torch.from_numpy(frame).permute(2, 0, 1).float() / 127.5 - 1)
    assert torch.count_nonzero(vid[:, :, 1:]) == 0  # padding frames are 0 = mid grey
    m = conditioning.mask_video(np.array([[[0, 1]]], np.uint8), "cpu", torch.float32)
    assert m.shape == (1, 3, 1, 1, 2) and m[0, :, 0, 0].tolist() == [[-1.0, 1.0]] * 3
    ind = conditioning.condition_indicator(4, 1)
    assert ind.flatten().tolist() == [1, 0, 0, 0]
    assert conditioning.condition_mask(ind, 2, 3).shape == (1, 1, 4, 2, 3)


def test_video_to_uint8_truncates_like_upstream():
    x = torch.tensor([-1.5, -1.0, 0.0, 0.999, 1.0, 2.0]).view(1, 1, 1, 1, 6).expand(1, 3, 1, 1, 6)
    out = video_to_uint8(x)
    assert out.shape == (1, 1, 6, 3) and out[0, 0, :, 0].tolist() == [0, 0, 127, 254, 255, 255]
    assert bf16_round(24.0) == 24.0 and bf16_round(29.97) == 30.0


# -- transformer ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_net():
    torch.manual_seed(0)
    net = transformer.Gen3cNet(transformer.build_transformer(transformer_config_tiny()).eval())
    for p in net.parameters():  # diffusers zero-inits nothing here, but make every weight non-trivial
        p.data.add_(0.05 * torch.randn_like(p))
    return net


def net_inputs(batch=1, t=2, h=4, w=6):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(batch, 16, t, h, w, generator=g)
    step = torch.full((batch,), -0.3)
    text = torch.randn(batch, 8, 16, generator=g)
    ind = conditioning.condition_indicator(t, 1)
    cmask = conditioning.condition_mask(ind, h, w).expand(batch, -1, -1, -1, -1)
    cache = torch.randn(batch, 64, t, h, w, generator=g)
    return x, step, text, cmask, cache


@torch.no_grad()
def test_fast_attention_matches_diffusers_processor(tiny_net):
    args = net_inputs(batch=2)
    transformer.use_fast_attention(tiny_net.transformer, False)
    ref = tiny_net(*args, fps=24.0)
    transformer.use_fast_attention(tiny_net.transformer, True)
    fast = tiny_net(*args, fps=24.0)
    torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-5)
    with transformer.sdpa_backend("math"):
        torch.testing.assert_close(tiny_net(*args, fps=24.0), ref, rtol=1e-5, atol=1e-5)
    assert not torch.equal(tiny_net(*args, fps=12.0), fast)  # fps scales the RoPE time axis
    with pytest.raises(ValueError, match="attention backend"):
        with transformer.sdpa_backend("bogus"):
            pass


@torch.no_grad()
def test_runtime_layout_equals_diffusers_native_layout(tiny_net, monkeypatch):
    """Our explicit channel concat == diffusers' condition_mask + concat_padding_mask path (same weights).
    diffusers resizes the padding mask with torchvision, absent here: a nearest-resize stand-in is enough
    because the mask is already at latent size."""
    from diffusers import CosmosTransformer3DModel
    from diffusers.models.transformers import transformer_cosmos

    def resize(t, size, interpolation=None):
        return torch.nn.functional.interpolate(t, size=size, mode="nearest")

    shim = types.SimpleNamespace(
        functional=types.SimpleNamespace(resize=resize),
        InterpolationMode=types.SimpleNamespace(NEAREST="nearest"),
    )
    monkeypatch.setattr(transformer_cosmos, "transforms", shim, raising=False)
    native = CosmosTransformer3DModel(**transformer_config_tiny()).eval()
    native.load_state_dict(tiny_net.transformer.state_dict())
    transformer.set_qk_norm_eps(native, transformer.UPSTREAM_QK_NORM_EPS)
    x, step, text, cmask, cache = net_inputs()
    ours = tiny_net(x, step, text, cmask, cache, fps=24.0)
    theirs = native(
        hidden_states=x,
        timestep=step,
        encoder_hidden_states=text,
        condition_mask=torch.cat([cmask, cache], 1),
        padding_mask=torch.zeros(1, 1, 4, 6),
        fps=24.0,
        return_dict=False,
    )[0]
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_runtime_config_and_qk_eps():
    cfg = transformer.runtime_config(
        {"_class_name": "X", "in_channels": 81, "concat_padding_mask": True, "max_size": [1, 2, 3]}
    )
    assert cfg == {"in_channels": 82, "concat_padding_mask": False, "max_size": (1, 2, 3)}
    net = transformer.build_transformer(transformer_config_tiny(), device="meta")
    assert all(b.attn2.norm_k.eps == 1e-6 for b in net.transformer_blocks)
    with pytest.raises(ValueError, match="runtime layout"):
        from diffusers import CosmosTransformer3DModel

        with torch.device("meta"):
            transformer.Gen3cNet(CosmosTransformer3DModel(**transformer_config_tiny()))


# -- memory and config ---------------------------------------------------------------------------------------


def test_offload_parsing():
    assert memory.Offload.parse(None).names() == []
    assert memory.Offload.parse("vae, text_encoder").names() == ["text_encoder", "vae"]
    assert memory.Offload.parse(["all"]).names() == list(memory.OFFLOAD_PARTS)
    with pytest.raises(ValueError, match="offload parts must be among"):
        memory.Offload.parse("tokenizer")


def test_check_fits_names_what_to_offload():
    gib = memory.GIB
    sizes = {"transformer": int(14.5 * gib), "text_encoder": 11 * gib, "vae": gib // 4}
    cpu = torch.device("cpu")
    memory.check_fits(cpu, memory.Offload(), sizes, {"transformer": 12 * gib}, "x", total=80 * gib)
    with pytest.raises(memory.GpuMemoryError) as err:
        memory.check_fits(
            cpu, memory.Offload(), sizes, {"transformer": 12 * gib}, "at 704x1280", total=24 * gib
        )
    msg = str(err.value)
    assert "GPU too small for GEN3C at 704x1280" in msg and "the GPU has 24.0 GiB" in msg
    assert "offload: transformer (14.5 GiB), text_encoder (11.0 GiB), vae (0.2 GiB)" in msg
    # Offloading the text encoder and the VAE leaves 14.5 + 12 GiB: fits in 32 GiB.
    memory.check_fits(
        cpu,
        memory.Offload(text_encoder=True, vae=True),
        sizes,
        {"transformer": 12 * gib},
        "x",
        total=32 * gib,
    )
    assert memory.advice(memory.Offload(text_encoder=True, vae=True), sizes, active="transformer").startswith(
        "nothing left"
    )
    memory.check_fits(cpu, memory.Offload(), sizes, {}, "x")  # CPU devices are not checked


def test_gen3c_config_round_trip(tmp_path):
    cfg = Gen3cConfig(chunk_frames=9, text_max_length=8)
    cfg.save(tmp_path)
    assert Gen3cConfig.load(tmp_path) == cfg and cfg.latent_frames == 2 and cfg.transformer_in_channels == 82
    with pytest.raises(ValueError, match="chunk_frames must be 1 \\+ k \\* 8"):
        Gen3cConfig(chunk_frames=10)
    (tmp_path / "gen3c.json").write_text('{"format": "other"}')
    with pytest.raises(ValueError, match="not a GEN3C weights config"):
        Gen3cConfig.load(tmp_path)


def test_component_files_shard_and_load_strictly(tmp_path):
    state = {f"w{i}": torch.full((256,), float(i)) for i in range(5)}
    paths = weights.save_component(tmp_path / "c", "Thing", {"size": (1, 2)}, state, max_shard_bytes=2048)
    assert len(paths) == 3 and (tmp_path / "c" / weights.INDEX_NAME).is_file()
    loaded = weights.read_state_dict(tmp_path / "c")
    assert all(torch.equal(loaded[k], v) for k, v in state.items())
    assert weights.read_config(tmp_path / "c", "Thing")["size"] == [1, 2]
    with pytest.raises(ValueError, match="expected 'Other'"):
        weights.read_config(tmp_path / "c", "Other")
    model = torch.nn.Linear(2, 3)
    with pytest.raises(ValueError, match=r"missing 1: \['bias'\]; unexpected 1: \['extra'\]; wrong shape 1"):
        weights.load_into(model, {"weight": torch.zeros(3, 3), "extra": torch.zeros(1)}, "linear")
