"""The studio's shared session: one cache scene, its objects and the camera path, over the SDK only.

Everything a browser edits lands here (one instance per studio process, shared by every browser), and
everything here reaches the services through ``ObjvidClient`` / ``SceneSession`` (gRPC), never their code.
The session keeps what ``generate`` needs to reproduce the scene exactly: the working-size image, depth
and K it built the scene from (saved under ``<workdir>/scene/``), the object files, their 4x4 poses and
the camera path; :meth:`StudioSession.generate_config` turns them into a ``GenerateConfig``.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from objvid.client import camera_path as campath
from objvid.client import inputs as io
from objvid.client.errors import ServiceError
from objvid.client.pipeline import DEFAULT_FILTER_THRESHOLD, DEFAULT_OBJECT_RADIUS_PX, GenerateConfig
from objvid.client.placement import parse_anchor
from objvid.client.sdk import ObjvidClient, SceneSession
from objvid.client.studio.path import Keyframe, interpolate_w2c
from objvid.client.studio.pose import ObjectPose
from objvid.runtime import trajectory as traj
from objvid.v1 import types_pb2

PATH_MODES = ("preset", "keyframes", "file")
INVALID_DEPTH = 1000.0  # what `generate` gives the cache for pixels without depth (GEN3C: far away)


@dataclass
class StudioConfig:
    """The inputs (``generate``'s), the video size and where the studio keeps its files."""

    image: Path
    objects: list[Path] = field(default_factory=list)
    depth: Path | None = None
    intrinsics: Path | None = None
    anchors: list[str] = field(default_factory=list)
    object_heights: list[float] = field(default_factory=list)
    width: int = 1280
    height: int = 704
    frames: int = 121
    fps: float = 24.0
    backend: str = "gen3c"
    method: str = "fused"
    object_radius: float = DEFAULT_OBJECT_RADIUS_PX
    preview_width: int = 640
    display_points: int = 250_000
    workdir: Path = Path("studio_work")


@dataclass
class StudioObject:
    """An object in the scene: its file, its points in its own frame (for drawing) and its pose."""

    name: str
    path: Path
    points: np.ndarray  # (M, 3) float32, object frame
    colors: np.ndarray  # (M, 3) uint8
    pose: ObjectPose
    plane: tuple[np.ndarray, float] | None = None  # support plane n.x + d = 0 found by placement


def read_ply_xyzrgb(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """The cache's export PLY (binary little endian: float x, y, z, uchar red, green, blue) ->
    points (N, 3) float32, colours (N, 3) uint8."""
    end = data.find(b"end_header\n")
    if not data.startswith(b"ply") or end < 0:
        raise ValueError("export: not a PLY file")
    header = data[:end].decode("ascii", "replace").split("\n")
    count = next(int(line.split()[2]) for line in header if line.startswith("element vertex"))
    rec = np.frombuffer(data, dtype=[("xyz", "<f4", 3), ("rgb", "u1", 3)], count=count, offset=end + 11)
    return np.ascontiguousarray(rec["xyz"]), np.ascontiguousarray(rec["rgb"])


def ply_xyzrgb(points: np.ndarray, colors: np.ndarray) -> bytes:
    """(N, 3) points and (N, 3) uint8 colours -> the PLY :func:`read_ply_xyzrgb` reads (the cache reads it)."""
    rec = np.empty(len(points), dtype=[("xyz", "<f4", 3), ("rgb", "u1", 3)])
    rec["xyz"], rec["rgb"] = points, colors
    header = (f"ply\nformat binary_little_endian 1.0\nelement vertex {len(points)}\nproperty float x\n"
              "property float y\nproperty float z\nproperty uchar red\nproperty uchar green\n"
              "property uchar blue\nend_header\n")  # fmt: skip
    return header.encode("ascii") + rec.tobytes()


def support_plane(T: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, float]:
    """The plane an auto-placed object stands on: placement turns the object's +y (its up axis) onto the
    plane normal and puts its lowest point on the plane -> (n (3,), d) with n.x + d = 0."""
    n = T[:3, 1] / np.linalg.norm(T[:3, 1])
    world = points.astype(np.float64) @ T[:3, :3].T + T[:3, 3]
    return n, -float((world @ n).min())


def nearest_hit(points: np.ndarray, origin, direction, radius: float) -> np.ndarray | None:
    """The first point (N, 3) along a ray within ``radius`` of it (scene units x depth), or None."""
    o = np.asarray(origin, np.float64)
    d = np.asarray(direction, np.float64)
    d = d / np.linalg.norm(d)
    rel = points.astype(np.float64) - o
    along = rel @ d
    off = np.linalg.norm(rel - along[:, None] * d, axis=1)
    ok = (along > 0) & (off < radius * np.maximum(along, 1e-6))
    if not ok.any():
        return None
    i = np.nonzero(ok)[0][np.argmin(along[ok])]
    return points[i].astype(np.float64)


class StudioSession:
    """The scene, objects and camera path of one studio (thread-safe: one lock around every change)."""

    def __init__(self, config: StudioConfig, client: ObjvidClient):
        self.config = config
        self.client = client
        self.lock = threading.RLock()
        self.workdir = Path(config.workdir)
        self.scene: SceneSession | None = None  # the scene at the video size (placement, exports)
        self.preview_scene: SceneSession | None = None  # its twin at the preview size (None: same size)
        self.image: np.ndarray | None = None  # (H, W, 3) uint8 at the video size
        self.K: np.ndarray | None = None  # (3, 3) at the video size
        self.points = np.zeros((0, 3), np.float32)  # scene points for drawing (subsampled)
        self.colors = np.zeros((0, 3), np.uint8)
        self.objects: list[StudioObject] = []
        self.notes: list[str] = []  # things the page should tell (e.g. a failed auto placement)
        # camera path
        self.mode = "preset"
        self.preset = traj.DEFAULT_PRESET
        self.rotation = traj.DEFAULT_ROTATION
        self.distance = traj.DEFAULT_MOVEMENT_DISTANCE
        self.keyframes: list[Keyframe] = []
        self.file_path: campath.CameraPath | None = None
        self.frames = config.frames
        self.splat = "gen3c"  # the scene splat of the preview ("gen3c" as generate renders, or "zbuffer")
        self.version = 0  # bumped on every edit (the preview and the page follow it)

    # ------------------------------------------------------------------------------ building

    def load(self, on_step=lambda text: None) -> None:
        """Read the inputs, lift the image when no depth was given, create the scene, add and place the
        objects. ValueError / ServiceError on bad inputs or failing services."""
        cfg = self.config
        w, h = cfg.width, cfg.height
        image = io.load_image(cfg.image)
        if cfg.depth is not None:
            if cfg.intrinsics is None:
                raise ValueError("--depth needs --intrinsics (a K JSON file)")
            depth, valid = io.load_depth(cfg.depth)
            if depth.shape != image.shape[:2]:
                raise ValueError(f"--depth {cfg.depth}: shape {depth.shape} differs from the image's "
                                 f"{image.shape[:2]}")  # fmt: skip
            h0, w0 = image.shape[:2]
            K = io.scale_intrinsics(io.load_intrinsics(cfg.intrinsics, (w0, h0)), (w0, h0), (w, h))
            depth, valid = io.resize_nearest(depth, w, h), io.resize_nearest(valid, w, h)
            image = io.resize_image(image, w, h)
        elif cfg.intrinsics is not None:
            raise ValueError("--intrinsics is only used with --depth")
        else:
            on_step("lifting the image (depth service)")
            view = self.client.lift([image], width=w, height=h)[0]
            image, depth, valid, K = view.image, view.depth, view.mask, view.K
        scene_dir = self.workdir / "scene"
        scene_dir.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(scene_dir / "image.png")
        np.save(scene_dir / "depth.npy", np.where(valid, depth, 0.0).astype(np.float32))
        (scene_dir / "K.json").write_text(json.dumps({"K": K.tolist(), "width": w, "height": h}))
        on_step("creating the scene")
        rgbd = self.client.rgbd_view(image, np.where(valid, depth, INVALID_DEPTH).astype(np.float32), K)
        scene = SceneSession(self.client, rgbd, DEFAULT_FILTER_THRESHOLD)
        scene.create()
        pts, col = read_ply_xyzrgb(self.client.export_scene(scene.scene_id, exclude_objects=True))
        keep = pts[:, 2] < 0.5 * INVALID_DEPTH  # no sky sheet at the far clamp
        pts, col = pts[keep], col[keep]
        step = max(1, int(np.ceil(len(pts) / max(cfg.display_points, 1))))
        pw, ph = self.preview_size
        preview = None
        if (pw, ph) != (w, h):  # a lighter twin at the preview size: same picture, ~(w/pw)^2 fewer points
            on_step("creating the preview scene")
            small = io.resize_nearest(np.where(valid, depth, INVALID_DEPTH).astype(np.float32), pw, ph)
            Kp = io.scale_intrinsics(K, (w, h), (pw, ph))
            preview = SceneSession(self.client, self.client.rgbd_view(io.resize_image(image, pw, ph), small, Kp),
                                   DEFAULT_FILTER_THRESHOLD)  # fmt: skip
            preview.create()
        with self.lock:
            self.scene, self.preview_scene, self.image, self.K = scene, preview, image, K
            self.points, self.colors = pts[::step].copy(), col[::step].copy()
        heights = list(cfg.object_heights)
        heights = heights * len(cfg.objects) if len(heights) == 1 else heights
        for i, path in enumerate(cfg.objects):
            anchor = parse_anchor(cfg.anchors[i], w, h) if i < len(cfg.anchors) else None
            if anchor is None and len(cfg.objects) > 1:  # spread along the lower third, as `generate` does
                anchor = ((w - 1) * (i + 1) / (len(cfg.objects) + 1), (h - 1) * 2 / 3)
            on_step(f"adding {Path(path).name}")
            self.add_object(Path(path), io.read_file(path, "--object"), anchor,
                            heights[i] if i < len(heights) else None)  # fmt: skip

    def add_object(self, path: Path, data: bytes, anchor=None, height: float | None = None) -> int:
        """Add an object file and place it on the surface under ``anchor`` (pixels; None = default)."""
        io.check_object_path(path)
        with self.lock:
            names = {o.name for o in self.objects}
            name = path.stem
            while name in names:
                name += "_"
            self.scene.add_object(data, path.name, name)
            index = len(self.scene.objects) - 1
            pts, col = read_ply_xyzrgb(self.scene.export_object(index))
            plane = None
            try:
                info = self.scene.place_object(index, anchor, height)
                T = np.asarray(info.transform.values, np.float64).reshape(4, 4)
                plane = support_plane(T, pts)
            except ServiceError as err:
                if err.code != "INVALID_ARGUMENT":  # placement found no surface: place it by hand instead
                    raise
                T = self._fallback_pose(pts, height)
                self.scene.update_object(index, _transform(T))
                self.notes.append(f"{name}: auto placement failed ({err.details}); placed in front of the "
                                  "camera: move it by hand or use Drop on surface")  # fmt: skip
            if self.preview_scene is not None:
                pw, ph = self.preview_size
                stride = max(1, int(round(self.config.width * self.config.height / (pw * ph))))
                self.preview_scene.add_object(ply_xyzrgb(pts[::stride], col[::stride]), f"{name}.ply", name,
                                              _transform(T))  # fmt: skip
            self.objects.append(StudioObject(name, path, pts, col, ObjectPose.from_matrix(T), plane))
            self.version += 1
            return index

    def _fallback_pose(self, pts: np.ndarray, height: float | None) -> np.ndarray:
        """Upright (object +y to world up, -y here) at the view's centre, at the scene's median depth,
        ``height`` tall (default a fifth of that depth): where an object goes when no surface is found."""
        z = float(np.median(self.points[:, 2])) if len(self.points) else 1.0
        extent = float(np.ptp(pts[:, 1])) or 1.0
        s = (height or 0.2 * z) / extent
        T = np.diag([s, -s, -s, 1.0])  # 180 degrees about x: object up (+y) -> world up (-y)
        T[:3, 3] = np.array([0.0, 0.0, z]) - T[:3, :3] @ pts.astype(np.float64).mean(0)
        return T

    # ------------------------------------------------------------------------------ objects

    def set_pose(self, index: int, pose: ObjectPose) -> ObjectPose:
        """Move object ``index`` (cache UpdateObject); returns the pose the cache holds."""
        with self.lock:
            info = self.scene.update_object(index, _transform(pose.matrix()))
            if self.preview_scene is not None:
                self.preview_scene.update_object(index, _transform(pose.matrix()))
            self.objects[index].pose = ObjectPose.from_matrix(np.asarray(info.transform.values).reshape(4, 4))
            self.version += 1
            return self.objects[index].pose

    def drop(self, index: int, origin, direction) -> ObjectPose | None:
        """Stand object ``index`` on the surface the ray (origin, direction in world = input camera frame)
        hits: the hit point's pixel in the input view becomes the placement anchor (cache PlaceObject),
        keeping the object's height. None when the ray hits no scene point."""
        with self.lock:
            hit = nearest_hit(self.points, origin, direction, 0.01)
            if hit is None:
                return None
            uvw = self.K @ hit
            u = float(np.clip(uvw[0] / uvw[2], 0, self.config.width - 1))
            v = float(np.clip(uvw[1] / uvw[2], 0, self.config.height - 1))
            obj = self.objects[index]
            up = obj.points.astype(np.float64)[:, 1]
            height = obj.pose.scale * float(up.max() - up.min())
            info = self.scene.place_object(index, (u, v), height if height > 0 else None)
            T = np.asarray(info.transform.values, np.float64).reshape(4, 4)
            if self.preview_scene is not None:
                self.preview_scene.update_object(index, _transform(T))
            obj.pose = ObjectPose.from_matrix(T)
            obj.plane = support_plane(T, obj.points)
            self.version += 1
            return obj.pose

    # ------------------------------------------------------------------------------ camera path

    def set_path(self, **changes) -> None:
        """Change the path: mode, preset, rotation, distance, frames (ValueError on bad values)."""
        with self.lock:
            if "mode" in changes and changes["mode"] not in PATH_MODES:
                raise ValueError(f"mode: one of {', '.join(PATH_MODES)}, got {changes['mode']!r}")
            if "preset" in changes and changes["preset"] not in traj.PRESETS:
                raise ValueError(f"--trajectory must be one of {', '.join(traj.PRESETS)}")
            if "rotation" in changes and changes["rotation"] not in traj.ROTATIONS:
                raise ValueError(f"--camera-rotation must be one of {', '.join(traj.ROTATIONS)}")
            if "frames" in changes and int(changes["frames"]) < 2:
                raise ValueError("--frames must be >= 2")
            for key, value in changes.items():
                setattr(self, key, value)
            self.version += 1

    def add_keyframe(self, keyframe: Keyframe) -> int:
        with self.lock:
            self.keyframes.append(keyframe)
            self.mode = "keyframes"
            self.version += 1
            return len(self.keyframes)

    def move_keyframe(self, index: int, keyframe: Keyframe) -> None:
        with self.lock:
            self.keyframes[index] = keyframe
            self.version += 1

    def clear_keyframes(self) -> None:
        with self.lock:
            self.keyframes.clear()
            self.version += 1

    def cameras(self) -> tuple[np.ndarray, np.ndarray]:
        """The path's (Ks (T, 3, 3), w2cs (T, 4, 4)) at the video size; ValueError when it has none."""
        with self.lock:
            n, K = int(self.frames), self.K
            if self.mode == "file":
                if self.file_path is None:
                    raise ValueError("camera path: no file imported")
                return self.file_path.Ks.copy(), self.file_path.w2cs.copy()
            if self.mode == "keyframes":
                if not self.keyframes:
                    raise ValueError("camera path: add a keyframe (from the current view) first")
                return np.broadcast_to(K, (n, 3, 3)).copy(), interpolate_w2c(list(self.keyframes), n)
            w2cs, Ks = traj.generate_camera_trajectory(
                self.preset, np.eye(4), K, n, self.distance, self.rotation
            )
            return np.asarray(Ks, np.float64), np.asarray(w2cs, np.float64)

    def path_dict(self) -> dict:
        """The camera path as ``--camera-path`` reads it."""
        Ks, w2cs = self.cameras()
        return campath.camera_path_dict(self.config.width, self.config.height, Ks, w2cs)

    def import_path(self, data) -> campath.CameraPath:
        """A decoded camera path JSON (``--camera-path`` format) -> the studio's path (mode 'file')."""
        path = campath.parse_camera_path(data, "camera path")
        cfg = self.config
        if (path.width, path.height) != (cfg.width, cfg.height):
            raise ValueError(f"camera path: its size {path.width}x{path.height} differs from the studio's video "
                             f"{cfg.width}x{cfg.height} (start the studio with --width/--height)")  # fmt: skip
        with self.lock:
            self.file_path, self.mode, self.frames = path, "file", path.num_frames
            self.version += 1
        return path

    # ------------------------------------------------------------------------------ preview

    @property
    def preview_size(self) -> tuple[int, int]:
        cfg = self.config
        pw = min(cfg.preview_width, cfg.width)
        return pw, max(1, int(round(cfg.height * pw / cfg.width)))

    def render_preview(self, frame: int) -> np.ndarray:
        """The cache's fused render (objects included) of path frame ``frame`` at the preview size ->
        (h, w, 3) uint8."""
        Ks, w2cs = self.cameras()
        frame = int(np.clip(frame, 0, len(w2cs) - 1))
        pw, ph = self.preview_size
        K = io.scale_intrinsics(Ks[frame], (self.config.width, self.config.height), (pw, ph))
        options = self.client.render_options(self.config.method, ("rgb",), splat=self.splat,
                                             object_radius_px=self.config.object_radius)  # fmt: skip
        scene = self.preview_scene or self.scene
        return scene.render(K, w2cs[frame], pw, ph, options).rgb[0]

    # ------------------------------------------------------------------------------ generate

    def generate_config(self, run_dir: Path, **options) -> GenerateConfig:
        """Write the camera path and object poses under ``run_dir`` and return the ``GenerateConfig`` that
        runs ``generate`` on exactly this scene (the scene's own image, depth and K)."""
        run_dir.mkdir(parents=True, exist_ok=True)
        with self.lock:
            path = run_dir / "camera_path.json"
            path.write_text(json.dumps(self.path_dict(), indent=1))
            poses = []
            for i, obj in enumerate(self.objects):
                pose_file = run_dir / f"pose_{i}_{obj.name}.json"
                pose_file.write_text(json.dumps({"matrix": obj.pose.matrix().tolist()}))
                poses.append(str(pose_file))
            scene_dir = self.workdir / "scene"
            return GenerateConfig(
                image=scene_dir / "image.png", depth=scene_dir / "depth.npy", intrinsics=scene_dir / "K.json",
                objects=[o.path for o in self.objects], object_poses=poses, camera_path=path,
                width=self.config.width, height=self.config.height, fps=self.config.fps,
                backend=self.config.backend, method=self.config.method,
                object_radius=self.config.object_radius, save_buffer=True, out=run_dir / "video.mp4",
                workdir=run_dir / "work", **options,
            )  # fmt: skip

    def close(self) -> None:
        for scene in (self.scene, self.preview_scene):
            if scene is not None and scene.scene_id:
                try:
                    scene.delete()
                except Exception:  # noqa: BLE001 - the cache may already be gone
                    pass


def _transform(m: np.ndarray) -> types_pb2.Transform:
    return types_pb2.Transform(matrix=types_pb2.Matrix4(values=np.asarray(m, np.float64).ravel().tolist()))
