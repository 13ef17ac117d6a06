"""Video output: H.264 mp4 through imageio-ffmpeg, never half-written.

:class:`Mp4Writer` streams frames into a hidden temporary file in the output folder and renames it onto
the target only in :meth:`Mp4Writer.finish`; an error or an interrupt removes the temporary file.
:func:`tile_buffers` lays the buffer slots of renders side by side as GEN3C's ``--save_buffer`` does.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

DEFAULT_QUALITY = 6  # imageio-ffmpeg 0..10 -> libx264 crf = (1 - q/10) * 51 ~ 20
DEFAULT_PRESET = "veryfast"


class Mp4Writer:
    """Append (T, H, W, 3) uint8 frames; ``finish()`` publishes the file, ``abort()`` (or an error in a
    ``with`` block) deletes the partial file."""

    def __init__(self, path: str | Path, width: int, height: int, fps: float = 24.0,
                 quality: int = DEFAULT_QUALITY, preset: str = DEFAULT_PRESET):  # fmt: skip
        import imageio_ffmpeg

        if width % 2 or height % 2:
            raise ValueError(f"video size must be even for H.264, got {width}x{height}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.path.parent / f".{self.path.stem}.partial-{os.getpid()}.mp4"
        self.width, self.height = int(width), int(height)
        self.frames = 0
        self._gen = imageio_ffmpeg.write_frames(
            str(self.tmp),
            (self.width, self.height),
            fps=float(fps),
            quality=quality,
            codec="libx264",
            pix_fmt_out="yuv420p",
            macro_block_size=1,
            output_params=["-preset", preset, "-movflags", "+faststart"],
            ffmpeg_log_level="error",
        )
        self._gen.send(None)
        self._open = True

    def append(self, frames: np.ndarray) -> None:
        """frames: (T, H, W, 3) or (H, W, 3) uint8."""
        frames = np.asarray(frames)
        if frames.ndim == 3:
            frames = frames[None]
        if frames.dtype != np.uint8 or frames.shape[1:] != (self.height, self.width, 3):
            raise ValueError(
                f"video frames must be uint8 (T, {self.height}, {self.width}, 3), got {frames.dtype} {frames.shape}"
            )
        for frame in frames:
            self._gen.send(np.ascontiguousarray(frame))
            self.frames += 1

    def finish(self) -> Path:
        """Close the encoder and rename the file onto ``path``."""
        if self._open:
            self._open = False
            self._gen.close()
            os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Stop the encoder and delete the partial file."""
        if self._open:
            self._open = False
            try:
                self._gen.close()
            except Exception:  # noqa: BLE001 - the encoder may be half-dead already
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


def probe_video(path: str | Path) -> tuple[int, int, int]:
    """Decode an mp4 fully -> (frame count, width, height)."""
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
    meta = reader.__next__()
    count = sum(1 for _ in reader)
    w, h = meta["size"]
    return count, int(w), int(h)


def read_video(path: str | Path) -> np.ndarray:
    """Decode an mp4 -> (T, H, W, 3) uint8."""
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
    meta = reader.__next__()
    w, h = meta["size"]
    frames = [np.frombuffer(f, np.uint8).reshape(h, w, 3) for f in reader]
    return np.stack(frames) if frames else np.zeros((0, h, w, 3), np.uint8)
