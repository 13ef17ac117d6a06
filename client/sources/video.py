"""Input mode ``video``: ``--input-video PATH``, a posed RGB-D video re-shot along a new camera path
(GEN3C's dynamic mode, reference 2.5; formats and checks in :mod:`objvid.client.video_input`).

The scene is a video scene in the cache (``CreateVideoScene``): camera f of the chunk starting at frame s
renders source frame s + f; the trajectory preset is applied relative to each frame's input camera
(``L_i @ w2c_i``); chunks are not followed by scene updates. The reference view (placement, the model's
first frame) is frame 0 at its own camera.
"""

from __future__ import annotations

import numpy as np

from objvid.client import manifest as mf
from objvid.client.options import GenerateConfig
from objvid.client.sources.base import InputSource, LiftFn, SourceView
from objvid.client.video_input import detect_format, load_object_track, load_video_input


class VideoSource(InputSource):
    """``--input-video`` [+ ``--object-track``]."""

    name = "video"

    @classmethod
    def accepts(cls, config: GenerateConfig) -> bool:
        return config.input_video is not None

    @classmethod
    def needs_lift(cls, config: GenerateConfig) -> bool:
        return False  # posed RGB-D formats only (the plain-video path is not wired yet)

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
        if detect_format(config.input_video) == "video":
            raise ValueError(f"--input-video {config.input_video}: plain video files are not supported yet; give "
                             "a GEN3C directory (rgb.mp4, depth.npz, mask.npz, camera.npz), a GEN3C .pt or a ViPE "
                             "output directory")  # fmt: skip
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
                "video_frames_in": self.clip.frames_in, "object_track": mf.file_record(self.config.object_track)}  # fmt: skip

    def frames(self) -> list[SourceView]:
        c = self.clip
        return [SourceView(c.rgb[i], c.depth[i], c.mask[i], c.K[i], c.w2c[i]) for i in range(c.num_frames)]

    def views(self, lift: LiftFn) -> tuple[list[SourceView], dict]:
        c = self.clip
        first = SourceView(c.rgb[0], c.depth[0], c.mask[0], c.K[0], c.w2c[0])
        return [first], {"source": "file", "format": c.format, "frames": c.num_frames,
                         "K": np.asarray(c.K[0]).tolist()}  # fmt: skip
