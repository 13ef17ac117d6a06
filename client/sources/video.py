"""Input mode ``video``: ``--input-video PATH``, a video re-shot along a new camera path (GEN3C's dynamic
mode, reference 2.5): a posed RGB-D video (formats and checks in :mod:`objvid.client.video_input`) or a
plain video file whose depth and cameras the depth stage estimates (:mod:`objvid.client.video_plain`).

The scene is a video scene in the cache (``CreateVideoScene``): camera f of the chunk starting at frame s
renders source frame s + f; the trajectory preset is applied relative to each frame's input camera
(``L_i @ w2c_i``); chunks are not followed by scene updates. The reference view (placement, the model's
first frame) is frame 0 at its own camera.
"""

from __future__ import annotations

import numpy as np

from objvid.client import manifest as mf
from objvid.client.limits import ClientLimits
from objvid.client.options import GenerateConfig
from objvid.client.sources.base import InputSource, LiftFn, SourceView
from objvid.client.video_input import VideoClip, detect_format, load_object_track, load_video_input
from objvid.runtime import trajectory as traj


def is_plain_video(config: GenerateConfig) -> bool:
    """True for ``--input-video`` naming a plain video file (no depth or cameras)."""
    if config.input_video is None:
        return False
    try:
        return detect_format(config.input_video) == "video"
    except ValueError:  # a missing path: the inputs stage names it
        return False


def video_cameras(config: GenerateConfig, clip: VideoClip) -> tuple[np.ndarray, np.ndarray]:
    """(Ks, w2cs) of the preset applied relative to each frame's input camera (GEN3C's dynamic mode:
    ``L_i @ w2c_i``, K_i)."""
    try:
        w2cs, Ks = traj.generate_camera_trajectory(config.trajectory, clip.w2c, clip.K, clip.num_frames,
                                                   config.movement_distance, config.camera_rotation)  # fmt: skip
    except ValueError as err:
        raise ValueError(f"--trajectory {config.trajectory}: {err}") from None
    return Ks, w2cs


class VideoSource(InputSource):
    """``--input-video`` [+ ``--static-camera``, ``--object-track``]."""

    name = "video"

    @classmethod
    def accepts(cls, config: GenerateConfig) -> bool:
        return config.input_video is not None

    @classmethod
    def needs_lift(cls, config: GenerateConfig) -> bool:
        return is_plain_video(config)  # posed RGB-D formats carry their depth

    @classmethod
    def needs_geometry(cls, config: GenerateConfig) -> bool:
        """True when the depth service's geometry model must pose the frames (a plain video, moving camera)."""
        return is_plain_video(config) and not config.static_camera

    def __init__(self, config: GenerateConfig, width: int, height: int):
        self.config = config
        if config.image is not None:
            raise ValueError("--input-video and --image are exclusive (give one input)")
        for flag, value in (("--depth", config.depth), ("--intrinsics", config.intrinsics),
                            ("--camera-path", config.camera_path)):  # fmt: skip
            if value is not None:
                raise ValueError(
                    f"{flag} is not used with --input-video (the video carries depth and cameras)"
                )
        self.plain = detect_format(config.input_video) == "video"
        if config.static_camera and not self.plain:
            raise ValueError(f"--static-camera is only used with a plain video file; {config.input_video} "
                             "carries its own cameras")  # fmt: skip
        if self.plain:  # depth, masks and cameras come in the depth stage
            from objvid.client.video_plain import read_plain_video

            limit = ClientLimits.from_env().max_video_frames
            rgb, total = read_plain_video(config.input_video, width, height, limit)
            self.clip = VideoClip(rgb, None, None, None, None, "video", total)
        else:
            self.clip = load_video_input(config.input_video, width, height)
        self.track = None
        if config.object_track is not None:
            if not config.objects:
                raise ValueError("--object-track needs an --object (it moves the first one)")
            self.track = load_object_track(config.object_track, self.clip.frames_in)[: self.clip.num_frames]

    @property
    def num_frames(self) -> int:
        return self.clip.num_frames

    def records(self) -> dict:
        return {"input_video": mf.file_record(self.config.input_video) if self.config.input_video.is_file()
                else str(self.config.input_video), "video_format": self.clip.format,
                "video_frames_in": self.clip.frames_in, "static_camera": self.config.static_camera,
                "object_track": mf.file_record(self.config.object_track)}  # fmt: skip

    def frames(self) -> list[SourceView]:
        c = self.clip
        return [SourceView(c.rgb[i], c.depth[i], c.mask[i], c.K[i], c.w2c[i]) for i in range(c.num_frames)]

    def views(self, lift: LiftFn) -> tuple[list[SourceView], dict]:
        c = self.clip
        if self.plain:
            from objvid.client.video_plain import estimate

            geo = estimate(c.rgb, lift, self.config.static_camera, self.config.input_video,
                           getattr(lift, "progress", None))  # fmt: skip
            c.depth, c.mask, c.w2c, c.K = geo.depth, geo.mask, geo.w2c, geo.K
            record = {**geo.record, "format": c.format, "frames": c.num_frames}
        else:
            record = {"source": "file", "format": c.format, "frames": c.num_frames, "K": np.asarray(c.K[0]).tolist()}  # fmt: skip
        return [SourceView(c.rgb[0], c.depth[0], c.mask[0], c.K[0], c.w2c[0])], record

    def cameras(self, preset_w2cs, frames: int):
        """A plain video's cameras are known after the depth stage: the preset relative to each frame's."""
        if not self.plain:
            return None
        Ks, w2cs = video_cameras(self.config, self.clip)
        return Ks, w2cs, None
