"""``RenderTrajectory`` helpers of the cache service: the cameras of a request, the batch size and the
ramp of camera ranges per device turn, and one batch of cameras rendered to host arrays.

Static scenes take explicit cameras or a ``TrajectorySpec`` expanded from the seed camera
(``requests.trajectory_cameras``); video scenes (``dynamic.DynamicScene``) also take their own recorded
cameras and per-object pose tracks (``video_rpc``), rendered frame-synchronously from ``start_frame``.
"""

from __future__ import annotations

import numpy as np

from objvid.v1 import cache_pb2

from . import multiview_rpc
from .frames import outputs_to_host
from .requests import Limits, RenderSpec, trajectory_cameras
from .store import SceneEntry

#: Output pixels per device turn the batch size is scaled to (8 frames of 704x1280).
BATCH_PIXELS = 8 * 704 * 1280


def batch_size(trajectory_batch: int, width: int, height: int) -> int:
    """Cameras per device turn: ``trajectory_batch``, fewer for images over ``BATCH_PIXELS`` / 8 pixels."""
    return max(1, min(trajectory_batch, trajectory_batch * BATCH_PIXELS // (8 * width * height)))


def trajectory_batches(total: int, batch: int) -> list[tuple[int, int]]:
    """Camera ranges [start, stop) of a RenderTrajectory: sizes 2, 4, 8, ... up to ``batch``, then ``batch``.

    The ramp streams the first frames after a two-camera render (a client's progress moves within a
    second or two, not after a whole batch) while later turns keep the full batch's throughput: a
    trajectory costs at most log2(batch) extra device turns. Every range starts at an even camera (an odd
    ``batch`` > 1 is rounded down), so GEN3C's depth normaliser, which pairs consecutive views of a render
    call (``render_common.normaliser_groups``), pairs the same frames as one call over all the cameras: the
    pixels do not depend on the split. ``batch`` 1 renders one camera per turn (pairs of one view).
    """
    cap = max(1, batch - batch % 2) if batch > 1 else 1
    ranges, start, size = [], 0, min(2, cap)
    while start < total:
        stop = min(start + size, total)
        ranges.append((start, stop))
        start, size = stop, min(size * 2, cap)
    return ranges


def trajectory_request(request: cache_pb2.RenderTrajectoryRequest, entry: SceneEntry, limits: Limits):
    """-> (w2cs (T, 4, 4), Ks (T, 3, 3), width, height, video): video = (start_frame, object tracks) for
    video scenes, None for static ones. ValueError naming the field (start_frame / object_tracks on a
    static scene, bad cameras)."""
    from . import video_rpc
    from .dynamic import DynamicScene

    seed = entry.info.get("seed_camera")
    if not isinstance(entry.scene, DynamicScene):
        if request.start_frame or request.object_tracks:
            raise ValueError(
                "start_frame: only video scenes (CreateVideoScene) take start_frame / object_tracks"
            )
        return (*trajectory_cameras(request, seed, entry.scene_id, limits), None)
    if request.HasField("trajectory") and not request.cameras:
        w2cs, Ks, width, height = video_rpc.video_cameras(request, entry.scene)
    else:
        w2cs, Ks, width, height = trajectory_cameras(request, seed, entry.scene_id, limits)
    return w2cs, Ks, width, height, (int(request.start_frame), video_rpc.object_tracks(request, entry.scene))


def render_batch(
    scene, w2cs: np.ndarray, Ks: np.ndarray, height: int, width: int, spec: RenderSpec, selection,
    start: int, stop: int, video: tuple | None,
) -> dict[str, np.ndarray]:  # fmt: skip
    """Cameras [start, stop) rendered and copied to host arrays (``frames.outputs_to_host``), with the
    per-frame slot sources under ``_slot_sources`` for multi-view scenes. Video scenes render
    frame-synchronously from source frame ``video[0] + start`` (never multi-view)."""
    if video:
        kw = spec.kwargs() | {"start": video[0] + start, "object_track": video[1]}
        out, sources = scene.render(w2cs[start:stop], Ks[start:stop], height, width, **kw), None
    else:
        out, sources = multiview_rpc.render(scene, w2cs, Ks, height, width, spec, selection, start, stop)
    host = outputs_to_host(out, spec.outputs, **spec.wire_kwargs())
    if sources is not None:
        host["_slot_sources"] = sources
    return host
