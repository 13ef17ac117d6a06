"""GEN3C's depth alignment for ``UpdateScene`` (``camera_utils.align_depth``, reference section 2.4), pure torch.

A new view lifted from a generated frame has depth in its own (monocular) units. Before it becomes the
newest buffer slot it is aligned to what the cache already shows at that camera:

1. **rigid stage**: an affine fit in *inverse* depth, ``1/d_aligned = scale * (1/d) + shift``, by least
   squares over the pixels whose source and target inverse depths both lie strictly inside their own
   10-90 % quantiles, the target restricted to ``mask > 0`` and ``depth > 0``;
2. **non-rigid stage**: a per-pixel scale map ``sc`` (init 1), Adam (lr 1e-3, 100 iterations) on
   ``mean |unproj(d * sc) - unproj(d_target)|`` over the target mask ``+ 0.1 * mean |box3x3(sc) - sc|``
   (3x3 mean filter, zero padding); the result is ``d * sc``.

Upstream quirk kept: its loss unprojects with the camera-to-world matrix passed where a world-to-camera is
expected, so both point sets are moved by the camera's *w2c*. That rigid motion is the same for both terms,
but an L1 loss is not rotation invariant, so it is reproduced here (``transform`` = the view's w2c).

Deviation (documented): pixels whose aligned depth is not finite or not positive (``scale/d + shift <= 0``,
which upstream leaves as negative or infinite depths) are reported in ``valid`` so the caller can mask them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

#: Fewest pixels the rigid fit accepts (fewer means the cache hardly sees the new view).
MIN_FIT_PIXELS = 16
QUANTILES = (0.1, 0.9)
NUM_ITERS = 100
LEARNING_RATE = 1e-3
SMOOTH_WEIGHT = 0.1
SMOOTH_KERNEL = 3


class AlignmentError(ValueError):
    """The new view cannot be aligned (e.g. the cache covers too few of its pixels)."""


@dataclass
class AlignmentReport:
    """What the alignment did. Depth errors are mean absolute z differences in scene units over the pixels the
    cache covers (target mask > 0, target depth > 0, source depth finite and > 0)."""

    scale: float
    shift: float
    error_before: float
    error_after: float
    pixels_used: int
    method: str = "non_rigid"


def pixel_rays(K: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """K (3, 3) -> (H, W, 3) rays ``K^-1 [u, v, 1]`` with pixel centres at integer (u, v) (GEN3C)."""
    dtype, device = K.dtype, K.device
    v, u = torch.meshgrid(
        torch.arange(height, dtype=dtype, device=device),
        torch.arange(width, dtype=dtype, device=device),
        indexing="ij",
    )
    pix = torch.stack([u, v, torch.ones_like(u)], dim=-1)
    return pix @ torch.linalg.inv(K).T


def fit_inverse_depth_affine(
    source_depth: torch.Tensor, target_depth: torch.Tensor, target_mask: torch.Tensor
) -> tuple[float, float, torch.Tensor]:
    """Rigid stage. source_depth, target_depth (H, W) float; target_mask (H, W) bool/number.

    Returns (scale, shift, fit_mask (H, W) bool) with ``1/d_target ~= scale / d_source + shift``.
    Raises AlignmentError when fewer than MIN_FIT_PIXELS pixels qualify.
    """
    src_inv = 1.0 / source_depth
    tgt_inv = 1.0 / target_depth
    src_valid = src_inv > 0
    tgt_valid = (target_mask > 0) & (target_depth > 0)
    if int(src_valid.sum()) < MIN_FIT_PIXELS or int(tgt_valid.sum()) < MIN_FIT_PIXELS:
        raise AlignmentError(
            f"view: the cache covers only {int(tgt_valid.sum())} pixels of this camera "
            f"(at least {MIN_FIT_PIXELS} needed to align); pass skip_alignment if the depth is already in "
            "scene units"
        )
    q = torch.tensor(QUANTILES, dtype=src_inv.dtype, device=src_inv.device)
    s_lo, s_hi = torch.quantile(src_inv[src_valid], q)
    t_lo, t_hi = torch.quantile(tgt_inv[tgt_valid].to(src_inv.dtype), q)
    fit = (src_inv > s_lo) & (src_inv < s_hi) & (tgt_inv > t_lo) & (tgt_inv < t_hi) & tgt_valid
    n = int(fit.sum())
    if n < MIN_FIT_PIXELS:
        raise AlignmentError(
            f"view: only {n} pixels lie inside the 10-90% inverse-depth quantiles of both the view and the "
            f"cache (at least {MIN_FIT_PIXELS} needed to align)"
        )
    x = src_inv[fit].double()
    A = torch.stack([x, torch.ones_like(x)], dim=1)
    b = tgt_inv[fit].double().unsqueeze(1)
    sol = torch.linalg.lstsq(A.cpu(), b.cpu()).solution  # 2x2 problem: solved on the host in float64
    return float(sol[0, 0]), float(sol[1, 0]), fit


def _box3x3(x: torch.Tensor) -> torch.Tensor:
    k = SMOOTH_KERNEL
    kernel = torch.full((1, 1, k, k), 1.0 / (k * k), dtype=x.dtype, device=x.device)
    return F.conv2d(x[None, None], kernel, padding=k // 2)[0, 0]


def refine_scale_map(
    depth: torch.Tensor,
    target_depth: torch.Tensor,
    target_mask: torch.Tensor,
    K: torch.Tensor,
    transform: torch.Tensor,
    *,
    num_iters: int = NUM_ITERS,
    lr: float = LEARNING_RATE,
    smooth_weight: float = SMOOTH_WEIGHT,
) -> torch.Tensor:
    """Non-rigid stage: per-pixel scale map (H, W) float32 fitted with Adam (see module docstring).

    depth, target_depth (H, W) float32; target_mask (H, W) bool; K (3, 3); transform (4, 4) applied to the
    unprojected camera-space points of both terms (upstream passes the view's w2c here).
    """
    height, width = depth.shape
    m = target_mask.bool()
    rays = pixel_rays(K.to(depth.dtype), height, width)[m]  # (M, 3)
    R = transform[:3, :3].to(depth.dtype)
    t = transform[:3, 3].to(depth.dtype)
    target_pts = (target_depth[m].unsqueeze(1) * rays) @ R.T + t
    d_masked = depth[m].detach()
    sc = torch.ones_like(depth, requires_grad=True)
    adam = _Adam(sc, lr)
    with torch.enable_grad():
        for _ in range(num_iters):
            src_pts = ((d_masked * sc[m]).unsqueeze(1) * rays) @ R.T + t
            data = (src_pts - target_pts).abs().mean()
            smooth = (_box3x3(sc) - sc).abs().mean()
            loss = data + smooth_weight * smooth
            (grad,) = torch.autograd.grad(loss, sc)
            adam.step(grad)
    return sc.detach()


class _Adam:
    """``torch.optim.Adam`` defaults (betas 0.9/0.999, eps 1e-8, no weight decay), same update order.

    Written out because the first ``torch.optim.Adam(...)`` in a process imports torch's compiler stack
    (seconds), which would land on the first UpdateScene request.
    """

    def __init__(self, param: torch.Tensor, lr: float, betas=(0.9, 0.999), eps: float = 1e-8):
        self.param, self.lr, self.betas, self.eps = param, lr, betas, eps
        self.m = torch.zeros_like(param)
        self.v = torch.zeros_like(param)
        self.t = 0

    @torch.no_grad()
    def step(self, grad: torch.Tensor) -> None:
        b1, b2 = self.betas
        self.t += 1
        self.m.lerp_(grad, 1 - b1)
        self.v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
        step_size = self.lr / (1 - b1**self.t)
        denom = (self.v.sqrt() / math.sqrt(1 - b2**self.t)).add_(self.eps)
        self.param.addcdiv_(self.m, denom, value=-step_size)


def align_depth(
    source_depth: torch.Tensor,
    target_depth: torch.Tensor,
    target_mask: torch.Tensor,
    K: torch.Tensor,
    w2c: torch.Tensor,
    *,
    method: str = "non_rigid",
) -> tuple[torch.Tensor, torch.Tensor, AlignmentReport]:
    """Align a new view's depth to the cache render at its camera.

    source_depth (H, W) float32: the new view's z-depth (already cleaned: finite, >= 0).
    target_depth (H, W) float32 and target_mask (H, W) bool: the cache render at the view's camera
    (buffer slot 0, GEN3C splat, scene only). K (3, 3), w2c (4, 4) of the view (any float dtype).
    method: "non_rigid" (GEN3C's default) or "rigid" (inverse-depth affine only).
    Returns (aligned_depth (H, W) float32, valid (H, W) bool, report); ``valid`` is False where the aligned
    depth is not finite or not positive.
    """
    if method not in ("rigid", "non_rigid"):
        raise ValueError(f"method: expected 'rigid' or 'non_rigid', got {method!r}")
    if source_depth.shape != target_depth.shape or source_depth.shape != target_mask.shape:
        raise ValueError(
            f"target_depth: shapes differ (source {tuple(source_depth.shape)}, target "
            f"{tuple(target_depth.shape)}, mask {tuple(target_mask.shape)})"
        )
    source_depth = source_depth.float()
    target_depth = target_depth.float()
    target_mask = target_mask.bool()
    scale, shift, fit = fit_inverse_depth_affine(source_depth, target_depth, target_mask)
    aligned = 1.0 / (scale / source_depth + shift)
    if method == "non_rigid":
        # Degenerate pixels (non-finite rigid result) would turn the whole loss into NaN: leave them out.
        loss_mask = target_mask & torch.isfinite(aligned) & torch.isfinite(target_depth)
        sc = refine_scale_map(aligned, target_depth, loss_mask, K.float(), w2c.float())
        aligned = aligned * sc
    valid = torch.isfinite(aligned) & (aligned > 0)
    covered = target_mask & (target_depth > 0) & (source_depth > 0) & valid
    n_cov = int(covered.sum())
    before = float((source_depth[covered] - target_depth[covered]).abs().mean()) if n_cov else float("nan")
    after = float((aligned[covered] - target_depth[covered]).abs().mean()) if n_cov else float("nan")
    aligned = torch.where(valid, aligned, torch.zeros_like(aligned))
    report = AlignmentReport(scale, shift, before, after, int(fit.sum()), method)
    return aligned, valid, report
