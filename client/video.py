"""Video output: H.264 mp4 through the ffmpeg binary that imageio-ffmpeg ships, never half-written.

:class:`Mp4Writer` streams frames into a hidden temporary file in the output folder and renames it onto
the target only in :meth:`Mp4Writer.finish`; an error or an interrupt removes the temporary file.
:func:`tile_buffers` lays the buffer slots of renders side by side as GEN3C's ``--save_buffer`` does.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np

DEFAULT_QUALITY = 6  # 0..10 as in imageio-ffmpeg: libx264 crf = (1 - q/10) * 51 ~ 20
DEFAULT_PRESET = "veryfast"


class Mp4Writer:
    """Append (T, H, W, 3) uint8 frames; ``finish()`` publishes the file, ``abort()`` (or an error in a
    ``with`` block) deletes the partial file.

    ffmpeg runs in its own process group (a terminal Ctrl-C reaches only the client, which aborts it) and
    is started without a pre-exec hook, so no fork-time handlers of gRPC run in a half-made child.
    """

    def __init__(self, path: str | Path, width: int, height: int, fps: float = 24.0,
                 quality: int = DEFAULT_QUALITY, preset: str = DEFAULT_PRESET):  # fmt: skip
        import imageio_ffmpeg

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
        cmd = [
            imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
            "-s", f"{self.width}x{self.height}", "-r", f"{float(fps):g}", "-i", "-", "-an", "-c:v", "libx264",
            "-pix_fmt", "yuv420p", "-crf", str(crf), "-preset", preset, "-movflags", "+faststart", str(self.tmp),
        ]  # fmt: skip
        self._err = tempfile.TemporaryFile()
        self._proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._err, process_group=0
        )
        self._open = True

    def _ffmpeg_error(self, what: str) -> OSError:
        self._err.seek(0)
        text = self._err.read().decode(errors="replace").strip().splitlines()
        return OSError(f"ffmpeg {what} for {self.path}: {text[-1] if text else 'no message'}")

    def append(self, frames: np.ndarray) -> None:
        """frames: (T, H, W, 3) or (H, W, 3) uint8."""
        frames = np.asarray(frames)
        if frames.ndim == 3:
            frames = frames[None]
        if frames.dtype != np.uint8 or frames.shape[1:] != (self.height, self.width, 3):
            raise ValueError(
                f"video frames must be uint8 (T, {self.height}, {self.width}, 3), got {frames.dtype} {frames.shape}"
            )
        try:
            self._proc.stdin.write(np.ascontiguousarray(frames).data)
        except (BrokenPipeError, OSError):
            self._proc.wait()
            raise self._ffmpeg_error(f"stopped (exit code {self._proc.returncode})") from None
        self.frames += len(frames)

    def finish(self) -> Path:
        """Close the encoder and rename the file onto ``path``."""
        if self._open:
            self._open = False
            try:
                self._proc.stdin.close()
            except OSError:
                pass
            code = self._proc.wait()
            if code != 0:
                self.tmp.unlink(missing_ok=True)
                raise self._ffmpeg_error(f"failed (exit code {code})")
            self._err.close()
            os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Stop the encoder and delete the partial file."""
        if self._open:
            self._open = False
            self._proc.kill()
            self._proc.wait()
            try:
                self._proc.stdin.close()
            except OSError:
                pass
            self._err.close()
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


def _ffmpeg_decode(path: str | Path, raw: bool) -> tuple[bytes, int, int, int]:
    """Decode ``path`` with ffmpeg -> (rgb24 frame bytes or b"", frame count, width, height).

    Started like :class:`Mp4Writer`'s ffmpeg: no pre-exec hook, so it is safe beside gRPC's threads
    (imageio-ffmpeg's reader forks with one and failed there under load).
    """
    import re

    import imageio_ffmpeg

    out = ["-f", "rawvideo", "-pix_fmt", "rgb24", "-"] if raw else ["-f", "null", "-"]
    cmd = [
        imageio_ffmpeg.get_ffmpeg_exe(),
        "-nostdin",
        "-hide_banner",
        "-i",
        str(path),
        "-map",
        "0:v:0",
        *out,
    ]
    proc = subprocess.run(cmd, capture_output=True, process_group=0, check=False)
    log = proc.stderr.decode(errors="replace")
    size = re.search(r"Stream #0:0.*?Video: .*?, (\d+)x(\d+)", log)
    if proc.returncode != 0 or size is None:
        raise OSError(f"{path}: ffmpeg could not decode the video: {log.strip()[-500:]}")
    w, h = int(size.group(1)), int(size.group(2))
    if raw:
        return proc.stdout, len(proc.stdout) // (w * h * 3), w, h
    frames = re.findall(r"frame=\s*(\d+)", log)
    return b"", int(frames[-1]) if frames else 0, w, h


def probe_video(path: str | Path) -> tuple[int, int, int]:
    """Decode an mp4 fully -> (frame count, width, height)."""
    _, count, w, h = _ffmpeg_decode(path, raw=False)
    return count, w, h


def read_video(path: str | Path) -> np.ndarray:
    """Decode an mp4 -> (T, H, W, 3) uint8."""
    data, count, w, h = _ffmpeg_decode(path, raw=True)
    return np.frombuffer(data, np.uint8)[: count * h * w * 3].reshape(count, h, w, 3)
