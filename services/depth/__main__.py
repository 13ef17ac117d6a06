"""``python -m objvid.depth serve ...`` (same as the ``objvid-depth`` console script)."""

import sys

from objvid.depth.cli import main

sys.exit(main())
