"""What every server CLI shares beyond the flags: logging, and the ``serve`` command's body (config from
the flags, build, run until SIGTERM/SIGINT, the process exit code)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

LOG_FORMAT = "%(asctime)s level=%(levelname)s logger=%(name)s %(message)s"


def setup_logging(level: str) -> None:
    """Structured ``key=value`` lines on stderr at ``level`` (debug, info, warning, error)."""
    logging.basicConfig(level=level.upper(), format=LOG_FORMAT, stream=sys.stderr, force=True)


def serve(
    options: dict,
    config_from_options: Callable[[dict], Any],
    build: Callable[[Any], tuple[Any, Callable[[], object] | None, Callable[[], None] | None]],
) -> int:
    """The body of a service's ``serve`` command; returns the process exit code.

    Logging at ``options["log_level"]``; ``config_from_options(options)`` (a ValueError naming the flag ->
    ``click.UsageError``, exit 2); ``build(config)`` -> (``GrpcServer``, load or None, on_stop or None);
    then ``server.run`` (bind, load, SERVING, drain on SIGTERM/SIGINT) and ``server.exit_code``.
    """
    import click

    from objvid.serving import server as serving

    setup_logging(options["log_level"])
    try:
        config = config_from_options(options)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    grpc_server, load, on_stop = build(config)
    code = serving.run(grpc_server, load=load, on_stop=on_stop)
    return serving.exit_code(grpc_server, code)
