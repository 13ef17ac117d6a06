"""``python -m objvid.diffusion`` = ``objvid-diffusion``."""

import sys

from objvid.diffusion.cli import main

sys.exit(main())
