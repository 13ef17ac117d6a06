"""GEN3C camera trajectories (``camera_utils.generate_camera_trajectory`` semantics, in float64 numpy).

Shared by the client (which builds the cameras it sends) and the cache service (which expands a
``TrajectorySpec`` into cameras). Conventions: OpenCV axes (x right, y down, z forward), world-to-camera
4x4 matrices, K 3x3 in pixels. The facts reproduced here (docs: reference/gen3c-pipeline.md section 3):

- the look target is ``a = (0, 0, center_depth)`` in the initial camera's frame;
- a look-at matrix has rows ``[r; u; f]`` with ``f = normalize(target - p)``, ``r = normalize((0,1,0) x f)``,
  ``u = f x r`` and translation column ``-p`` (not ``-R p``: GEN3C's quirk, kept for bit-compatibility);
- linear presets move ``p_i = axis * sign * i * D * d / n`` for ``i = 0 .. n-1``, so the last frame is at
  ``(n-1)/n`` of the distance;
- spirals use ``theta_i = 2 pi i / (n-1)``, ``x = D (cos theta - 1) s d``, ``y = D sin theta d``, ``z = 0``
  with ``s = +1`` clockwise and ``-1`` counterclockwise;
- rotation modes: ``center_facing`` looks at ``a``, ``no_rotation`` at ``a + p`` (R = I) and
  ``trajectory_aligned`` at ``a + 2p``;
- the final pose is ``w2c_i = L_i @ initial_w2c``; K is repeated.
"""

from __future__ import annotations

import math

import numpy as np

PRESETS: tuple[str, ...] = (
    "left",
    "right",
    "up",
    "down",
    "zoom_in",
    "zoom_out",
    "clockwise",
    "counterclockwise",
)
ROTATIONS: tuple[str, ...] = ("center_facing", "no_rotation", "trajectory_aligned")

DEFAULT_PRESET = "left"
DEFAULT_ROTATION = "center_facing"
DEFAULT_MOVEMENT_DISTANCE = 0.3
DEFAULT_NUM_FRAMES = 121
DEFAULT_CENTER_DEPTH = 1.0

# Linear presets: (axis index, sign). y points down, z forward.
_LINEAR: dict[str, tuple[int, float]] = {
    "left": (0, -1.0),
    "right": (0, 1.0),
    "up": (1, -1.0),
    "down": (1, 1.0),
    "zoom_in": (2, 1.0),
    "zoom_out": (2, -1.0),
}
_SPIRAL_SIGN: dict[str, float] = {"clockwise": 1.0, "counterclockwise": -1.0}
# Look target offset, in multiples of the camera position p.
_ROTATION_TARGET_GAIN: dict[str, float] = {
    "center_facing": 0.0,
    "no_rotation": 1.0,
    "trajectory_aligned": 2.0,
}


def look_at_matrix(position: np.ndarray, target: np.ndarray) -> np.ndarray:
    """GEN3C's look-at (4, 4) float64: rows [r; u; f] and translation column -position (the quirk).

    position, target: (3,) in the initial camera's frame. Raises ValueError when they coincide or the
    view direction is parallel to the (0, 1, 0) up hint.
    """
    position = np.asarray(position, dtype=np.float64)
    forward = np.asarray(target, dtype=np.float64) - position
    norm = np.linalg.norm(forward)
    if not norm > 0:
        raise ValueError("look_at: camera position and target coincide")
    forward = forward / norm
    right = np.cross(np.array([0.0, 1.0, 0.0]), forward)
    rnorm = np.linalg.norm(right)
    if not rnorm > 1e-12:
        raise ValueError("look_at: view direction is parallel to the up hint (0, 1, 0)")
    right = right / rnorm
    up = np.cross(forward, right)
    m = np.eye(4)
    m[0, :3] = right
    m[1, :3] = up
    m[2, :3] = forward
    m[:3, 3] = -position
    return m


def trajectory_positions(
    preset: str, num_frames: int, movement_distance: float, center_depth: float = DEFAULT_CENTER_DEPTH
) -> np.ndarray:
    """Camera positions p_i (num_frames, 3) float64 of a preset, before the look-at (see module doc)."""
    n = int(num_frames)
    i = np.arange(n, dtype=np.float64)
    pos = np.zeros((n, 3))
    if preset in _LINEAR:
        axis, sign = _LINEAR[preset]
        pos[:, axis] = i * movement_distance * center_depth / n * sign
    elif preset in _SPIRAL_SIGN:
        # GEN3C divides by n-1; a single frame has theta = 0 (GEN3C itself would divide by zero).
        theta = 2.0 * math.pi * i / (n - 1) if n > 1 else np.zeros(n)
        pos[:, 0] = movement_distance * (np.cos(theta) - 1.0) * _SPIRAL_SIGN[preset] * center_depth
        pos[:, 1] = movement_distance * np.sin(theta) * center_depth
    else:
        raise ValueError(f"trajectory: unknown preset {preset!r} (one of {', '.join(PRESETS)})")
    return pos


def _check_args(preset, rotation, num_frames, movement_distance, center_depth) -> None:
    if preset not in PRESETS:
        raise ValueError(f"trajectory: unknown preset {preset!r} (one of {', '.join(PRESETS)})")
    if rotation not in ROTATIONS:
        raise ValueError(f"trajectory: unknown camera rotation {rotation!r} (one of {', '.join(ROTATIONS)})")
    if isinstance(num_frames, bool) or int(num_frames) != num_frames or num_frames < 1:
        raise ValueError(f"trajectory: num_frames must be a positive integer, got {num_frames!r}")
    if not math.isfinite(movement_distance):
        raise ValueError(f"trajectory: movement_distance must be finite, got {movement_distance}")
    if not math.isfinite(center_depth) or center_depth <= 0:
        raise ValueError(f"trajectory: center_depth must be finite and > 0, got {center_depth}")


