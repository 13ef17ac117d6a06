"""Object fidelity report and object lock on synthetic frames whose answer is known (CPU, small sizes)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from objvid.client import fidelity as fd
from objvid.client import object_lock as lock
from objvid.client.fidelity_stage import FLAG_COLOR, FidelityStage, summary_lines

H, W = 160, 224
CY, CX, RADIUS = 80, 110, 34


def _background(seed: int = 0) -> np.ndarray:
    """A smooth green-brown textured floor (no reds or blues)."""
    rng = np.random.default_rng(seed)
    noise = cv2.GaussianBlur(rng.normal(0, 1, (H, W)).astype(np.float32), (0, 0), 3)
    noise = noise / np.abs(noise).max()
    y = np.linspace(0, 1, H, dtype=np.float32)[:, None]
    bg = np.stack([90 + 30 * noise + 20 * y, 120 + 30 * noise, 60 + 20 * noise + 0 * y], axis=-1)
    return np.clip(bg, 0, 255).astype(np.uint8)


def _object_layer(dx: int = 0, dy: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A red / blue striped disc with a white spot (textured): (colours (H, W, 3) uint8, mask (H, W) bool)."""
    yy, xx = np.mgrid[0:H, 0:W]
    u, v = xx - (CX + dx), yy - (CY + dy)
    mask = u**2 + v**2 <= RADIUS**2
    stripes = ((u + v) // 6) % 2 == 0
    colours = np.where(stripes[..., None], np.array([200, 30, 40]), np.array([40, 50, 190])).astype(np.uint8)
    spot = (u - 10) ** 2 + (v + 8) ** 2 <= 36
    colours[spot] = 240
    return colours, mask


def _compose(bg, colours, mask):
    out = bg.copy()
    out[mask] = colours[mask]
    return out


@pytest.fixture(scope="module")
def scene():
    bg = _background()
    colours, mask = _object_layer()
    render = _compose(bg, colours, mask)
    ids = np.where(mask, 0, -1).astype(np.int16)
    scene_mask = np.ones((H, W), np.uint8)
    rng = np.random.default_rng(1)

    def codec(img):  # +-2 levels of noise, like a light codec
        return np.clip(img.astype(np.int16) + rng.integers(-2, 3, img.shape), 0, 255).astype(np.uint8)

    sc, sm = _object_layer(dx=5)
    recoloured = render.copy()
    recoloured[mask] = render[mask][:, [1, 2, 0]]  # R -> B, G -> R, B -> G inside the object only
    erased = cv2.inpaint(render, mask.astype(np.uint8), 5, cv2.INPAINT_TELEA)
    outputs = {
        "intact": codec(render),
        "relit": codec(np.clip(render.astype(np.float32) * 0.75, 0, 255).astype(np.uint8)),
        "shifted": codec(_compose(bg, sc, sm)),
        "recoloured": codec(recoloured),
        "erased": codec(erased),
    }
    measured = {k: fd.measure_frame(render, scene_mask, ids, out, [0])[0] for k, out in outputs.items()}
    return {"render": render, "ids": ids, "mask": mask, "scene_mask": scene_mask, "outputs": outputs,
            "measured": measured, "bg": bg}  # fmt: skip


def test_intact_and_relit_objects_pass_every_threshold(scene):
    for name in ("intact", "relit"):
        m = scene["measured"][name]
        assert m.evaluated and m.flags == (), (name, m)
        assert m.color_error < 3 and m.ssim > 0.9 and m.silhouette > 0.95 and m.shift_px == 0, (name, m)
    # the relit frame's colour match found the 0.75 lighting change
    np.testing.assert_allclose(scene["measured"]["relit"].gain, 0.75, atol=0.03)


def test_known_failures_get_their_flags(scene):
    m = scene["measured"]
    assert "shift" in m["shifted"].flags and m["shifted"].shift_px == pytest.approx(5, abs=0.5)
    assert "color" in m["recoloured"].flags and m["recoloured"].shift_px == 0
    assert "silhouette" in m["erased"].flags and m["erased"].silhouette < 0.2
    assert m["shifted"].flags == ("shift",) and "shift" not in m["recoloured"].flags


def test_metrics_order_the_outputs_as_expected(scene):
    m = scene["measured"]
    for bad in ("recoloured", "erased"):
        assert m["intact"].color_error < m[bad].color_error, bad
        assert m["intact"].ssim > m[bad].ssim, bad
    for bad in ("shifted", "recoloured", "erased"):
        assert m["intact"].silhouette >= m[bad].silhouette, bad
    assert m["erased"].silhouette < m["shifted"].silhouette < 1.0  # all of it gone vs a few px
    assert m["recoloured"].silhouette > 0.95  # recoloured, but still there: colour_error judges it
    # Look is judged where the object is: the moved object still has the render's colours and texture.
    assert m["shifted"].color_error < 5 < m["recoloured"].color_error
    assert m["shifted"].ssim > 0.9 > m["recoloured"].ssim
    assert m["erased"].shift_px is None  # an object that is gone has no place


def test_masked_ssim_ignores_the_background_and_matches_plain_ssim_inside():
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    region = np.zeros((64, 64), bool)
    region[16:48, 16:48] = True
    b = a.copy()
    b[~region] = 255 - b[~region]  # background repainted: no effect on the object's SSIM
    assert fd.masked_ssim(a, b, region) == pytest.approx(1.0, abs=1e-9)
    c = a.copy()
    c[region] = 255 - c[region]
    assert fd.masked_ssim(a, c, region) < 0.0  # inverted contrast inside


def test_tiny_or_absent_objects_are_not_judged(scene):
    ids = np.full((H, W), -1, np.int16)
    ids[10:15, 10:15] = 0
    m = fd.measure_frame(scene["render"], None, ids, scene["render"], [0, 1])
    assert [x.evaluated for x in m] == [False, False] and m[0].visible_px == 25 and m[1].visible_px == 0
    assert m[0].flags == () and fd.summarize([0], [m[0]])["ssim"] is None


def test_mismatched_shapes_name_what_differs(scene):
    with pytest.raises(ValueError, match="render"):
        fd.measure_frame(scene["render"], None, scene["ids"], scene["render"][:-1], [0])


def test_summary_reports_median_worst_frame_and_flagged_frames(scene):
    m = scene["measured"]
    seq = [m["intact"], m["intact"], m["shifted"], m["intact"], m["erased"]]
    s = fd.summarize([10, 11, 12, 13, 14], seq)
    assert s["evaluated"] == 5 and s["flagged"] == 2 and s["flagged_frames"] == [12, 14]
    assert s["shift_px"]["worst_frame"] == 12 and s["shift_px"]["median"] == 0
    assert s["silhouette"]["worst_frame"] == 14
    assert s["ssim"]["median"] == pytest.approx(m["intact"].ssim, abs=1e-4)


# ---------------------------------------------------------------------------------------------------
# Object lock


def _eroded(mask: np.ndarray, px: int) -> np.ndarray:
    """Independent of the code under test: a square (2 px + 1) erosion."""
    k = np.ones((2 * px + 1, 2 * px + 1), np.uint8)
    return cv2.erode(mask.astype(np.uint8), k, borderValue=0).astype(bool)


@pytest.mark.parametrize("feather", [0.0, 2.0, 4.0])
def test_lock_is_exact_inside_and_untouched_outside(scene, feather):
    out = scene["outputs"]["recoloured"]
    locked, gains = lock.lock_frame(out, scene["render"], scene["ids"], scene["scene_mask"], 1.0, feather)
    inner = _eroded(scene["mask"], int(feather) + 1)
    # The ring around the object is the codec-noised render: the colour match is ~1 but not exactly 1.
    g = np.asarray(gains[0])
    np.testing.assert_allclose(g, 1.0, atol=0.02)
    want = np.rint(np.clip(scene["render"].astype(np.float32) * g.astype(np.float32), 0, 255)).astype(
        np.uint8
    )
    np.testing.assert_array_equal(locked[inner], want[inner])
    np.testing.assert_array_equal(locked[~scene["mask"]], out[~scene["mask"]])  # bit-exact outside
    band = scene["mask"] & ~inner
    assert (locked[band] != out[band]).any() and (locked[band] != want[band]).any() or feather == 0


def test_lock_with_a_clean_ring_reproduces_the_render_and_follows_lighting(scene):
    out = scene["outputs"]["recoloured"].copy()
    out[~scene["mask"]] = scene["render"][~scene["mask"]]  # ring equals the render: gain exactly 1
    locked, gains = lock.lock_frame(out, scene["render"], scene["ids"], None, 1.0, 2.0)
    assert gains[0] == [1.0, 1.0, 1.0]
    inner = _eroded(scene["mask"], 3)
    np.testing.assert_array_equal(locked[inner], scene["render"][inner])
    dark = np.clip(scene["render"].astype(np.float32) * 0.6, 0, 255).astype(np.uint8)
    locked, gains = lock.lock_frame(dark, scene["render"], scene["ids"], None, 1.0, 2.0)
    np.testing.assert_allclose(gains[0], 0.6, atol=0.02)  # the model's darker lighting carries over
    assert np.abs(locked[inner].astype(int) - dark[inner]).mean() < 2.0


def test_partial_lock_blends_and_zero_is_the_identity(scene):
    out = scene["outputs"]["erased"]
    half, _ = lock.lock_frame(out, scene["render"], scene["ids"], None, 0.5, 2.0)
    inner = _eroded(scene["mask"], 3)
    mid = (out[inner].astype(np.float32) + scene["render"][inner]) / 2
    assert np.abs(half[inner] - mid).max() <= 1.0 + 0.02 * 255
    same, gains = lock.lock_frame(out, scene["render"], scene["ids"], None, 0.0)
    assert same is out and gains == {}
    video, _ = lock.lock_chunk(out[None], scene["render"][None], scene["ids"][None], None, 0.0)
    assert video is not None and np.array_equal(video[0], out)


@pytest.mark.parametrize("alpha", [-0.1, 1.5, float("nan"), "x", True])
def test_lock_rejects_bad_alpha(alpha):
    with pytest.raises(ValueError, match="--object-lock"):
        lock.check_alpha(alpha)


def test_lock_keeps_two_objects_apart_and_never_touches_holes(scene):
    ids = scene["ids"].copy()
    ids[:, CX:][ids[:, CX:] == 0] = 1  # the right half of the disc is a second object
    out = scene["outputs"]["erased"]
    locked, gains = lock.lock_frame(out, scene["render"], ids, None, 1.0, 2.0)
    assert set(gains) == {0, 1}
    inner = _eroded(scene["mask"], 3)  # the seam between the two objects is not feathered
    diff = np.abs(locked[inner].astype(int) - scene["render"][inner]).max()
    assert diff <= 0.02 * 255 + 1


# ---------------------------------------------------------------------------------------------------
# The stage: several chunks, lock, overlay, report


class _Frames:
    def __init__(self):
        self.chunks = []

    def append(self, frames):
        self.chunks.append(np.asarray(frames).copy())


def test_stage_reports_flags_locks_and_draws_the_overlay(scene):
    r, ids, sm = scene["render"], scene["ids"], scene["scene_mask"]
    o = scene["outputs"]
    overlay = _Frames()
    stage = FidelityStage({0: "disc"}, alpha=1.0, overlay=overlay)
    chunk1 = np.stack([o["intact"], o["intact"], o["erased"]])
    chunk2 = np.stack([o["erased"], o["shifted"], o["intact"]])  # first frame is the overlap: skipped
    r3, ids3, sm3 = (np.stack([a] * 3) for a in (r, ids, sm))
    stage.process_chunk(chunk1, r3, ids3, sm3, np.arange(0, 3))
    locked = stage.process_chunk(chunk2, r3, ids3, sm3, np.arange(2, 5), skip=1)
    rep = stage.report()
    obj = rep["objects"][0]
    assert rep["frames"] == 5 and obj["per_frame"]["frame"] == [0, 1, 2, 3, 4]
    assert rep["flagged_frames"] == [2, 3] and obj["summary"]["flagged"] == 2
    assert obj["summary"]["flag_counts"].keys() >= {"silhouette", "shift"}
    assert obj["after_lock"]["flagged"] == 0  # the lock at alpha 1 repaired them
    assert locked.shape == chunk2.shape and not np.array_equal(locked[1], chunk2[1])
    frames = np.concatenate(overlay.chunks)
    assert frames.shape == (5, H, W, 3)
    border = (frames[:, H - 2] == FLAG_COLOR).all(axis=-1).mean(axis=1)  # a row inside the red border
    np.testing.assert_array_equal(border > 0.9, [False, False, True, True, False])
    green = (frames[0, ..., 1] > 200) & (frames[0, ..., 0] < 60)  # no green in the scene or the object
    near_edge = scene["mask"] ^ _eroded(scene["mask"], 2)
    assert green.sum() > 50 and near_edge[green].mean() > 0.8  # an ok frame: a green outline
    rows = summary_lines(stage.summary())
    assert rows[0][0] == "object fidelity (disc)" and "flagged 2/5 frames" in rows[0][1]
    assert "after the lock 0" in rows[0][1]


def test_an_object_cut_by_the_image_border_is_measured_and_locked(scene):
    # Only the disc's right part is in view: crops and the shift search stop at the border.
    render = np.roll(scene["render"], -(CX - 10), axis=1)
    ids = np.roll(scene["ids"], -(CX - 10), axis=1)
    ids[:, W - (CX - 10) :] = -1
    render[:, W - (CX - 10) :] = scene["bg"][:, W - (CX - 10) :]
    m = fd.measure_frame(render, None, ids, render, [0])[0]
    assert m.evaluated and m.flags == () and m.shift_px == 0 and m.color_error == 0
    erased = np.where((ids >= 0)[..., None], scene["bg"], render)
    assert "silhouette" in fd.measure_frame(render, None, ids, erased, [0])[0].flags
    locked, _ = lock.lock_frame(erased, render, ids, None, 1.0, 2.0)
    inner = _eroded(ids >= 0, 3)
    assert inner.any() and np.abs(locked[inner].astype(int) - render[inner]).max() <= 0.02 * 255 + 1
