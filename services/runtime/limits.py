"""Default request limits and their messages, shared by the services and the client.

The services refuse a request over a limit with RESOURCE_EXHAUSTED and one of these messages; the client
checks the same limits (with the services' defaults) before it reads or allocates anything, and words its
refusal the same way, naming its own option and the service flag that sets the limit.
"""

from __future__ import annotations

#: Cache service ``--max-image-pixels``: pixels of one view or rendered camera.
MAX_IMAGE_PIXELS = 4096 * 4096
#: Cache service ``--max-cameras``: cameras of one RenderTrajectory request.
MAX_CAMERAS = 4096
#: Depth service ``--max-pixels``: pixels of one input image.
MAX_INPUT_PIXELS = 40_000_000
#: Cache service ``--max-object-bytes``: bytes of one object file.
MAX_OBJECT_BYTES = 256 << 20
#: Smallest input image side the client accepts (a 1x1 image lifts to nothing useful).
MIN_IMAGE_SIDE = 32


def over(what: str, value: int, limit: int, flag: str, unit: str = "") -> str:
    """``"<what>: <value><unit> is over the limit of <limit> (<flag>)"``."""
    return f"{what}: {value}{unit} is over the limit of {limit} ({flag})"


def pixels_over(what: str, width: int, height: int, limit: int, flag: str = "--max-image-pixels") -> str:
    """``"<what>: WxH = N pixels is over the limit of <limit> (<flag>)"``."""
    return f"{what}: {width}x{height} = {width * height} pixels is over the limit of {limit} ({flag})"
