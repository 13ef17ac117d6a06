"""The ``preview`` model: holes filled, rendered pixels kept, slot fallback, temporal stability."""

from __future__ import annotations

import numpy as np
import pytest

from objvid.diffusion.base import GenerateOptions, validate_chunk
from objvid.diffusion.preview import PreviewModel, composite_slots

T, N, H, W = 6, 2, 48, 64


def scene(t: int) -> np.ndarray:
    """(H, W, 3) uint8 smooth colour field that brightens with t (so a re-inpainted hole would change)."""
    yy, xx = np.mgrid[:H, :W]
    base = np.stack([120 + xx, 100 + yy, np.full_like(xx, 90)], axis=-1) + 10 * t
    return np.clip(base, 0, 255).astype(np.uint8)


def blank_chunk(slots: int = N):
    """Renders = the scene in every slot, fully rendered; holes are carved in by each test (black, mask 0)."""
    renders = np.stack([np.stack([scene(t)] * slots) for t in range(T)])
    masks = np.ones((T, slots, H, W), np.uint8)
    return scene(0), renders, masks


def carve(renders, masks, t, slot, region):
    renders[t, slot][region] = 0
    masks[t, slot][region] = 0


def disk(cy, cx, r):
    yy, xx = np.mgrid[:H, :W]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def run(first, renders, masks, **kwargs):
    events = []
    video = PreviewModel(**kwargs).generate(
        validate_chunk(first, renders, masks), GenerateOptions(), events.append
    )
    return video, events


@pytest.mark.parametrize("max_side", [320, 24], ids=["full-res", "reduced-res"])
def test_holes_filled_and_rendered_pixels_kept(max_side):
    first, renders, masks = blank_chunk()
    hole = disk(24, 32, 8)
    for t in range(1, T):
        for slot in range(N):
            carve(renders, masks, t, slot, hole)
    video, _ = run(first, renders, masks, max_side=max_side)
    assert video.shape == (T, H, W, 3) and video.dtype == np.uint8
    np.testing.assert_array_equal(video[0], first)
    for t in range(1, T):
        rendered = masks[t, 0].astype(bool)
        np.testing.assert_array_equal(video[t][rendered], renders[t, 0][rendered])
        fill = video[t][hole].astype(int)
        assert fill.min() > 60, "black hole pixels remain"
    # Frame 1 inpaints: the fill continues the surroundings (a smooth field); later frames reuse it.
    ring = disk(24, 32, 11) & ~hole
    assert (
        np.abs(video[1][hole].astype(int).mean(axis=0) - video[1][ring].astype(int).mean(axis=0)).max() < 25
    )


def test_scattered_pixel_holes_take_the_local_colour():
    first, renders, masks = blank_chunk()
    rng = np.random.default_rng(0)
    for t in range(1, T):
        dots = rng.random((H, W)) < 0.05
        for slot in range(N):
            carve(renders, masks, t, slot, dots)
    video, _ = run(first, renders, masks, max_side=24)
    for t in range(1, T):
        hole = masks[t].max(axis=0) == 0
        diff = np.abs(video[t][hole].astype(int) - scene(t)[hole].astype(int))
        assert diff.max() < 20, "scattered holes must take the surrounding colour, not black"


def test_slot1_content_used_where_slot0_has_hole():
    first, renders, masks = blank_chunk()
    hole0 = disk(20, 20, 10)
    renders[:, 1] = 255 - renders[:, 1]  # slot 1 content differs from slot 0, so its use is visible
    for t in range(1, T):
        carve(renders, masks, t, 0, hole0)
    video, _ = run(first, renders, masks)
    for t in range(1, T):
        np.testing.assert_array_equal(video[t][hole0], renders[t, 1][hole0])
        np.testing.assert_array_equal(video[t][~hole0], renders[t, 0][~hole0])


def test_composite_slot_priority():
    renders = np.stack([np.full((H, W, 3), v, np.uint8) for v in (10, 20)])
    masks = np.zeros((2, H, W), np.uint8)
    masks[0, :, :20] = 1
    masks[1, :, 10:40] = 1
    frame, hole = composite_slots(renders, masks)
    assert (frame[:, :20] == 10).all() and (frame[:, 20:40] == 20).all()
    np.testing.assert_array_equal(hole, np.broadcast_to(np.arange(W) >= 40, (H, W)))


def test_persistent_hole_keeps_its_fill_while_new_holes_are_inpainted():
    first, renders, masks = blank_chunk()
    persistent = disk(24, 20, 7)
    growing = np.zeros((H, W), bool)
    for t in range(1, T):
        growing[:, W - 4 * t :] = True  # newly exposed band at the right edge every frame
        for slot in range(N):
            carve(renders, masks, t, slot, persistent | growing)
    video, _ = run(first, renders, masks, max_side=32)
    for t in range(2, T):
        # The scene brightens every frame, but the persistent hole shows frame 1's fill unchanged.
        np.testing.assert_array_equal(video[t][persistent], video[1][persistent])
        new = np.zeros((H, W), bool)
        new[:, W - 4 * t : W - 4 * (t - 1)] = True
        assert video[t][new].min() > 60, "newly exposed pixels were not filled"
        old = np.zeros((H, W), bool)
        old[:, W - 4 * (t - 1) :] = True
        np.testing.assert_array_equal(video[t][old], video[t - 1][old])


def test_fully_empty_frame_repeats_previous_frame():
    first, renders, masks = blank_chunk()
    for slot in range(N):
        carve(renders, masks, 2, slot, np.ones((H, W), bool))
    video, _ = run(first, renders, masks)
    np.testing.assert_array_equal(video[2], video[1])


def test_progress_events_and_single_frame():
    first, renders, masks = blank_chunk()
    _, events = run(first, renders, masks, progress_every=2)
    assert [e.step for e in events] == [2, 4, 6] and all(e.total == T for e in events)
    assert all(e.stage == "denoise" and "not GEN3C" in e.message for e in events)
    video, events = run(first, renders[:1], masks[:1])
    assert video.shape == (1, H, W, 3) and len(events) == 1
    np.testing.assert_array_equal(video[0], first)


def test_metadata_and_bad_settings():
    assert PreviewModel.name == "preview" and PreviewModel.preview is True
    with pytest.raises(ValueError, match="radius"):
        PreviewModel(radius=0)
    with pytest.raises(ValueError, match="max_side"):
        PreviewModel(max_side=4)
