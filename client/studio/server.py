"""Serve the studio: build the session over connected services, start the viser page, print the URL.

``objvid-client studio`` (``objvid.client.cli``) starts or connects the services the way ``generate``
does and then calls :func:`serve`, which blocks until Ctrl-C / SIGTERM.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Callable

from objvid.client.errors import ObjvidError, ServiceError
from objvid.client.sdk import ObjvidClient
from objvid.client.studio.session import StudioConfig, StudioSession

log = logging.getLogger("objvid.client.studio")


def start(config: StudioConfig, client: ObjvidClient, host: str = "127.0.0.1", port: int = 8080,
          notes: list[str] | None = None, on_step: Callable[[str], None] = lambda text: None):  # fmt: skip
    """Load the session and start the page -> (viser server, StudioApp, URL). ObjvidError on failure."""
    import viser

    from objvid.client.studio.app import StudioApp

    session = StudioSession(config, client)
    try:
        session.load(on_step)
    except ServiceError as err:
        session.close()
        raise ObjvidError("scene", f"{err.service} {err.method}: {err.code}: {err.details}") from None
    except (ValueError, OSError) as err:
        session.close()
        raise ObjvidError("inputs", str(err)) from None
    try:
        # port 0: the OS picks one; a busy port: viser tries the next ones. get_port() is the bound one.
        with contextlib.redirect_stdout(sys.stderr):  # viser prints a banner: stdout carries only our URL
            server = viser.ViserServer(host=host, port=port, label="objvid studio", verbose=False)
    except OSError as err:
        session.close()
        raise ObjvidError("studio", f"cannot serve on {host}:{port} ({err.strerror or err})") from None
    try:
        app = StudioApp(server, session, notes)
    except BaseException:
        server.stop()
        session.close()
        raise
    url = f"http://{host}:{server.get_port()}"
    return server, app, url


def serve(config: StudioConfig, client: ObjvidClient, host: str, port: int, notes: list[str],
          on_step: Callable[[str], None], on_url: Callable[[str], None]) -> None:  # fmt: skip
    """:func:`start`, announce the URL, then keep serving until KeyboardInterrupt (Ctrl-C or SIGTERM)."""
    server, app, url = start(config, client, host, port, notes, on_step)
    on_url(url)
    try:
        while True:
            time.sleep(3600)
    finally:
        app.close()
        with contextlib.redirect_stdout(sys.stderr):
            server.stop()
        app.session.close()
