"""Measuring the plain-video path's scale fit against known geometry.

Random-weight models give no real depth or poses, so the accuracy of ``objvid.client.video_plain.estimate``
is measured with substitutes of known error in place of the two models, on the synthetic video of
:mod:`objvid.testing.video` (exact depth and cameras):

* depth model (Lift): frame i's true depth times an unknown scale u_i (log-uniform in [0.5, 2]), times a
  smooth per-frame bias field (a random plane over the image, up to +-``bias``) and per-pixel noise
  (``noise``, relative); K with the focal off by up to +-2 %;
* geometry model (LiftViews): per window, the true depths and the true poses re-expressed from the window's
  first camera, at an unknown window scale b_k (log-uniform in [0.5, 2]), depth noise ``ref_noise``.

:func:`measure` runs ``estimate`` with them and reports per-frame errors against the truth after removing
the one global scale no monocular method can know (frame 0's).
"""

from __future__ import annotations

import numpy as np

from objvid.client.frames import LiftedView


class SubstituteModels:
    """``lift`` / ``lift.posed`` callables with known answers for the frames of ``video`` (a dict of
    :func:`objvid.testing.video.synthetic_rgbd_video`); frames are asked for in order (Lift in batches,
    LiftViews in windows sharing one frame) and checked pixel for pixel."""

    def __init__(self, video: dict, seed: int = 0, noise: float = 0.02, bias: float = 0.03,
                 ref_noise: float = 0.01):  # fmt: skip
        self.video = video
        self.rng = np.random.default_rng(seed)
        F, H, W = video["depth"].shape
        self.next_lift, self.next_window = 0, 0
        self.unknown = np.exp(self.rng.uniform(np.log(0.5), np.log(2.0), F))
        y, x = np.mgrid[0:H, 0:W]
        x, y = x / (W - 1) - 0.5, y / (H - 1) - 0.5
        tilt = self.rng.uniform(-2 * bias, 2 * bias, (F, 2))
        field = 1 + tilt[:, :1, None] * x + tilt[:, 1:, None] * y  # within 1 +- bias
        self.mono = (video["depth"] * self.unknown[:, None, None] * field
                     * (1 + noise * self.rng.standard_normal((F, H, W)))).astype(np.float32)  # fmt: skip
        self.focal = 1 + self.rng.uniform(-0.02, 0.02, F)
        self.ref_noise = ref_noise
        self.window_scales: list[float] = []
        self.lift_fn = self._make()

    def _frames(self, images, start: int) -> list[int]:
        """The frame indices of ``images``, expected from ``start`` on (checked pixel for pixel)."""
        idx = list(range(start, start + len(images)))
        for i, im in zip(idx, images, strict=True):
            if not np.array_equal(im, self.video["rgb"][i]):
                raise ValueError(f"substitute models: expected frame {i}")
        return idx

    def lift(self, images, width, height, **_):
        out = []
        idx = self._frames(images, self.next_lift)
        self.next_lift = idx[-1] + 1
        for i in idx:
            K = self.video["K"][i].copy()
            K[0, 0] *= self.focal[i]
            K[1, 1] *= self.focal[i]
            out.append(LiftedView(None, self.mono[i], self.video["mask"][i].copy(), K, "substitute-mono"))
        return out

    def posed(self, images, width, height):
        idx = self._frames(images, self.next_window)  # windows share one frame
        self.next_window = idx[-1]
        b = float(np.exp(self.rng.uniform(np.log(0.5), np.log(2.0))))
        self.window_scales.append(b)
        base = np.linalg.inv(self.video["w2c"][idx[0]])
        out = []
        for i in idx:
            w2c = self.video["w2c"][i] @ base
            w2c[:3, 3] *= b
            d = (
                self.video["depth"][i]
                * b
                * (1 + self.ref_noise * self.rng.standard_normal(self.video["depth"][i].shape))
            )
            out.append(LiftedView(None, d.astype(np.float32), self.video["mask"][i].copy(), self.video["K"][i].copy(),
                                  "substitute-geometry", w2c))  # fmt: skip
        return out

    def _make(self):
        def lift(images, width, height, **kw):
            return self.lift(images, width, height, **kw)

        lift.posed = self.posed
        return lift


