"""The EDM Euler sampler of upstream GEN3C (``DiffusionV2WModel.generate_samples_from_batch``).

Upstream uses diffusers' ``EDMEulerScheduler(sigma_max=80, sigma_min=0.0002, sigma_data=0.5)`` with its
defaults (Karras schedule, rho 7, final sigma 0, first-order Euler, no churn):

- sigmas_i = (sigma_max^(1/rho) + i / (n - 1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho, i < n, then 0;
- start x = randn * sqrt(sigma_max^2 + 1);
- preconditioning: c_in = 1 / sqrt(s^2 + sd^2), c_skip = sd^2 / (s^2 + sd^2), c_out = s sd / sqrt(s^2 + sd^2),
  c_noise = 0.25 ln s; the net sees x * c_in and c_noise; denoised = c_skip x + c_out F;
- each step, while sigma > condition_augment_sigma, the condition region of x is replaced by the clean latent
  plus augment_sigma * noise (a fixed, seeded noise), rescaled as upstream does, and the denoised estimate
  there is the clean latent; for sigma <= augment_sigma (the last two of 35 steps) nothing is replaced;
- CFG on the raw net output: F = F_cond + g (F_cond - F_uncond);
- Euler: x_next = x + (s_next - s) (x - denoised) / s.

Differences from upstream, deliberate: the sampler state and the schedule arithmetic stay in float32 (upstream
rounds x to bf16 after every step and mixes bf16 and float32 sigmas), and the unconditional pass is skipped
when g = 0 (its result is multiplied by zero).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

# denoise(x_scaled (B,C,T,h,w) float32, c_noise float, with_uncond bool) -> (F_cond, F_uncond or None), float32
DenoiseFn = Callable[[torch.Tensor, float, bool], tuple[torch.Tensor, torch.Tensor | None]]


@dataclass(frozen=True)
class EdmSchedule:
    """EDM noise schedule and preconditioning (all scalars float, schedule float32 like diffusers)."""

    sigma_min: float = 0.0002
    sigma_max: float = 80.0
    sigma_data: float = 0.5
    rho: float = 7.0

    def sigmas(self, num_steps: int) -> torch.Tensor:
        """(num_steps + 1,) float32: Karras sigmas from sigma_max down to sigma_min, then 0."""
        if num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {num_steps}")
        ramp = torch.linspace(0, 1, num_steps, dtype=torch.float64)
        lo, hi = self.sigma_min ** (1 / self.rho), self.sigma_max ** (1 / self.rho)
        sig = ((hi + ramp * (lo - hi)) ** self.rho).to(torch.float32)
        return torch.cat([sig, sig.new_zeros(1)])

    @property
    def init_noise_sigma(self) -> float:
        return (self.sigma_max**2 + 1) ** 0.5

    def c_in(self, sigma: float) -> float:
        return 1.0 / math.sqrt(sigma**2 + self.sigma_data**2)

    def c_skip(self, sigma: float) -> float:
        return self.sigma_data**2 / (sigma**2 + self.sigma_data**2)

    def c_out(self, sigma: float) -> float:
        return sigma * self.sigma_data / math.sqrt(sigma**2 + self.sigma_data**2)

    @staticmethod
    def c_noise(sigma: float) -> float:
        return 0.25 * math.log(sigma)


def chunk_seed(seed: int, chunk_index: int) -> int:
    """Generator seed of chunk ``chunk_index`` of a video sampled with ``seed``: ``seed`` itself for chunk 0
    (the single-chunk noise is unchanged), else a 63-bit hash of (seed, chunk_index) through numpy's
    SeedSequence. Upstream seeds its global generator once and draws fresh noise for every chunk; the
    draw order of its whole process cannot be reproduced across services, so objvid derives the seed."""
    if chunk_index == 0:
        return int(seed)
    words = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(seed) >> 32, int(chunk_index)])
    return int(words.generate_state(2, np.uint64)[0] >> np.uint64(1))


def initial_noise(shape: tuple[int, ...], seed: int, chunk_index: int = 0) -> torch.Tensor:
    """Standard normal (shape) float32 from a CPU generator seeded with ``chunk_seed(seed, chunk_index)``
    (device independent): the same seed gives the same video, every chunk gets its own noise."""
    gen = torch.Generator(device="cpu").manual_seed(chunk_seed(seed, chunk_index))
    return torch.randn(shape, generator=gen, dtype=torch.float32)


def augment_noise(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """Condition-augmentation noise as upstream ``misc.arch_invariant_rand``: numpy RandomState(seed)
    standard normal, float32 (seeds >= 2**32 are split into two 32-bit words)."""
    seed = int(seed)
    key = seed if seed < 2**32 else [seed & 0xFFFFFFFF, seed >> 32]
    return torch.from_numpy(np.random.RandomState(key).standard_normal(shape).astype(np.float32))


def sample(
    denoise: DenoiseFn,
    noise: torch.Tensor,
    gt_latent: torch.Tensor,
    indicator: torch.Tensor,
    schedule: EdmSchedule,
    num_steps: int,
    guidance: float,
    condition_augment_sigma: float,
    augment: torch.Tensor,
    on_step: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """Run the sampler; returns the clean latent (B, C, T', h, w) float32.

    noise: standard normal like gt_latent; gt_latent: the clean latent of the padded first-frame video (only
    its condition frames are used); indicator: (1, 1, T', 1, 1), 1 on condition frames; augment: standard normal like gt_latent;
    on_step(step, total) after each step (1-based).
    """
    sigmas = schedule.sigmas(num_steps).tolist()
    x = noise.float() * schedule.init_noise_sigma
    gt = gt_latent.float()
    aug_sigma = float(condition_augment_sigma)
    augmented = gt + augment.to(gt) * aug_sigma
    for i in range(num_steps):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        ind = indicator if aug_sigma < sigma else torch.zeros_like(indicator)
        # Upstream: precondition the augmented latent at augment_sigma, then undo c_in at sigma.
        cond_x = augmented * (schedule.c_in(aug_sigma) / schedule.c_in(sigma))
        x_in = ind * cond_x + (1 - ind) * x
        f_cond, f_uncond = denoise(x_in * schedule.c_in(sigma), schedule.c_noise(sigma), guidance != 0)
        f = f_cond if f_uncond is None else f_cond + guidance * (f_cond - f_uncond)
        denoised = schedule.c_skip(sigma) * x_in + schedule.c_out(sigma) * f
        denoised = ind * gt + (1 - ind) * denoised
        x = x_in + (sigma_next - sigma) * (x_in - denoised) / sigma
        if on_step is not None:
            on_step(i + 1, num_steps)
    return x
