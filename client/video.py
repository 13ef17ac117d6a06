"""Video in and out through PyAV (FFmpeg's libraries in-process): H.264 mp4, never half-written.

:class:`Mp4Writer` encodes frames with libx264 into a hidden temporary file in the output folder and
renames it onto the target only in :meth:`Mp4Writer.finish`; an error or an interrupt removes the
temporary file. No encoder or decoder process is started (earlier versions piped into an ffmpeg binary
and parsed its stderr; a fork beside gRPC's threads failed under load), so nothing can be orphaned.
:func:`read_video` / :func:`probe_video` decode an mp4 (tests, checks). :func:`tile_buffers` lays the
buffer slots of renders side by side as GEN3C's ``--save_buffer`` does.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import numpy as np

DEFAULT_QUALITY = 6  # 0..10 (the scale imageio used): libx264 crf = (1 - q/10) * 51 ~ 20
DEFAULT_PRESET = "veryfast"
CODEC = "libx264"


def _av():
    try:
        import av
    except ImportError:
        raise OSError("video output needs PyAV: pip install 'objvid[client]' (package av)") from None
    return av


class Mp4Writer:
    """Append (T, H, W, 3) uint8 frames; ``finish()`` publishes the file, ``abort()`` (or an error in a
    ``with`` block) deletes the partial file."""

    def __init__(self, path: str | Path, width: int, height: int, fps: float = 24.0,
                 quality: int = DEFAULT_QUALITY, preset: str = DEFAULT_PRESET):  # fmt: skip
        av = _av()
        if width % 2 or height % 2:
            raise ValueError(f"video size must be even for H.264, got {width}x{height}")
        if not 0 <= quality <= 10:
            raise ValueError(f"video quality must be in 0..10, got {quality}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.path.parent / f".{self.path.stem}.partial-{os.getpid()}.mp4"
        self.width, self.height = int(width), int(height)
        self.frames = 0
        crf = round((1 - quality / 10) * 51)
        try:
            self._container = av.open(str(self.tmp), "w", format="mp4", options={"movflags": "+faststart"})
            stream = self._container.add_stream(
                CODEC, rate=Fraction(float(fps)).limit_denominator(1001),
                options={"crf": str(crf), "preset": preset},
            )  # fmt: skip
            stream.width, stream.height, stream.pix_fmt = self.width, self.height, "yuv420p"
        except (av.FFmpegError, ValueError) as exc:
            self.tmp.unlink(missing_ok=True)
            raise OSError(f"cannot start the H.264 encoder for {self.path}: {exc}") from None
        self._stream = stream
        self._open = True

    def _mux(self, frame) -> None:
        av = _av()
        try:
            for packet in self._stream.encode(frame):
                self._container.mux(packet)
        except av.FFmpegError as exc:
            self.abort()
            raise OSError(f"H.264 encoding of {self.path} failed: {exc}") from None

    def append(self, frames: np.ndarray) -> None:
        """frames: (T, H, W, 3) or (H, W, 3) uint8."""
        av = _av()
        frames = np.asarray(frames)
        if frames.ndim == 3:
            frames = frames[None]
        if frames.dtype != np.uint8 or frames.shape[1:] != (self.height, self.width, 3):
            raise ValueError(
                f"video frames must be uint8 (T, {self.height}, {self.width}, 3), got {frames.dtype} {frames.shape}"
            )
        if not self._open:
            raise OSError(f"{self.path}: the writer is closed")
        for rgb in frames:
            self._mux(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24"))
            self.frames += 1

    def finish(self) -> Path:
        """Flush the encoder, close the file and rename it onto ``path``."""
        if self._open:
            self._mux(None)  # flush delayed frames
            self._open = False
            try:
                self._container.close()
            except _av().FFmpegError as exc:
                self.tmp.unlink(missing_ok=True)
                raise OSError(f"closing {self.path} failed: {exc}") from None
            os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Stop encoding and delete the partial file."""
        if self._open:
            self._open = False
            try:
                self._container.close()
            except Exception:  # noqa: BLE001 - the file is deleted anyway
                pass
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> Mp4Writer:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.finish()
        else:
            self.abort()


def tile_buffers(renders: np.ndarray, n_max: int) -> np.ndarray:
    """(T, N, H, W, 3) uint8 -> (T, H, n_max * W, 3): slots side by side, newest first, missing slots black.

    Black is GEN3C's -1 padding after its (x * 0.5 + 0.5) * 255 conversion.
    """
    t, n, h, w, _ = renders.shape
    if n > n_max:
        raise ValueError(f"renders have {n} slots, more than n_max={n_max}")
    out = np.zeros((t, h, n_max * w, 3), np.uint8)
    for s in range(n):
        out[:, :, s * w : (s + 1) * w] = renders[:, s]
    return out


def _decode(path: str | Path, keep: bool) -> tuple[list[np.ndarray], int, int, int]:
    """Decode the first video stream of ``path`` -> (frames if keep, frame count, width, height)."""
    av = _av()
    frames: list[np.ndarray] = []
    count = 0
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise OSError(f"{path}: no video stream")
            stream = container.streams.video[0]
            width, height = stream.codec_context.width, stream.codec_context.height
            for frame in container.decode(stream):
                count += 1
                if keep:
                    frames.append(frame.to_ndarray(format="rgb24"))
    except av.FFmpegError as exc:
        raise OSError(f"{path}: cannot decode the video ({exc})") from None
    return frames, count, width, height


def probe_video(path: str | Path) -> tuple[int, int, int]:
    """Decode an mp4 fully -> (frame count, width, height)."""
    _, count, w, h = _decode(path, keep=False)
    return count, w, h


def read_video(path: str | Path) -> np.ndarray:
    """Decode an mp4 -> (T, H, W, 3) uint8."""
    frames, _, w, h = _decode(path, keep=True)
    return np.stack(frames) if frames else np.zeros((0, h, w, 3), np.uint8)
