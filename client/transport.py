"""How the client's connections are secured: TLS, client certificates (mTLS), and where a token may go.

- ``--tls-ca PATH``: TLS to every server, verified against that CA bundle.
- ``--tls-cert PATH --tls-key PATH``: also present this client certificate (mTLS; needs ``--tls-ca``).
- ``--token``: sent as a bearer token on every call. Over a plaintext connection anyone on the path can
  read it, so the client refuses to send it to a non-loopback address without TLS unless
  ``--allow-insecure-token`` is given (then it warns once). Loopback addresses (the local stack) are fine.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("objvid.client")


def read_pem(value: str | Path | bytes | None, flag: str) -> bytes | None:
    """PEM bytes from a path (or bytes as they are); ValueError naming ``flag``."""
    if value is None or isinstance(value, bytes):
        return value
    try:
        return Path(value).read_bytes()
    except OSError as exc:
        raise ValueError(f"{flag} {value}: cannot read ({exc.strerror or exc})") from None


def is_loopback(address: str) -> bool:
    """True for ``localhost:P``, ``127.x.y.z:P``, ``[::1]:P`` (and unix sockets)."""
    if address.startswith("unix:"):
        return True
    host = address.rsplit(":", 1)[0].strip("[]") if ":" in address else address
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Transport:
    """The TLS material every connection of one client uses (PEM bytes; None = not given)."""

    ca: bytes | None = None
    cert: bytes | None = None
    key: bytes | None = None

    @classmethod
    def load(cls, tls_ca=None, tls_cert=None, tls_key=None) -> Transport:
        t = cls(
            read_pem(tls_ca, "--tls-ca"), read_pem(tls_cert, "--tls-cert"), read_pem(tls_key, "--tls-key")
        )
        if bool(t.cert) != bool(t.key):
            raise ValueError(
                "--tls-cert/--tls-key: a client certificate needs its key (give both or neither)"
            )
        if t.cert and not t.ca:
            raise ValueError("--tls-cert: a client certificate (mTLS) needs --tls-ca (the servers' CA)")
        return t

    @property
    def tls(self) -> bool:
        return self.ca is not None


def check_token_transport(token: str | None, transport: Transport, addresses, allow_insecure: bool) -> None:
    """Refuse (ValueError) to send ``token`` in plaintext to a non-loopback address unless allowed."""
    if not token or transport.tls:
        return
    exposed = [a for a in addresses if a and not is_loopback(a)]
    if not exposed:
        return
    if not allow_insecure:
        raise ValueError(
            f"--token: would be sent in plaintext to {', '.join(exposed)}; give --tls-ca (TLS) or, on a "
            "trusted network only, --allow-insecure-token"
        )
    log.warning("event=insecure_token addresses=%s (the bearer token travels unencrypted)", ",".join(exposed))
