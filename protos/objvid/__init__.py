"""objvid: put a real 3D object into a generated, camera-controlled video.

Subpackages: ``objvid.v1`` (generated schema), ``objvid.wire`` (codec + gRPC plumbing),
``objvid.protowire`` (direct wire-format writer/reader), ``objvid.serving`` (the services' metrics endpoint
and malloc settings), ``objvid.depth``, ``objvid.cache``, ``objvid.diffusion``, ``objvid.client``.
"""

__version__ = "0.1.0"
