"""A synthetic posed RGB-D video with known geometry, and writers for GEN3C's video input formats.

The world (OpenCV axes, y down): a textured back wall at z = 4, a floor at y = 1 and a red box (a
fronto-parallel square at z = 2 standing on the floor) that slides along x. The camera translates along
x and turns slightly about y. Depth is exact (ray-cast), so tests know every point.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

WALL_Z, FLOOR_Y, BOX_Z, BOX_HALF = 4.0, 1.0, 2.0, 0.3


def camera_w2c(x: float, yaw_deg: float) -> np.ndarray:
    """w2c (4, 4) of a camera at (x, 0, 0) turned ``yaw_deg`` about the world y axis."""
    a = np.deg2rad(yaw_deg)
    R = np.array([[np.cos(a), 0, -np.sin(a)], [0, 1, 0], [np.sin(a), 0, np.cos(a)]])  # world -> camera
    w2c = np.eye(4)
    w2c[:3, :3] = R
    w2c[:3, 3] = -R @ np.array([x, 0.0, 0.0])
    return w2c


def box_x(i: int, speed: float = 0.02) -> float:
    """World x of the box's centre in frame i (it slides ``speed`` scene units a frame)."""
    return -0.2 + speed * i


def synthetic_rgbd_video(frames: int = 9, height: int = 48, width: int = 80, box: bool = True,
                         box_speed: float = 0.02, static_camera: bool = False) -> dict:  # fmt: skip
    """-> {"rgb" (F, H, W, 3) uint8, "depth" (F, H, W) float32, "mask" (F, H, W) bool,
    "w2c" (F, 4, 4) float64, "K" (F, 3, 3) float64} of the scene above (frame i: camera at x = 0.03 i,
    yaw 0.5 i degrees; at the origin for every frame with ``static_camera``)."""
    f = 0.9 * width
    K = np.array([[f, 0, (width - 1) / 2], [0, f, (height - 1) / 2], [0, 0, 1.0]])
    v, u = np.meshgrid(np.arange(height, dtype=np.float64), np.arange(width, dtype=np.float64), indexing="ij")
    rays_cam = np.stack([(u - K[0, 2]) / f, (v - K[1, 2]) / f, np.ones_like(u)], -1)  # z = 1
    out = {k: [] for k in ("rgb", "depth", "mask", "w2c", "K")}
    for i in range(frames):
        w2c = camera_w2c(0.0, 0.0) if static_camera else camera_w2c(0.03 * i, 0.5 * i)
        R, t = w2c[:3, :3], w2c[:3, 3]
        centre = -R.T @ t
        d_world = rays_cam @ R  # R^T d for each ray (row vectors)
        # distance along the ray in camera z units (rays have camera z = 1): z-depth = ray parameter
        t_wall = (WALL_Z - centre[2]) / d_world[..., 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            t_floor = np.where(d_world[..., 1] > 1e-9, (FLOOR_Y - centre[1]) / d_world[..., 1], np.inf)
            t_box = (BOX_Z - centre[2]) / d_world[..., 2]
        hit_box = np.zeros_like(t_box, bool)
        if box:
            p = centre + t_box[..., None] * d_world
            hit_box = (
                (np.abs(p[..., 0] - box_x(i, box_speed)) < BOX_HALF)
                & (p[..., 1] > FLOOR_Y - 2 * BOX_HALF)
                & (p[..., 1] < FLOOR_Y)
            )
        z = np.minimum(t_wall, t_floor)
        z = np.where(hit_box, np.minimum(z, t_box), z)
        pts = centre + z[..., None] * d_world
        checker = (np.floor(pts[..., 0] * 4) + np.floor(pts[..., 1] * 4) + np.floor(pts[..., 2] * 4)) % 2
        rgb = np.stack([60 + 120 * checker, 90 + 60 * checker, 160 - 80 * checker], -1)
        rgb[np.isclose(z, t_floor)] = rgb[np.isclose(z, t_floor)] * 0.6 + [40, 60, 20]
        if box:
            rgb[hit_box & (z == t_box)] = [220, 30, 30]
        out["rgb"].append(np.clip(rgb, 0, 255).astype(np.uint8))
        out["depth"].append(z.astype(np.float32))
        out["mask"].append(np.ones_like(z, bool))
        out["w2c"].append(w2c)
        out["K"].append(K.copy())
    return {k: np.stack(v) for k, v in out.items()}


def write_mp4(path: str | Path, rgb: np.ndarray, fps: float = 24.0) -> None:
    """(F, H, W, 3) uint8 -> a lossless-ish H.264 mp4 (crf 0) through PyAV."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=int(fps))
        stream.width, stream.height = rgb.shape[2], rgb.shape[1]
        stream.pix_fmt = "yuv444p"
        stream.options = {"crf": "0", "preset": "ultrafast"}
        for frame in rgb:
            for packet in stream.encode(
                av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            ):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def write_gen3c_dir(root: str | Path, video: dict) -> Path:
    """Upstream's directory format: rgb.mp4, depth.npz (depth (F,H,W)), mask.npz (mask (F,H,W)),
    camera.npz (w2c (F,4,4), intrinsics (F,3,3))."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    write_mp4(root / "rgb.mp4", video["rgb"])
    np.savez(root / "depth.npz", depth=video["depth"])
    np.savez(root / "mask.npz", mask=video["mask"])
    np.savez(root / "camera.npz", w2c=video["w2c"], intrinsics=video["K"])
    return root


def write_gen3c_pt(path: str | Path, video: dict) -> Path:
    """Upstream's ``.pt``: a tuple of five tensors (rgb (F,3,H,W) in [-1,1], depth (F,1,H,W),
    mask (F,1,H,W), w2c (F,4,4), intrinsics (F,3,3))."""
    import torch

    rgb = torch.from_numpy(video["rgb"]).permute(0, 3, 1, 2).float() / 127.5 - 1
    tensors = (rgb, torch.from_numpy(video["depth"])[:, None], torch.from_numpy(video["mask"])[:, None].float(),
               torch.from_numpy(video["w2c"]).float(), torch.from_numpy(video["K"]).float())  # fmt: skip
    torch.save(tensors, path)
    return Path(path)
