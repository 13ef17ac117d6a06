"""Limits every object-file parser checks before it allocates (flags of the cache service).

Each limit bounds memory by the declared sizes in a file's header, checked against the bytes actually
present, so nothing is allocated for what a file only claims to hold:

- ``max_object_bytes`` (``--max-object-bytes``): the file itself.
- ``max_sample_points`` (``--max-sample-points``): points sampled from a mesh's surface.
- ``max_points`` (``--max-points``): points of a point-cloud file (a PLY without faces, a glTF/OBJ cloud).
- ``max_mesh_elements`` (``--max-mesh-elements``): vertices + face corners over all meshes of a file,
  counted after glTF node instancing (one mesh drawn by 1,000 nodes counts 1,000 times).
- ``max_texture_pixels`` (``--max-texture-pixels``): decoded pixels of all textures of a file, read from
  the image headers before any texture is decoded (also Pillow's decompression-bomb limit in the parser).
"""

from __future__ import annotations

from dataclasses import dataclass

from objvid.runtime.errors import ResourceExhausted


class ObjectFileError(ValueError):
    """A file the loaders refuse (gRPC INVALID_ARGUMENT): ``"<file>: <reason>"``, one line. Errors raised
    inside the parsing libraries are reported as ``"<file>: unreadable <FORMAT> (<type>: <first line>)"``."""


class LoadLimitExceeded(ResourceExhausted):
    """A file is over one of the :class:`LoadLimits` (gRPC RESOURCE_EXHAUSTED); the message names the file,
    the part and the flag."""


@dataclass(frozen=True)
class LoadLimits:
    max_object_bytes: int = 256 << 20
    max_sample_points: int = 2_000_000
    max_points: int = 20_000_000
    max_mesh_elements: int = 20_000_000
    max_texture_pixels: int = 32 << 20

    def check(self, what: str, value: int, limit_name: str, unit: str = "") -> None:
        """Raise LoadLimitExceeded when ``value`` is over the limit ``limit_name`` (a field of this class)."""
        limit = getattr(self, limit_name)
        if value > limit:
            flag = "--" + limit_name.replace("_", "-")
            raise LoadLimitExceeded(f"{what}: {value}{unit} is over the limit of {limit} ({flag})")
