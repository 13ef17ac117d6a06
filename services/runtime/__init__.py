"""objvid.runtime: what every part shares, the client included (no server plumbing here).

- ``config``: flags with ``OBJVID_<SERVICE>_<FLAG>`` environment fallbacks for every CLI;
- ``wire``: tensor / image / camera codecs; ``protowire``: the protobuf wire format written and read directly;
- ``frames``: the zero-copy decoder of the cache's frames; ``channels``: gRPC channels (TLS/mTLS, retry policy);
- ``trajectory``: GEN3C camera trajectories; ``geometry``: the Euler convention and the camera/transform checks;
- ``errors``: typed errors that map to gRPC status codes; ``malloc``: glibc malloc tuning.

See docs/architecture.md.
"""
