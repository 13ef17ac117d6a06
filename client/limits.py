"""Client-side limits, checked before the client reads, decodes or allocates anything big.

The services refuse oversize requests, but only after the client has built them: ``--width 20000
--height 20000`` had the client killed by the kernel at ~20 GB (exit 137, no message) and ``--frames
100000`` spent 20 s and 660 MB first. These checks use the services' default limits
(``objvid.runtime.limits``) and the same message wording, naming the client option and the service flag;
a deployment with raised limits passes larger values through ``ClientLimits`` (the SDK) or the
``OBJVID_CLIENT_MAX_*`` variables.

Images are measured from their headers (Pillow reads no pixels), camera-path files from their size
before they are parsed.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

from objvid.runtime import limits as L

_HEADER_LOCK = threading.Lock()


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    if not value:
        return default
    try:
        out = int(value)
    except ValueError:
        raise ValueError(f"{name}: expected an integer, got {value!r}") from None
    if out <= 0:
        raise ValueError(f"{name}: must be > 0, got {out}")
    return out


@dataclass(frozen=True)
class ClientLimits:
    max_image_pixels: int = L.MAX_IMAGE_PIXELS  # video frame (cache --max-image-pixels)
    max_cameras: int = L.MAX_CAMERAS  # frames / cameras per render (cache --max-cameras)
    max_input_pixels: int = L.MAX_INPUT_PIXELS  # the input image (depth --max-pixels)
    max_object_bytes: int = L.MAX_OBJECT_BYTES  # one object file (cache --max-object-bytes)
    max_video_frames: int = 120 * 100 + 1  # a generated video (100 GEN3C chunks; a client limit)

    @classmethod
    def from_env(cls) -> ClientLimits:
        """Defaults, overridden by ``OBJVID_CLIENT_MAX_IMAGE_PIXELS`` / ``_MAX_CAMERAS`` /
        ``_MAX_INPUT_PIXELS`` / ``_MAX_OBJECT_BYTES``."""
        d = cls()
        return cls(
            max_image_pixels=_env_int("OBJVID_CLIENT_MAX_IMAGE_PIXELS", d.max_image_pixels),
            max_cameras=_env_int("OBJVID_CLIENT_MAX_CAMERAS", d.max_cameras),
            max_input_pixels=_env_int("OBJVID_CLIENT_MAX_INPUT_PIXELS", d.max_input_pixels),
            max_object_bytes=_env_int("OBJVID_CLIENT_MAX_OBJECT_BYTES", d.max_object_bytes),
            max_video_frames=_env_int("OBJVID_CLIENT_MAX_VIDEO_FRAMES", d.max_video_frames),
        )


class ClientLimitExceeded(ValueError):
    """An input over a limit, refused before anything was allocated (exit status 2, like other bad options)."""


def check_video_size(width: int, height: int, limits: ClientLimits, what: str = "--width/--height") -> None:
    if width * height > limits.max_image_pixels:
        raise ClientLimitExceeded(
            L.pixels_over(
                what, width, height, limits.max_image_pixels, "the cache service's --max-image-pixels"
            )
        )


def check_frames(frames: int, limits: ClientLimits, what: str = "--frames", *, chunked: bool = False) -> None:
    """``frames``: an explicit count (0 and negatives are errors, never "the default"). One render request
    carries them all (``render``), unless ``chunked`` (``generate`` renders 121 frames per request; its
    limit is ``max_video_frames``)."""
    if isinstance(frames, bool) or not isinstance(frames, int):
        raise ValueError(f"{what} must be an integer, got {frames!r}")
    if frames < 1:
        raise ValueError(f"{what} must be >= 1, got {frames}")
    if chunked:
        if frames > limits.max_video_frames:
            raise ClientLimitExceeded(
                L.over(what, frames, limits.max_video_frames, "OBJVID_CLIENT_MAX_VIDEO_FRAMES")
            )
    elif frames > limits.max_cameras:
        raise ClientLimitExceeded(
            L.over(what, frames, limits.max_cameras, "the cache service's --max-cameras")
        )


def image_size(path: str | Path, what: str = "--image") -> tuple[int, int]:
    """(width, height) of an image file from its header (no pixels decoded); ValueError if unreadable."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with _HEADER_LOCK:  # only the header is read: Pillow's bomb check would hide the real size
            saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                with Image.open(path) as im:
                    return im.size
            finally:
                Image.MAX_IMAGE_PIXELS = saved
    except FileNotFoundError:
        raise ValueError(f"{what} {path}: no such file") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ValueError(f"{what} {path}: not a decodable image ({type(exc).__name__})") from None


def check_input_image(path: str | Path, limits: ClientLimits, what: str = "--image") -> tuple[int, int]:
    """The input image's (width, height), refused when too large to decode or too small to use."""
    w, h = image_size(path, what)
    if w * h > limits.max_input_pixels:
        raise ClientLimitExceeded(
            L.pixels_over(f"{what} {path}", w, h, limits.max_input_pixels, "the depth service's --max-pixels")
        )
    if min(w, h) < L.MIN_IMAGE_SIDE:
        raise ValueError(
            f"{what} {path}: {w}x{h} pixels is too small to lift (at least {L.MIN_IMAGE_SIDE}x{L.MIN_IMAGE_SIDE})"
        )
    return w, h


def check_file_size(path: str | Path, limit: int, what: str, flag: str) -> int:
    """A file's size in bytes, refused over ``limit`` before it is read."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ValueError(f"{what} {path}: no such file") from None
    except OSError as exc:
        raise ValueError(f"{what} {path}: cannot read ({exc.strerror or exc})") from None
    if size > limit:
        raise ClientLimitExceeded(L.over(f"{what} {path}", size, limit, flag, " bytes"))
    return size


def check_camera_path_file(path: str | Path, limits: ClientLimits, what: str = "--camera-path") -> None:
    """A camera path holds ~400 bytes of JSON per frame: refuse files that could only hold more frames
    than ``max_cameras`` allows, before parsing them."""
    check_file_size(path, 2048 * (limits.max_cameras + 1), what, "the cache service's --max-cameras")
