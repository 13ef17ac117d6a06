"""objvid.runtime.geometry: the Euler convention and the camera / transform checks shared by the server and
the client, against an independent construction (scipy.spatial.transform.Rotation)."""

from __future__ import annotations

import numpy as np
import pytest
from cache_service_helpers import cloud_msg, create_rgbd_scene, cube_cloud, running, stub_for
from scipy.spatial.transform import Rotation

from objvid.runtime import geometry
from objvid.v1 import cache_pb2, types_pb2

ANGLES = [(30.0, 45.0, 60.0), (-120.0, 10.0, 75.0), (90.0, -90.0, 90.0), (5.0, 170.0, -33.0)]


@pytest.mark.parametrize("angles", ANGLES)
def test_euler_is_extrinsic_xyz_rz_ry_rx(angles):
    """Rotations about all three axes at once: only the right composition order matches."""
    expected = Rotation.from_euler("xyz", angles, degrees=True).as_matrix()  # extrinsic x, then y, then z
    np.testing.assert_allclose(geometry.euler_deg(*angles), expected, atol=1e-12)
    wrong_order = Rotation.from_euler("XYZ", angles, degrees=True).as_matrix()  # Rx Ry Rz
    assert np.abs(geometry.euler_deg(*angles) - wrong_order).max() > 1e-3


def test_euler_single_axes_follow_the_right_hand_rule():
    # +90 deg about z takes x to y; about x takes y to z; about y takes z to x.
    np.testing.assert_allclose(geometry.euler_deg(0, 0, 90) @ [1, 0, 0], [0, 1, 0], atol=1e-12)
    np.testing.assert_allclose(geometry.euler_deg(90, 0, 0) @ [0, 1, 0], [0, 0, 1], atol=1e-12)
    np.testing.assert_allclose(geometry.euler_deg(0, 90, 0) @ [0, 0, 1], [1, 0, 0], atol=1e-12)


def test_pose_matrix_and_its_errors():
    T = geometry.pose_matrix([1, 2, 3], [10, 20, 30], 2.5)
    np.testing.assert_allclose(
        T[:3, :3], 2.5 * Rotation.from_euler("xyz", [10, 20, 30], degrees=True).as_matrix()
    )
    np.testing.assert_allclose(T[:3, 3], [1, 2, 3])
    assert geometry.check_transform(T, "T", allow_scale=True) == pytest.approx(2.5)
    with pytest.raises(ValueError, match=r"pose.rotation_deg: expected 3 values"):
        geometry.pose_matrix(rotation_deg=[1, 2])
    with pytest.raises(ValueError, match=r"pose.scale: must be finite and > 0"):
        geometry.pose_matrix(scale=-1.0)
    with pytest.raises(ValueError, match="rigid transform"):
        geometry.check_transform(T, "T")  # scaled: not rigid
    with pytest.raises(ValueError, match="det of the rotation block"):
        geometry.check_transform(np.diag([1.0, 1.0, -1.0, 1.0]), "T", allow_scale=True)
    with pytest.raises(ValueError, match="focal lengths must be positive"):
        geometry.check_intrinsics(np.diag([-1.0, 1.0, 1.0]), "K")


def test_the_cache_service_applies_the_same_convention():
    angles = (30.0, 45.0, 60.0)
    with running() as server:
        _, stub = stub_for(server)
        create_rgbd_scene(stub, scene_id="euler")
        pts, cols = cube_cloud()
        stub.AddObject(cache_pb2.AddObjectRequest(scene_id="euler", cloud=cloud_msg(pts, cols)))
        pose = types_pb2.Transform(
            pose=types_pb2.Pose(translation=[0.1, 0.2, 2.0], rotation_deg=angles, scale=0.5)
        )
        obj = stub.UpdateObject(
            cache_pb2.UpdateObjectRequest(scene_id="euler", object_id=0, transform=pose)
        ).object
    T = np.array(obj.transform.values).reshape(4, 4)
    np.testing.assert_allclose(
        T[:3, :3], 0.5 * Rotation.from_euler("xyz", angles, degrees=True).as_matrix(), atol=1e-9
    )
    np.testing.assert_allclose(T[:3, 3], [0.1, 0.2, 2.0])


def test_batches_follow_the_same_rules_and_name_the_first_bad_camera():
    Ts = np.stack([geometry.pose_matrix([0, 0, i], [10 * i, 5, -3]) for i in range(5)])
    np.testing.assert_allclose(geometry.check_transform(Ts, "w2cs"), np.ones(5))
    Ts[3, :3, :3] *= 1.5
    with pytest.raises(
        ValueError, match=r"^w2cs\[3\]: not a rigid transform \(the rotation block scales by 1.5"
    ):
        geometry.check_transform(Ts, "w2cs")
    np.testing.assert_allclose(geometry.check_transform(Ts, "T", allow_scale=True)[3], 1.5)
    Ks = np.stack([np.array([[60.0, 0, 31.5], [0, 60.0, 23.5], [0, 0, 1]])] * 4)
    geometry.check_intrinsics(Ks, "Ks")
    Ks[2, 1, 1] = -60.0
    with pytest.raises(ValueError, match=r"^Ks\[2\]: focal lengths must be positive"):
        geometry.check_intrinsics(Ks, "Ks")


def test_the_library_uses_the_same_rules():
    """objvid.cache.validate (the Scene API's checks) delegates to objvid.runtime.geometry."""
    from objvid.cache import validate

    T = geometry.pose_matrix([1, 2, 3], [10, 20, 30], 2.0)
    with pytest.raises(ValueError, match="^w2c: not a rigid transform"):
        validate.rigid(T, "w2c")
    validate.rigid(T, "transform", allow_scale=True)
    with pytest.raises(ValueError, match=r"^K: focal lengths must be positive"):
        validate.intrinsics(np.diag([-1.0, 1.0, 1.0]), "K")
