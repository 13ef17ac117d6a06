"""What every server CLI shares beyond the flags: logging and the process exit."""

from __future__ import annotations

import logging
import sys

LOG_FORMAT = "%(asctime)s level=%(levelname)s logger=%(name)s %(message)s"


def setup_logging(level: str) -> None:
    """Structured ``key=value`` lines on stderr at ``level`` (debug, info, warning, error)."""
    logging.basicConfig(level=level.upper(), format=LOG_FORMAT, stream=sys.stderr, force=True)
