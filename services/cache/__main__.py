"""``python -m objvid.cache serve ...`` = ``objvid-cache serve ...``."""

import sys

from .cli import main

sys.exit(main())
