"""objvid.depth: MoGe monocular depth behind gRPC, with GEN3C's lifting conventions.

Modules: ``lift`` (pure conventions: sizes, depth cleaning, intrinsics), ``model`` (MoGe v1/v2 loading),
``service`` (the ``DepthService`` servicer), ``server`` (lifecycle: listen, load, ready, stop),
``metrics`` (Prometheus), ``cli`` (``objvid-depth serve``). See docs/depth.md.
"""
