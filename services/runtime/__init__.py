"""objvid.runtime: what every part shares, the client included (no server plumbing here).

- ``config``: flags with ``OBJVID_<SERVICE>_<FLAG>`` environment fallbacks for every CLI.
"""
