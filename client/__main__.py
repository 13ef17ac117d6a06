"""``python -m objvid.client`` = ``objvid-client``."""

from objvid.client.cli import main

main()
