"""Studio pure parts: keyframe interpolation, object poses, latest-wins coalescing (no services, no browser)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from objvid.client import camera_path as campath
from objvid.client.placement import parse_object_pose, transform_matrix
from objvid.client.studio.coalesce import LatestWins
from objvid.client.studio.path import Keyframe, interpolate_c2w, interpolate_w2c, keyframe_times
from objvid.client.studio.pose import ObjectPose


def _key(position, euler_deg) -> Keyframe:
    c2w = np.eye(4)
    c2w[:3, :3] = Rotation.from_euler("xyz", euler_deg, degrees=True).as_matrix()
    c2w[:3, 3] = position
    return Keyframe(c2w)


KEYS = [_key([0, 0, 0], [0, 0, 0]), _key([0.3, -0.1, 0.2], [5, 20, 0]), _key([0.5, 0, 0.6], [0, 40, 3]),
        _key([0.2, 0.1, 1.0], [-5, 60, 0])]  # fmt: skip


def test_path_passes_through_keyframes_at_even_times():
    c2w = interpolate_c2w(KEYS, 31)  # keyframes land on frames 0, 10, 20, 30
    for k, frame in zip(KEYS, (0, 10, 20, 30), strict=True):
        np.testing.assert_allclose(c2w[frame], k.c2w, atol=1e-12)


def test_path_is_rigid_and_a_valid_camera_path_file():
    w2c = interpolate_w2c(KEYS, 50)
    K = np.array([[500.0, 0, 320], [0, 500, 176], [0, 0, 1]])
    data = campath.camera_path_dict(640, 352, K, w2c)
    path = campath.parse_camera_path(data)  # the checks --camera-path runs: orthonormal, det +1
    assert path.num_frames == 50
    c2w = interpolate_c2w(KEYS, 50)
    np.testing.assert_allclose(
        np.einsum("nij,njk->nik", w2c, c2w), np.tile(np.eye(4), (50, 1, 1)), atol=1e-12
    )


def test_positions_and_rotations_are_smooth():
    c2w = interpolate_c2w(KEYS, 301)
    pos = c2w[:, :3, 3]
    step = np.linalg.norm(np.diff(pos, axis=0), axis=1)
    accel = np.linalg.norm(np.diff(pos, 2, axis=0), axis=1)
    # C2 spline sampled finely: no jumps in velocity (second differences tiny against the steps)
    assert accel.max() < 0.05 * step.mean()
    rots = Rotation.from_matrix(c2w[:, :3, :3])
    ang = (rots[1:] * rots[:-1].inv()).magnitude()
    assert np.abs(np.diff(ang)).max() < 0.05 * ang.mean()  # angular speed changes gradually
    # no detour: the path stays within the keyframes' bounding box grown by 20 %
    lo, hi = np.min([k.position for k in KEYS], 0), np.max([k.position for k in KEYS], 0)
    pad = 0.2 * (hi - lo) + 1e-9
    assert (pos >= lo - pad).all() and (pos <= hi + pad).all()


def test_two_keyframes_interpolate_linearly_and_by_slerp():
    a, b = _key([0, 0, 0], [0, 0, 0]), _key([1, 2, 3], [0, 90, 0])
    c2w = interpolate_c2w([a, b], 5)
    np.testing.assert_allclose(c2w[2, :3, 3], [0.5, 1.0, 1.5], atol=1e-12)
    half = Rotation.from_matrix(c2w[2, :3, :3]).as_euler("xyz", degrees=True)
    np.testing.assert_allclose(half, [0, 45, 0], atol=1e-9)


def test_one_keyframe_holds_still_and_bad_input_is_named():
    c2w = interpolate_c2w([KEYS[1]], 4)
    assert np.allclose(c2w, KEYS[1].c2w)
    with pytest.raises(ValueError, match="keyframes"):
        interpolate_c2w([], 10)
    with pytest.raises(ValueError, match="num_frames"):
        interpolate_c2w(KEYS, 0)
    with pytest.raises(ValueError, match="strictly increasing"):
        keyframe_times(3, [0, 2, 1])


def test_uneven_times_are_respected():
    c2w = interpolate_c2w(KEYS[:3], 11, times=[0, 8, 10])  # the middle keyframe at frame 8
    np.testing.assert_allclose(c2w[8], KEYS[1].c2w, atol=1e-12)


def test_keyframe_from_viewer_quaternion_round_trip():
    k = KEYS[2]
    again = Keyframe.from_wxyz_position(k.wxyz, k.position)
    np.testing.assert_allclose(again.c2w, k.c2w, atol=1e-12)
    np.testing.assert_allclose(Keyframe.from_w2c(k.w2c).c2w, k.c2w, atol=1e-12)


def test_object_pose_matches_the_cli_flag():
    m = np.eye(4)
    m[:3, :3] = 0.37 * Rotation.from_euler("ZYX", [30, -20, 10], degrees=True).as_matrix()
    m[:3, 3] = [0.1, 0.5, 2.5]
    pose = ObjectPose.from_matrix(m)
    np.testing.assert_allclose(pose.rotation_deg, [10, -20, 30], atol=1e-9)  # rx, ry, rz
    np.testing.assert_allclose(pose.matrix(), m, atol=1e-12)
    # what the page shows for copying is what `--object-pose` parses back to the same matrix
    np.testing.assert_allclose(transform_matrix(parse_object_pose(pose.cli_value())), m, atol=1e-5)
    gizmo = ObjectPose.from_wxyz(pose.position, pose.wxyz, pose.scale)
    np.testing.assert_allclose(gizmo.matrix(), m, atol=1e-12)


def test_latest_wins_runs_the_newest_job_and_drops_stale_ones():
    ran, done = [], []
    gate = threading.Event()

    def run(job):
        if job == 0:
            gate.wait(5)  # hold the worker while more jobs arrive
        ran.append(job)
        return job * 10

    lw = LatestWins(run, lambda job, result: done.append((job, result)))
    lw.submit(0)
    time.sleep(0.05)
    for j in range(1, 20):
        lw.submit(j)
    gate.set()
    assert lw.idle(5)
    assert ran == [0, 19]  # nothing stale was queued
    assert done == [(0, 0), (19, 190)]
    assert (lw.submitted, lw.ran, lw.dropped) == (20, 2, 18)
    lw.close()


def test_latest_wins_reports_failures_and_keeps_serving():
    failed = []
    lw = LatestWins(lambda job: 1 / job, lambda job, result: None, lambda job, exc: failed.append(job))
    lw.submit(0)
    assert lw.idle(5)
    lw.submit(2)
    assert lw.idle(5)
    assert failed == [0] and lw.ran == 2
    lw.close()
