"""objvid.runtime.trajectory against values worked out by hand from GEN3C's formulas (reference section 3)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from objvid.runtime import trajectory as tj
from objvid.v1 import types_pb2

K = np.array([[500.0, 0.0, 160.0], [0.0, 500.0, 88.0], [0.0, 0.0, 1.0]])
I4 = np.eye(4)


def gen(preset, n, D=0.3, rot="center_facing", d=1.0, w2c=I4, k=K):
    return tj.generate_camera_trajectory(preset, w2c, k, n, movement_distance=D, rotation=rot, center_depth=d)


# --- shapes, dtypes, intrinsics ------------------------------------------------------------------


@pytest.mark.parametrize("preset", tj.PRESETS)
@pytest.mark.parametrize("rot", tj.ROTATIONS)
def test_shapes_first_frame_and_intrinsics(preset, rot):
    w2cs, Ks = gen(preset, 7, rot=rot)
    assert w2cs.shape == (7, 4, 4) and w2cs.dtype == np.float64
    assert Ks.shape == (7, 3, 3) and Ks.dtype == np.float64
    np.testing.assert_allclose(w2cs[0], I4, atol=1e-15)  # p_0 = 0 for every preset
    np.testing.assert_array_equal(Ks, np.broadcast_to(K, (7, 3, 3)))
    np.testing.assert_array_equal(w2cs[:, 3], np.broadcast_to([0, 0, 0, 1.0], (7, 4)))


# --- the look-at translation quirk and rotation modes, for every preset --------------------------


def expected_position(preset, i, n, D, d):
    """p_i written out per preset (reference section 3)."""
    step = i * D * d / n
    lin = {
        "left": (-step, 0, 0),
        "right": (step, 0, 0),
        "up": (0, -step, 0),
        "down": (0, step, 0),
        "zoom_in": (0, 0, step),
        "zoom_out": (0, 0, -step),
    }
    if preset in lin:
        return np.array(lin[preset], dtype=float)
    theta = 2 * math.pi * i / (n - 1)
    s = 1.0 if preset == "clockwise" else -1.0
    return np.array([D * (math.cos(theta) - 1) * s * d, D * math.sin(theta) * d, 0.0])


@pytest.mark.parametrize("preset", tj.PRESETS)
@pytest.mark.parametrize("rot", tj.ROTATIONS)
def test_every_preset_and_rotation_follow_the_formulas(preset, rot):
    n, D, d = 9, 0.4, 1.5
    w2cs, _ = gen(preset, n, D=D, rot=rot, d=d)
    gain = {"center_facing": 0.0, "no_rotation": 1.0, "trajectory_aligned": 2.0}[rot]
    for i in range(n):
        p = expected_position(preset, i, n, D, d)
        R, t = w2cs[i, :3, :3], w2cs[i, :3, 3]
        np.testing.assert_allclose(t, -p, atol=1e-12)  # quirk: translation = -p, not -R p
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(R) == pytest.approx(1.0)
        target = np.array([0.0, 0.0, d]) + gain * p
        f = (target - p) / np.linalg.norm(target - p)
        np.testing.assert_allclose(R[2], f, atol=1e-12)  # third row looks at the target
        assert abs(R[0, 1]) < 1e-12  # right vector is horizontal (up hint (0,1,0))
        if rot == "no_rotation":
            np.testing.assert_allclose(R, np.eye(3), atol=1e-12)


# --- hand-worked numbers ------------------------------------------------------------------------


def test_left_no_rotation_last_frame_at_n_minus_1_over_n():
    w2cs, _ = gen("left", 4, D=0.3, rot="no_rotation")
    # p_i = (-i * 0.3 / 4, 0, 0) -> t = (+0.075 i, 0, 0); last frame 0.225 = 3/4 * 0.3, never 0.3.
    for i, tx in enumerate([0.0, 0.075, 0.15, 0.225]):
        expected = np.eye(4)
        expected[0, 3] = tx
        np.testing.assert_allclose(w2cs[i], expected, atol=1e-15)


def test_zoom_in_and_out_move_along_z():
    w_in, _ = gen("zoom_in", 4, D=0.3)
    w_out, _ = gen("zoom_out", 4, D=0.3)
    # target (0,0,1) is straight ahead so R = I; t = -p.
    np.testing.assert_allclose(w_in[3, :3, :3], np.eye(3), atol=1e-15)
    assert w_in[3, 2, 3] == pytest.approx(-0.225)
    assert w_out[3, 2, 3] == pytest.approx(0.225)


def test_right_center_facing_by_hand():
    # n=2, D=0.4, d=2: p_1 = 1*0.4*2/2 = (0.4, 0, 0); f = (-0.4, 0, 2)/s, s = sqrt(4.16)
    # r = (0,1,0) x f = (fz, 0, -fx) = (2, 0, 0.4)/s; u = f x r = (0, 1, 0).
    w2cs, _ = gen("right", 2, D=0.4, d=2.0)
    s = math.sqrt(4.16)
    expected = np.array(
        [[2 / s, 0, 0.4 / s, -0.4], [0, 1, 0, 0], [-0.4 / s, 0, 2 / s, 0], [0, 0, 0, 1]], dtype=float
    )
    np.testing.assert_allclose(w2cs[1], expected, atol=1e-14)
    # The true camera centre is R^T p, not p (the quirk).
    R = expected[:3, :3]
    centre = -R.T @ expected[:3, 3]
    np.testing.assert_allclose(centre, R.T @ np.array([0.4, 0, 0]), atol=1e-14)
    assert not np.allclose(centre, [0.4, 0, 0])


def test_right_trajectory_aligned_by_hand():
    # target = a + 2p = (0.8, 0, 2); f = (0.4, 0, 2)/s; r = (2, 0, -0.4)/s.
    w2cs, _ = gen("right", 2, D=0.4, d=2.0, rot="trajectory_aligned")
    s = math.sqrt(4.16)
    np.testing.assert_allclose(w2cs[1, 0, :3], [2 / s, 0, -0.4 / s], atol=1e-14)
    np.testing.assert_allclose(w2cs[1, 2, :3], [0.4 / s, 0, 2 / s], atol=1e-14)
    np.testing.assert_allclose(w2cs[1, 1, :3], [0, 1, 0], atol=1e-14)


def test_up_center_facing_by_hand():
    # n=2, D=0.5, d=1: p_1 = (0, -0.25, 0) (up is -y); f = (0, 0.25, 1)/s; r = (1, 0, 0);
    # u = f x r = (0, fz, -fy) = (0, 1, -0.25)/s.
    w2cs, _ = gen("up", 2, D=0.5)
    s = math.sqrt(1.0625)
    expected = np.array(
        [[1, 0, 0, 0], [0, 1 / s, -0.25 / s, 0.25], [0, 0.25 / s, 1 / s, 0], [0, 0, 0, 1]], dtype=float
    )
    np.testing.assert_allclose(w2cs[1], expected, atol=1e-14)


def test_down_moves_plus_y():
    w2cs, _ = gen("down", 2, D=0.5, rot="no_rotation")
    np.testing.assert_allclose(w2cs[1, :3, 3], [0, -0.25, 0], atol=1e-15)


@pytest.mark.parametrize(
    "preset,xs",
    [
        ("clockwise", [0.0, -0.2, -0.4, -0.2, 0.0]),
        ("counterclockwise", [0.0, 0.2, 0.4, 0.2, 0.0]),
    ],
)
def test_spiral_angles_by_hand(preset, xs):
    # n=5: theta = 0, pi/2, pi, 3pi/2, 2pi (i/(n-1)); x = 0.2 (cos - 1) s; y = 0.2 sin.
    w2cs, _ = gen(preset, 5, D=0.2, rot="no_rotation")
    ys = [0.0, 0.2, 0.0, -0.2, 0.0]
    for i in range(5):
        np.testing.assert_allclose(w2cs[i, :3, 3], [-xs[i], -ys[i], 0.0], atol=1e-12)
    np.testing.assert_allclose(w2cs[-1], I4, atol=1e-12)  # a full circle returns to the start


def test_center_depth_scales_the_path():
    w1, _ = gen("clockwise", 5, D=0.2, rot="no_rotation", d=1.0)
    w3, _ = gen("clockwise", 5, D=0.2, rot="no_rotation", d=3.0)
    np.testing.assert_allclose(w3[:, :3, 3], 3 * w1[:, :3, 3], atol=1e-12)
    l1, _ = gen("left", 5, rot="no_rotation", d=1.0)
    l3, _ = gen("left", 5, rot="no_rotation", d=3.0)
    np.testing.assert_allclose(l3[:, :3, 3], 3 * l1[:, :3, 3], atol=1e-12)


def test_composes_with_initial_w2c_on_the_right():
    W0 = np.eye(4)
    W0[:3, :3] = [[0, -1, 0], [1, 0, 0], [0, 0, 1]]
    W0[:3, 3] = [0.1, 0.2, 0.3]
    local, _ = gen("right", 6, D=0.5)
    composed, _ = gen("right", 6, D=0.5, w2c=W0)
    np.testing.assert_allclose(composed, local @ W0, atol=1e-14)
    per_frame = np.stack([W0] * 6)
    composed2, _ = gen("right", 6, D=0.5, w2c=per_frame)
    np.testing.assert_allclose(composed2, composed, atol=1e-14)


def test_per_frame_intrinsics_pass_through():
    Ks = np.stack([K * (1 + 0.1 * i) for i in range(3)])
    Ks[:, 2, 2] = 1
    _, out = gen("left", 3, k=Ks)
    np.testing.assert_array_equal(out, Ks)


def test_single_frame_spiral_is_identity():
    w2cs, _ = gen("clockwise", 1)
    np.testing.assert_allclose(w2cs[0], I4)


def test_look_at_identity_and_degenerate():
    np.testing.assert_allclose(tj.look_at_matrix(np.zeros(3), [0, 0, 1]), I4, atol=1e-15)
    with pytest.raises(ValueError, match="coincide"):
        tj.look_at_matrix([0, 0, 1], [0, 0, 1])
    with pytest.raises(ValueError, match="parallel"):
        tj.look_at_matrix([0, 0, 0], [0, 2, 0])


# --- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(preset="sideways"), "unknown preset 'sideways'"),
        (dict(rot="spin"), "unknown camera rotation 'spin'"),
        (dict(n=0), "num_frames must be a positive integer"),
        (dict(n=2.5), "num_frames must be a positive integer"),
        (dict(d=0.0), "center_depth must be finite and > 0"),
        (dict(D=float("nan")), "movement_distance must be finite"),
        (dict(w2c=np.eye(3)), "initial_w2c must be"),
        (dict(k=np.eye(4)), "K must be"),
    ],
)
def test_bad_arguments(kwargs, match):
    args = dict(preset="left", n=5, D=0.3, rot="center_facing", d=1.0, w2c=I4, k=K)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        gen(
            args["preset"], args["n"], D=args["D"], rot=args["rot"], d=args["d"], w2c=args["w2c"], k=args["k"]
        )


# --- proto helpers -------------------------------------------------------------------------------


def test_spec_defaults_match_gen3c():
    w2cs, Ks = tj.trajectory_from_spec(types_pb2.TrajectorySpec(), I4, K)
    ref, _ = gen("left", 121, D=0.3, rot="center_facing", d=1.0)
    assert w2cs.shape == (121, 4, 4)
    np.testing.assert_array_equal(w2cs, ref)


@pytest.mark.parametrize("preset", tj.PRESETS)
@pytest.mark.parametrize("rot", tj.ROTATIONS)
def test_spec_roundtrip(preset, rot):
    spec = tj.spec_to_proto(preset, rot, 0.5, 11, 2.0)
    assert tj.preset_name(spec.preset) == preset and tj.rotation_name(spec.rotation) == rot
    a, _ = tj.trajectory_from_spec(spec, I4, K)
    b, _ = gen(preset, 11, D=0.5, rot=rot, d=2.0)
    np.testing.assert_array_equal(a, b)


def test_unknown_enum_values():
    with pytest.raises(ValueError, match="trajectory.preset"):
        tj.preset_name(99)
    with pytest.raises(ValueError, match="trajectory.rotation"):
        tj.rotation_name(99)