def generate_camera_trajectory(
    preset: str,
    initial_w2c: np.ndarray,
    K: np.ndarray,
    num_frames: int,
    movement_distance: float = DEFAULT_MOVEMENT_DISTANCE,
    rotation: str = DEFAULT_ROTATION,
    center_depth: float = DEFAULT_CENTER_DEPTH,
) -> tuple[np.ndarray, np.ndarray]:
    """GEN3C trajectory: (w2cs (T, 4, 4) float64, Ks (T, 3, 3) float64) with T = num_frames.

    preset: one of PRESETS; rotation: one of ROTATIONS; initial_w2c: (4, 4) or per-frame (T, 4, 4)
    OpenCV world-to-camera; K: (3, 3) pixels (repeated) or (T, 3, 3); movement_distance D and
    center_depth d in scene units. Frame 0 equals initial_w2c. Raises ValueError naming the bad argument.
    """
    _check_args(preset, rotation, num_frames, float(movement_distance), float(center_depth))
    n = int(num_frames)
    w2c0 = np.asarray(initial_w2c, dtype=np.float64)
    if w2c0.shape not in ((4, 4), (n, 4, 4)):
        raise ValueError(f"trajectory: initial_w2c must be (4, 4) or ({n}, 4, 4), got {w2c0.shape}")
    K = np.asarray(K, dtype=np.float64)
    if K.shape not in ((3, 3), (n, 3, 3)):
        raise ValueError(f"trajectory: K must be (3, 3) or ({n}, 3, 3), got {K.shape}")
    if not (np.isfinite(w2c0).all() and np.isfinite(K).all()):
        raise ValueError("trajectory: initial_w2c and K must be finite")

    positions = trajectory_positions(preset, n, float(movement_distance), float(center_depth))
    anchor = np.array([0.0, 0.0, float(center_depth)])
    gain = _ROTATION_TARGET_GAIN[rotation]
    local = np.stack([look_at_matrix(p, anchor + gain * p) for p in positions])
    w2cs = local @ w2c0  # broadcasts over a (4, 4) or per-frame (T, 4, 4) initial pose
    Ks = np.broadcast_to(K, (n, 3, 3)).copy()
    return w2cs, Ks


# ---------------------------------------------------------------------------------------------------
# objvid.v1 enum <-> name


def _enum_name(enum_name: str, value: int, prefix: str, default: str, field: str) -> str:
    """An ``objvid.v1`` enum value -> its lower-case name without ``prefix`` (UNSPECIFIED = ``default``)."""
    from objvid.v1 import types_pb2

    enum = getattr(types_pb2, enum_name)
    if value == 0:
        return default
    try:
        return enum.Name(value).removeprefix(prefix).lower()
    except ValueError:
        raise ValueError(f"trajectory.{field}: unknown enum value {value}") from None


def preset_name(value: int) -> str:
    """``objvid.v1.TrajectoryPreset`` value -> preset name (UNSPECIFIED = 'left')."""
    return _enum_name("TrajectoryPreset", value, "TRAJECTORY_PRESET_", DEFAULT_PRESET, "preset")


def rotation_name(value: int) -> str:
    """``objvid.v1.CameraRotation`` value -> rotation name (UNSPECIFIED = 'center_facing')."""
    return _enum_name("CameraRotation", value, "CAMERA_ROTATION_", DEFAULT_ROTATION, "rotation")


def preset_value(name: str) -> int:
    """Preset name -> ``objvid.v1.TrajectoryPreset`` value."""
    from objvid.v1 import types_pb2

    if name not in PRESETS:
        raise ValueError(f"trajectory: unknown preset {name!r} (one of {', '.join(PRESETS)})")
    return types_pb2.TrajectoryPreset.Value("TRAJECTORY_PRESET_" + name.upper())


def rotation_value(name: str) -> int:
    """Rotation name -> ``objvid.v1.CameraRotation`` value."""
    from objvid.v1 import types_pb2

    if name not in ROTATIONS:
        raise ValueError(f"trajectory: unknown camera rotation {name!r} (one of {', '.join(ROTATIONS)})")
    return types_pb2.CameraRotation.Value("CAMERA_ROTATION_" + name.upper())


def spec_to_proto(
    preset: str = DEFAULT_PRESET,
    rotation: str = DEFAULT_ROTATION,
    movement_distance: float = DEFAULT_MOVEMENT_DISTANCE,
    num_frames: int = DEFAULT_NUM_FRAMES,
    center_depth: float = DEFAULT_CENTER_DEPTH,
):
    """Names and numbers -> ``objvid.v1.TrajectorySpec``."""
    from objvid.v1 import types_pb2

    _check_args(preset, rotation, num_frames, float(movement_distance), float(center_depth))
    return types_pb2.TrajectorySpec(
        preset=preset_value(preset),
        rotation=rotation_value(rotation),
        movement_distance=float(movement_distance),
        frame_count=int(num_frames),
        center_depth=float(center_depth),
    )


def trajectory_from_spec(spec, initial_w2c: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``objvid.v1.TrajectorySpec`` (zero values = GEN3C defaults) -> (w2cs (T, 4, 4), Ks (T, 3, 3))."""
    return generate_camera_trajectory(
        preset_name(spec.preset),
        initial_w2c,
        K,
        int(spec.frame_count) or DEFAULT_NUM_FRAMES,
        movement_distance=float(spec.movement_distance) or DEFAULT_MOVEMENT_DISTANCE,
        rotation=rotation_name(spec.rotation),
        center_depth=float(spec.center_depth) or DEFAULT_CENTER_DEPTH,
    )