def frame_errors(video: dict, depth: np.ndarray, mask: np.ndarray, w2c: np.ndarray | None = None) -> dict:
    """Per-frame errors of estimated depth (F, H, W) (and w2c (F, 4, 4)) against the truth, after dividing
    by the global scale g = median(depth_0 / true_0): scale (|median(depth_i / true_i) / g - 1|), absrel
    (mean |depth_i / g - true_i| / true_i) and, with w2c, the camera centre error over the camera's travel."""
    truth = video["depth"]
    g = float(np.median(depth[0][mask[0]] / truth[0][mask[0]]))
    scale, absrel, centre = [], [], []
    for i in range(len(truth)):
        m = mask[i] & (truth[i] > 0)
        scale.append(abs(float(np.median(depth[i][m] / truth[i][m])) / g - 1))
        absrel.append(float(np.mean(np.abs(depth[i][m] / g - truth[i][m]) / truth[i][m])))
        if w2c is not None:
            c_est = -w2c[i][:3, :3].T @ w2c[i][:3, 3] / g
            c_true = -video["w2c"][i][:3, :3].T @ video["w2c"][i][:3, 3]
            centre.append(float(np.linalg.norm(c_est - c_true)))
    out = {"global_scale": g, "scale": scale, "absrel": absrel}
    if w2c is not None:
        t = video["w2c"][:, :3, 3]
        travel = float(
            np.linalg.norm(
                np.diff(-np.einsum("fji,fj->fi", video["w2c"][:, :3, :3], t), axis=0), axis=1
            ).sum()
        )
        out.update(centre=centre, travel=travel)
    return out


def measure(video: dict, static: bool, seed: int = 0, **noise) -> dict:
    """``estimate`` on ``video`` with the substitutes -> {"before": errors of the raw monocular depth,
    "after": errors of the fitted clip, "window_scales": [...]} (see :func:`frame_errors`)."""
    from objvid.client.video_plain import estimate

    models = SubstituteModels(video, seed, **noise)
    geo = estimate(video["rgb"], models.lift_fn, static, "synthetic")
    before = frame_errors(video, models.mono, video["mask"])
    floor = frame_errors(video, models.mono / models.unknown[:, None, None], video["mask"])["absrel"]
    after = frame_errors(video, geo.depth, geo.mask, None if static else geo.w2c)
    return {"before": before, "after": after, "absrel_floor": floor, "window_scales": models.window_scales,
            "record": geo.record}  # fmt: skip


def main() -> None:
    """``python -m objvid.testing.video_plain``: the table of docs/client.md (121 frames, 64x112)."""
    from objvid.testing.video import synthetic_rgbd_video

    print(
        "| camera | seed | scale error before (max) | scale error after (mean / max) | absrel after (mean / max) "
        "| absrel floor (mean) | camera centre error (max, travel) | frames 0/30/60/90/120 scale error |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for static in (True, False):
        video = synthetic_rgbd_video(frames=121, height=64, width=112, static_camera=static)
        for seed in (0, 1, 2):
            r = measure(video, static, seed)
            b, a = r["before"], r["after"]
            cam = "-" if static else f"{max(a['centre']):.4f} of {a['travel']:.2f}"
            picks = " / ".join(f"{100 * a['scale'][i]:.2f}" for i in (0, 30, 60, 90, 120))
            print(f"| {'static' if static else 'moving'} | {seed} | {100 * max(b['scale']):.1f} % "
                  f"| {100 * np.mean(a['scale']):.2f} / {100 * max(a['scale']):.2f} % "
                  f"| {100 * np.mean(a['absrel']):.2f} / {100 * max(a['absrel']):.2f} % "
                  f"| {100 * np.mean(r['absrel_floor']):.2f} % | {cam} | {picks} % |")  # fmt: skip


if __name__ == "__main__":
    main()
