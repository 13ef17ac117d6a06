"""The cache service's video-scene plumbing (issue 15): decoding a ``CreateVideoScene`` stream into a
``DynamicScene`` builder, and the frame-synchronous cameras / object tracks of ``RenderTrajectory``."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from objvid.runtime import requests as lenient_requests
from objvid.runtime import trajectory
from objvid.v1 import cache_pb2

from .dynamic import DynamicScene, frame_peak_bytes, source_bytes
from .requests import Limits, decode_transform, decode_view
from .store import LimitExceeded


def read_video_stream(requests: Iterable[cache_pb2.CreateVideoSceneRequest], limits: Limits):
    """-> (scene_id, options dict, frames: list of (image, depth, mask, K, w2c)). Every frame is checked
    (``frames[i]``); the first message sets the id, threshold, depth precision and frame count."""
    frames, first = [], None
    size = None
    for msg in requests:
        lenient_requests.check(msg)  # random bytes on the stream -> INVALID_ARGUMENT
        if first is None:
            first = msg
            if first.num_frames < 1:
                raise ValueError("num_frames: must be >= 1 (set it in the first message)")
            thr = first.filter_points_threshold
            if not math.isfinite(thr) or thr < 0 or thr > 1:
                raise ValueError(f"filter_points_threshold: must be in [0, 1] (0 = off), got {thr}")
        for view in msg.frames:
            i = len(frames)
            if i >= first.num_frames:
                raise ValueError(f"frames[{i}]: more frames than num_frames={first.num_frames}")
            image, depth, mask, K, w2c = decode_view(view, f"frames[{i}]", limits)
            if size is None:
                size = depth.shape
                pixels = first.num_frames * size[0] * size[1]
                if pixels > limits.max_points * 8:
                    raise LimitExceeded(f"num_frames: {first.num_frames} frames of {size[1]}x{size[0]} "
                                        f"is over the limit of {limits.max_points * 8} pixels (8 x --max-points)")  # fmt: skip
            elif depth.shape != size:
                raise ValueError(
                    f"frames[{i}]: size {depth.shape[::-1]} differs from frames[0]'s {size[::-1]}"
                )
            frames.append((image, depth, mask, K, w2c))
    if first is None:
        raise ValueError("frames: empty stream")
    if len(frames) != first.num_frames:
        raise ValueError(f"frames: {len(frames)} frames received, num_frames={first.num_frames}")
    opts = {"filter_points_threshold": first.filter_points_threshold or None,
            "depth_dtype": "float32" if first.float32_depth else "float16"}  # fmt: skip
    return first.scene_id, opts, frames


def video_builder(frames: list, opts: dict, device: str):
    """-> (build(): DynamicScene, estimated device bytes)."""
    n, (H, W) = len(frames), frames[0][1].shape

    def build() -> DynamicScene:
        stack = [np.stack([f[k] for f in frames]) for k in range(5) if k != 2]
        masks = None if any(f[2] is None for f in frames) else np.stack([f[2] for f in frames])
        rgb, depth, K, w2c = stack
        return DynamicScene(rgb, depth, K, w2c, masks, device=device, **opts)

    return build, source_bytes(n, H, W, opts["depth_dtype"]) + frame_peak_bytes(H, W)


def video_cameras(request: cache_pb2.RenderTrajectoryRequest, scene: DynamicScene):
    """A trajectory spec on a video scene is applied relative to each frame's input camera:
    target f = L_f @ w2c_(start_frame + f), K of that frame (GEN3C's gen3c_dynamic). -> (w2cs, Ks, W, H)."""
    spec = request.trajectory
    start = int(request.start_frame)
    T = int(spec.frame_count) or trajectory.DEFAULT_NUM_FRAMES
    if start + T > scene.num_frames:
        raise ValueError(
            f"start_frame: frames {start}..{start + T - 1} requested, the video has {scene.num_frames}"
        )
    w2cs, Ks = trajectory.trajectory_from_spec(
        spec, scene.w2cs[start : start + T], scene.Ks[start : start + T]
    )
    return np.asarray(w2cs, np.float64), np.asarray(Ks, np.float64), scene.size[1], scene.size[0]


def object_tracks(request: cache_pb2.RenderTrajectoryRequest, scene: DynamicScene) -> dict[int, np.ndarray]:
    """``object_tracks`` -> {object id: (F, 4, 4)} (checked again by the scene)."""
    out = {}
    for i, track in enumerate(request.object_tracks):
        poses = [decode_transform(p, f"object_tracks[{i}].poses[{k}]") for k, p in enumerate(track.poses)]
        if len(poses) != scene.num_frames:
            raise ValueError(f"object_tracks[{i}].poses: {len(poses)} poses for {scene.num_frames} frames")
        out[int(track.object_id)] = np.stack(poses)
    return out
