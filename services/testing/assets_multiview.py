"""Synthetic multi-view demo assets: the demo room (``assets.py``) seen from several cameras.

- :func:`room_view`: ray-cast the room from any camera (position in the room frame, yaw, pitch) ->
  image, exact z-depth, K and the room-to-camera matrix.
- :func:`write_multiview_assets`: ``views.npz`` in upstream GEN3C's multi-view format (the world frame is
  view 0's camera, which is the single-view demo camera), the same views as PNGs in ``views/`` (for the
  image-folder path), and a short walk-around video ``walk.mp4`` (for the video path).

View 0 is the demo camera; view 1 stands 0.5 m to its left and turns 30 degrees to the right, so it sees
the right-hand part of the room that GEN3C's default ``left`` / ``center_facing`` trajectory turns towards
and that view 0 never saw.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from objvid.testing.assets import CAMERA_HEIGHT, CAMERA_PITCH_DEG, _intersect, _shade, room_intrinsics

# (x offset in metres, yaw in degrees, + = turn right) of each bundled view; view 0 = the demo camera.
DEMO_VIEWS = ((0.0, 0.0), (-0.5, 30.0))


def _camera_to_room(yaw_deg: float, pitch_deg: float) -> np.ndarray:
    """(3, 3) rotation camera -> room: pitch down about x, then yaw about the room's vertical (y, down)."""
    p, y = np.radians(pitch_deg), np.radians(yaw_deg)
    pitch = np.array([[1.0, 0.0, 0.0], [0.0, np.cos(p), np.sin(p)], [0.0, -np.sin(p), np.cos(p)]])
    yaw = np.array([[np.cos(y), 0.0, np.sin(y)], [0.0, 1.0, 0.0], [-np.sin(y), 0.0, np.cos(y)]])
    return yaw @ pitch


def room_view(width: int, height: int, x: float = 0.0, yaw_deg: float = 0.0,
              pitch_deg: float = CAMERA_PITCH_DEG) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """Ray-cast the room from (x, -CAMERA_HEIGHT, 0) -> (image (H,W,3) uint8, depth (H,W) float32 metres,
    K (3,3), room-to-camera w2c (4,4) float64, OpenCV)."""
    K = room_intrinsics(width, height)
    u, v = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    rays = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1).reshape(-1, 3)
    R = _camera_to_room(yaw_deg, pitch_deg)
    origin = np.array([x, -CAMERA_HEIGHT, 0.0])
    hits = _intersect(origin, rays @ R.T)
    rgb = _shade(origin + hits.t[:, None] * (rays @ R.T), hits)
    image = np.round(rgb * 255.0).astype(np.uint8).reshape(height, width, 3)
    w2c = np.eye(4)
    w2c[:3, :3] = R.T
    w2c[:3, 3] = -R.T @ origin
    return image, hits.t.astype(np.float32).reshape(height, width), K, w2c


def room_views(width: int, height: int, views=DEMO_VIEWS) -> dict[str, np.ndarray]:
    """The room from each (x, yaw) camera, world frame = the first camera: images (N,H,W,3) uint8,
    depths (N,H,W) float32, Ks (N,3,3), w2cs (N,4,4)."""
    shots = [room_view(width, height, x, yaw) for x, yaw in views]
    room_to_world = shots[0][3]  # world = view 0's camera
    world_to_room = np.linalg.inv(room_to_world)
    return {
        "images": np.stack([s[0] for s in shots]),
        "depths": np.stack([s[1] for s in shots]),
        "Ks": np.stack([s[2] for s in shots]),
        "w2cs": np.stack([s[3] @ world_to_room for s in shots]),
    }


def views_npz_arrays(views: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Arrays of upstream's multi-view npz (``gen3c_multiview.py``) for ``room_views`` output."""
    imgs = views["images"].astype(np.float32).transpose(0, 3, 1, 2) / 127.5 - 1.0
    depth = views["depths"][:, None].astype(np.float32)
    return {
        "images_key_frames": imgs,
        "depth_key_frames": depth,
        "mask_key_frames": np.ones_like(depth),
        "K_key_frames": views["Ks"].astype(np.float32),
        "w2cs_key_frames": views["w2cs"].astype(np.float32),
    }


def write_multiview_assets(out_dir: str | Path, width: int = 1280, height: int = 704, video_frames: int = 24,
                           fps: float = 12.0) -> dict:  # fmt: skip
    """Write views.npz, views/view_NN.png and walk.mp4 (a pan from view 0 to view 1) into ``out_dir``."""
    from PIL import Image

    from objvid.client.video import Mp4Writer

    out = Path(out_dir)
    (out / "views").mkdir(parents=True, exist_ok=True)
    views = room_views(width, height)
    np.savez(out / "views.npz", **views_npz_arrays(views))
    for i, img in enumerate(views["images"]):
        Image.fromarray(img).save(out / "views" / f"view_{i:02d}.png", compress_level=1)
    (x0, yaw0), (x1, yaw1) = DEMO_VIEWS[0], DEMO_VIEWS[-1]
    writer = Mp4Writer(out / "walk.mp4", width, height, fps)
    try:
        for a in np.linspace(0.0, 1.0, video_frames):
            writer.append(room_view(width, height, x0 + a * (x1 - x0), yaw0 + a * (yaw1 - yaw0))[0][None])
        writer.finish()
    except BaseException:
        writer.abort()
        raise
    return {"views": str(out / "views.npz"), "views_dir": str(out / "views"), "video": str(out / "walk.mp4")}
