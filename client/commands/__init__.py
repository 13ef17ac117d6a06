"""The pipeline commands, one module each: ``generate``, ``render``, ``lift`` (each a function of a
config and an :class:`~objvid.client.sdk.ObjvidClient`; the CLI and the SDK call the same code)."""
