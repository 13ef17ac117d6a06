"""objvid: put a real 3D object into a generated, camera-controlled video.

Subpackages: ``objvid.v1`` (generated schema), ``objvid.wire`` (codec + gRPC plumbing),
``objvid.depth``, ``objvid.cache``, ``objvid.diffusion``, ``objvid.client``.
"""

__version__ = "0.1.0"
