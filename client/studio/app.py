"""The studio's web page (viser): the 3D scene, object and camera-path panels, and the live preview.

One viser server per studio: its GUI and scene live on the server and are mirrored to every connected
browser, so two browsers see each other's edits and a reloaded page gets the current state back. Only the
viewing camera is per browser (keyframes are taken from the camera of the browser that clicks).

Edits never call the services from the browser's callback: they record the wanted state and ask the
preview worker (:class:`LatestWins`) for a refresh; the worker sends the latest object poses to the cache
(UpdateObject) and renders the scrubbed frame (Render), so a fast drag costs one RPC pair per picture,
not one per mouse event.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time

import numpy as np
from scipy.spatial.transform import Rotation

from objvid.client.studio.coalesce import LatestWins
from objvid.client.studio.generate_panel import GeneratePanel
from objvid.client.studio.path import Keyframe, fov_y
from objvid.client.studio.pose import ObjectPose
from objvid.client.studio.session import StudioSession
from objvid.runtime import trajectory as traj

log = logging.getLogger("objvid.client.studio")

PATH_FRUSTUMS = 12  # frustums drawn along the path
PATH_COLOR, KEY_COLOR, CURRENT_COLOR, INPUT_COLOR = (
    (70, 130, 230),
    (240, 160, 20),
    (230, 40, 40),
    (30, 30, 30),
)


class StudioApp:
    """Builds the page on a ``viser.ViserServer`` around a loaded :class:`StudioSession`."""

    def __init__(self, server, session: StudioSession, notes: list[str] | None = None):
        self.server, self.session = server, session
        self.cfg = session.config
        self._syncing = False  # True while the server itself writes GUI values
        self._drop_armed = False
        self._path_dirty = False
        self.key_controls: list = []
        self._w2cs = np.zeros((0, 4, 4))
        self._pending: dict[int, ObjectPose] = {}
        self._pending_lock = threading.Lock()
        self.last_preview_ms = float("nan")
        self.previews = 0
        self._depth = float(np.median(session.points[:, 2])) if len(session.points) else 1.0
        self.preview = LatestWins(
            self._render_job, self._show_preview, self._preview_failed, "studio-preview"
        )
        self._build_gui(notes or [])
        self._build_scene()
        self.generate = GeneratePanel(server, session, self.gui_generate, self._message)
        self.generate.flush = self.flush_poses
        self.refresh_path()
        self.request_preview()

    # ------------------------------------------------------------------------------ 3D scene

    def _build_scene(self) -> None:
        s, sc = self.session, self.server.scene
        sc.set_up_direction("-y")  # OpenCV world: y down
        fov = fov_y(s.K, self.cfg.height)
        # The page opens a little behind and above the input camera, looking where it looks: the photo's
        # view, with the input camera's frustum and the path in sight.
        self.server.initial_camera.position = (0.0, -0.15 * self._depth, -0.6 * self._depth)
        self.server.initial_camera.look_at = (0.0, 0.0, self._depth)
        self.server.initial_camera.fov = fov
        sc.add_point_cloud("/scene/points", s.points, s.colors, point_size=0.004 * self._depth,
                           point_shape="square")  # fmt: skip
        self._frustum("/scene/input_camera", Keyframe(np.eye(4)), 0.15, INPUT_COLOR, 2.0)
        self.controls = []
        for i in range(len(s.objects)):
            self._add_object_nodes(i)

    def _add_object_nodes(self, i: int) -> None:
        obj = self.session.objects[i]
        size = obj.pose.scale * float(np.ptp(obj.points, axis=0).max())
        ctl = self.server.scene.add_transform_controls(f"/objects/{i}", scale=max(size, 1e-3),
                                                       position=obj.pose.position, wxyz=obj.pose.wxyz)  # fmt: skip
        ctl.on_update(lambda handle, i=i: self._on_gizmo(i, handle))
        self.controls.append(ctl)
        self._draw_object(i)

    def _draw_object(self, i: int) -> None:
        obj = self.session.objects[i]
        pts = obj.points * np.float32(obj.pose.scale)  # the gizmo carries rotation and translation
        self.server.scene.add_point_cloud(f"/objects/{i}/points", pts, obj.colors,
                                          point_size=0.003 * self._depth, point_shape="square",
                                          visible=self.gui_show_objects.value)  # fmt: skip
        if obj.plane is not None:
            n, d = obj.plane
            foot = obj.pose.matrix()[:3, 3]
            foot = foot - (n @ foot + d) * n
            front = np.cross([1.0, 0.0, 0.0], n)
            front = (
                front / np.linalg.norm(front) if np.linalg.norm(front) > 1e-6 else np.array([0.0, 0.0, 1.0])
            )
            R = np.stack([np.cross(n, front), n, front], 1)
            x, y, z, w = Rotation.from_matrix(R).as_quat()
            extent = 1.5 * max(obj.pose.scale * float(np.ptp(obj.points, axis=0).max()), 1e-3)
            self.server.scene.add_grid(f"/planes/{i}", extent, extent, plane="xz", cell_size=extent / 8,
                                       section_size=extent / 2, position=foot, wxyz=(w, x, y, z),
                                       plane_color=(120, 200, 120), plane_opacity=0.15)  # fmt: skip

    # ------------------------------------------------------------------------------ GUI

    def _build_gui(self, notes: list[str]) -> None:
        gui, s = self.server.gui, self.session
        gui.configure_theme(control_width="large", dark_mode=False)
        self.gui_status = gui.add_markdown(
            "**objvid studio** · " + " · ".join(notes) if notes else "**objvid studio**"
        )
        self.gui_notes = gui.add_markdown("")
        self.show_notes()
        with gui.add_folder("Preview"):
            pw, ph = s.preview_size
            self.gui_preview = gui.add_image(np.zeros((ph, pw, 3), np.uint8), label="cache render (fused)",
                                             format="jpeg", jpeg_quality=85)  # fmt: skip
            self.gui_frame = gui.add_slider("frame", min=0, max=max(s.frames - 1, 1), step=1, initial_value=0)
            self.gui_frame.on_update(lambda _: self._on_frame())
            self.gui_preview_info = gui.add_markdown("")
        with gui.add_folder("Objects"):
            names = [o.name for o in s.objects] or ["(none)"]
            self.gui_object = gui.add_dropdown("object", names, initial_value=names[0])
            self.gui_position = gui.add_vector3("position", (0.0, 0.0, 0.0), step=0.001)
            self.gui_rotation = gui.add_vector3("rotation (deg)", (0.0, 0.0, 0.0), step=0.1)
            self.gui_scale = gui.add_number("scale", 1.0, min=1e-6, step=0.001)
            self.gui_pose_cli = gui.add_text("--object-pose", "", hint="the CLI flag for this pose (copy it)")
            self.gui_drop = gui.add_button("Drop on surface (then click the scene)")
            self.gui_show_objects = gui.add_checkbox("show objects in 3D", True)
            self.gui_upload = gui.add_upload_button("Add object file", hint=".ply .obj .glb .gltf .stl")
        for h in (self.gui_position, self.gui_rotation, self.gui_scale):
            h.on_update(lambda _: self._on_pose_fields())
        self.gui_object.on_update(lambda _: self._sync_object_fields())
        self.gui_drop.on_click(lambda _: self._arm_drop())
        self.gui_show_objects.on_update(lambda _: self._show_objects())
        self.gui_upload.on_upload(self._on_upload)
        with gui.add_folder("Camera path"):
            self.gui_mode = gui.add_dropdown("path", ("preset", "keyframes", "file"), initial_value=s.mode)
            self.gui_preset = gui.add_dropdown("preset", traj.PRESETS, initial_value=s.preset)
            self.gui_rot = gui.add_dropdown("rotation", traj.ROTATIONS, initial_value=s.rotation)
            self.gui_distance = gui.add_number("distance", s.distance, step=0.05)
            self.gui_frames = gui.add_number("frames", s.frames, min=2, max=100_000, step=1)
            self.gui_add_key = gui.add_button("Add keyframe (current view)")
            self.gui_clear_keys = gui.add_button("Clear keyframes")
            self.gui_look = gui.add_button("View through the frame's camera")
            # off by default: a new keyframe's gizmo sits at the eye and would catch every drag of the view
            self.gui_key_gizmos = gui.add_checkbox("keyframe gizmos", False, hint="move keyframes in 3D")
            self.gui_keys = gui.add_markdown("0 keyframes")
            self.gui_export = gui.add_button("Export camera path (JSON)")
            self.gui_import = gui.add_upload_button("Import camera path (JSON)", mime_type="application/json")
        for h in (self.gui_mode, self.gui_preset, self.gui_rot, self.gui_distance, self.gui_frames):
            h.on_update(lambda _: self._on_path_fields())
        self.gui_add_key.on_click(self._on_add_keyframe)
        self.gui_clear_keys.on_click(lambda _: self._on_clear_keyframes())
        self.gui_look.on_click(self._on_look_through)
        self.gui_key_gizmos.on_update(lambda _: self.refresh_path())
        self.gui_export.on_click(self._on_export)
        self.gui_import.on_upload(self._on_import)
        self.gui_generate = gui.add_folder("Generate")
        self._sync_object_fields()

    def show_notes(self) -> None:
        """The session's notes (e.g. an object that could not be placed automatically)."""
        self.gui_notes.content = "\n\n".join(f"note: {n}" for n in self.session.notes)

    def _message(self, text: str) -> None:
        self.gui_preview_info.content = text

    # ------------------------------------------------------------------------------ objects

    def selected(self) -> int:
        names = [o.name for o in self.session.objects]
        return names.index(self.gui_object.value) if self.gui_object.value in names else -1

    def _sync_object_fields(self) -> None:
        i = self.selected()
        if i < 0:
            return
        pose = self._pending.get(i) or self.session.objects[i].pose
        self._syncing = True
        try:
            self.gui_position.value = tuple(round(v, 6) for v in pose.position)
            self.gui_rotation.value = tuple(round(v, 4) for v in pose.rotation_deg)
            self.gui_scale.value = round(pose.scale, 6)
            self.gui_pose_cli.value = self.session.objects[i].pose.cli_value()
        finally:
            self._syncing = False

    def _set_wanted(self, i: int, pose: ObjectPose, move_gizmo: bool) -> None:
        old_scale = (self._pending.get(i) or self.session.objects[i].pose).scale
        with self._pending_lock:
            self._pending[i] = pose
        if move_gizmo:
            self.controls[i].position, self.controls[i].wxyz = pose.position, pose.wxyz
        if abs(pose.scale - old_scale) > 1e-12:
            self.session.objects[i].pose = pose  # drawn at the new scale now; the cache follows
            self._draw_object(i)
        self.request_preview()

    def _on_pose_fields(self) -> None:
        i = self.selected()
        if self._syncing or i < 0:
            return
        try:
            pose = ObjectPose(tuple(self.gui_position.value), tuple(self.gui_rotation.value),
                              float(self.gui_scale.value))  # fmt: skip
            pose.matrix()
            if not pose.scale > 0:
                raise ValueError("scale must be > 0")
        except (ValueError, TypeError) as err:
            self._message(f"**pose:** {err}")
            return
        self._set_wanted(i, pose, move_gizmo=True)

    def _on_gizmo(self, i: int, handle) -> None:
        scale = (self._pending.get(i) or self.session.objects[i].pose).scale
        pose = ObjectPose.from_wxyz(handle.position, handle.wxyz, scale)
        self._set_wanted(i, pose, move_gizmo=False)
        if i == self.selected():
            self._sync_object_fields()

    def _arm_drop(self) -> None:
        if not self._drop_armed:  # pointer events only while armed: plain clicks keep orbiting the view
            self._drop_armed = True
            self.server.scene.on_click()(self._on_scene_click)
        self._message("click the surface in the 3D view to drop the selected object there")

    def _on_scene_click(self, event) -> None:
        if not self._drop_armed:
            return
        self._drop_armed = False
        self.server.scene.remove_click_callback(self._on_scene_click)
        i = self.selected()
        if i < 0:
            return
        self.flush_poses()
        try:
            pose = self.session.drop(i, event.ray_origin, event.ray_direction)
        except Exception as err:  # noqa: BLE001 - shown in the page
            self._message(f"**drop:** {_reason(err)}")
            return
        if pose is None:
            self._message("**drop:** no scene point under the cursor")
            return
        self.controls[i].position, self.controls[i].wxyz = pose.position, pose.wxyz
        self._draw_object(i)
        self._sync_object_fields()
        self.request_preview()

    def _show_objects(self) -> None:
        for i in range(len(self.session.objects)):
            self._draw_object(i)

    def _on_upload(self, event) -> None:
        from pathlib import Path

        f = event.target.value
        folder = self.session.workdir / "objects"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / Path(f.name).name
        path.write_bytes(f.content)
        try:
            i = self.session.add_object(path, f.content)
        except Exception as err:  # noqa: BLE001 - shown in the page
            self._message(f"**add object:** {_reason(err)}")
            return
        self._add_object_nodes(i)
        self.show_notes()
        self.gui_object.options = [o.name for o in self.session.objects]
        self.gui_object.value = self.session.objects[i].name
        self.request_preview()

    def flush_poses(self) -> None:
        """Send the wanted object poses to the cache (called by the preview worker and before generate)."""
        with self._pending_lock:
            pending, self._pending = self._pending, {}
        for i, pose in pending.items():
            self.session.set_pose(i, pose)
        if pending and self.selected() in pending:
            self._sync_object_fields()

    # ------------------------------------------------------------------------------ camera path

    def _on_path_fields(self) -> None:
        if self._syncing:
            return
        try:
            self.session.set_path(mode=self.gui_mode.value, preset=self.gui_preset.value,
                                  rotation=self.gui_rot.value, distance=float(self.gui_distance.value),
                                  frames=int(self.gui_frames.value))  # fmt: skip
        except ValueError as err:
            self._message(f"**camera path:** {err}")
            return
        self.refresh_path()

    def _on_add_keyframe(self, event) -> None:
        cam = event.client.camera
        n = self.session.add_keyframe(Keyframe.from_wxyz_position(cam.wxyz, cam.position))
        self._message(f"keyframe {n} added (turn on keyframe gizmos to move it in 3D)")
        k = self.session.keyframes[n - 1]
        ctl = self.server.scene.add_transform_controls(f"/keys/{n - 1}", scale=0.12 * self._depth,
                                                       position=k.position, wxyz=k.wxyz,
                                                       visible=self.gui_key_gizmos.value)  # fmt: skip
        ctl.on_update(lambda handle, j=n - 1: self._on_key_gizmo(j, handle))
        self.key_controls.append(ctl)
        self.refresh_path()

    def _on_key_gizmo(self, j: int, handle) -> None:
        """A keyframe's gizmo moved: the path follows (redraw and preview are coalesced by the worker)."""
        self.session.move_keyframe(j, Keyframe.from_wxyz_position(handle.wxyz, handle.position))
        self._path_dirty = True
        self.request_preview()

    def _on_clear_keyframes(self) -> None:
        self.session.clear_keyframes()
        self.server.scene.add_frame("/keys", show_axes=False)  # replaces (so removes) the keyframe gizmos
        self.key_controls.clear()
        self.refresh_path()

    def _on_look_through(self, event) -> None:
        """Move the clicking browser's view to the camera of the scrubbed frame."""
        j = int(self.gui_frame.value)
        if 0 <= j < len(self._w2cs):
            k = Keyframe.from_w2c(self._w2cs[j])
            cam = event.client.camera
            cam.fov = fov_y(self.session.K, self.cfg.height)
            cam.wxyz, cam.position = k.wxyz, k.position

    def _on_export(self, event) -> None:
        try:
            data = json.dumps(self.session.path_dict(), indent=1).encode()
        except ValueError as err:
            self._message(f"**export:** {err}")
            return
        out = self.session.workdir / "camera_path.json"
        tmp = out.with_name(f".{out.name}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, out)  # whole or not at all: readers never see a half-written file
        event.client.send_file_download("camera_path.json", data, save_immediately=True)
        self._message(f"camera path saved: `{out.resolve()}` (use it with `--camera-path`)")

    def _on_import(self, event) -> None:
        try:
            self.session.import_path(json.loads(event.target.value.content))
        except (ValueError, UnicodeDecodeError) as err:
            self._message(f"**import:** {err}")
            return
        self.refresh_path()

    def refresh_path(self, preview: bool = True) -> None:
        """Redraw the path (frustums, keyframes, the current frame) and sync the path fields."""
        s = self.session
        self._syncing = True
        try:
            self.gui_mode.value, self.gui_frames.value = s.mode, int(s.frames)
            self.gui_frame.max = max(int(s.frames) - 1, 1)
            self.gui_keys.content = f"{len(s.keyframes)} keyframes"
        finally:
            self._syncing = False
        sc = self.server.scene
        try:
            _, w2cs = s.cameras()
        except ValueError as err:
            self._message(f"**camera path:** {err}")
            w2cs = np.zeros((0, 4, 4))
        picks = np.unique(np.linspace(0, len(w2cs) - 1, min(PATH_FRUSTUMS, len(w2cs))).astype(int))
        sc.add_frame("/path", show_axes=False)  # replaces (and so clears) the previous path
        for j in picks:
            self._frustum(f"/path/f{j}", Keyframe.from_w2c(w2cs[j]), 0.06, PATH_COLOR, 1.5)
        if len(w2cs) > 1:
            centres = np.stack([Keyframe.from_w2c(w).position for w in w2cs])
            sc.add_spline_catmull_rom(
                "/path/line", centres, color=PATH_COLOR, thickness=2.0, thickness_units="screen"
            )
        for j, k in enumerate(s.keyframes if s.mode == "keyframes" else []):
            self._frustum(f"/path/key{j}", k, 0.08, KEY_COLOR, 2.0)
        self._w2cs = w2cs
        for ctl in self.key_controls:
            ctl.visible = s.mode == "keyframes" and self.gui_key_gizmos.value
        self._draw_current()
        if preview:
            self.request_preview()

    def _frustum(self, name: str, k: Keyframe, size: float, color, thickness: float) -> None:
        """A camera of the video's K at pose k; size in units of the scene's median depth."""
        self.server.scene.add_camera_frustum(
            name, fov_y(self.session.K, self.cfg.height), self.cfg.width / self.cfg.height,
            scale=size * self._depth, color=color, thickness=thickness, thickness_units="screen",
            wxyz=k.wxyz, position=k.position,
        )  # fmt: skip

    def _on_frame(self) -> None:
        self._draw_current()
        self.request_preview()

    def _draw_current(self) -> None:
        j = int(self.gui_frame.value)
        if 0 <= j < len(self._w2cs):
            self._frustum("/current", Keyframe.from_w2c(self._w2cs[j]), 0.1, CURRENT_COLOR, 2.5)

    # ------------------------------------------------------------------------------ preview

    def request_preview(self) -> None:
        self.preview.submit(int(self.gui_frame.value))

    def _render_job(self, frame: int):
        if self._path_dirty:  # keyframe gizmos moved: redraw the path once per picture, not per event
            self._path_dirty = False
            self.refresh_path(preview=False)
        self.flush_poses()
        t0 = time.perf_counter()
        image = self.session.render_preview(frame)
        return image, (time.perf_counter() - t0) * 1000

    def _show_preview(self, frame: int, result) -> None:
        image, ms = result
        self.gui_preview.image = image
        self.last_preview_ms = ms
        self.previews += 1
        pw, ph = self.session.preview_size
        self._message(f"frame {frame}: {pw}x{ph} render {ms:.0f} ms")

    def _preview_failed(self, frame: int, exc: BaseException) -> None:
        self._message(f"**preview:** {_reason(exc)}")

    def state(self) -> dict:
        """What the page shows, for scripts and tests: object poses (CLI values), path mode, frames."""
        s = self.session
        return {"objects": [{"name": o.name, "pose": o.pose.cli_value(), "matrix": o.pose.matrix().tolist()}
                            for o in s.objects], "mode": s.mode, "frames": int(s.frames),
                "keyframes": len(s.keyframes), "previews": self.previews}  # fmt: skip

    def close(self) -> None:
        self.preview.close()


def _reason(err: BaseException) -> str:
    from objvid.client.errors import ServiceError

    if isinstance(err, ServiceError):
        return f"{err.service} {err.method}: {err.code}: {err.details}"
    return str(err)
