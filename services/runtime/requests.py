"""Request messages that do not parse become INVALID_ARGUMENT, not INTERNAL plus a logged traceback.

gRPC answers a request deserializer that raises with INTERNAL and logs the traceback, once per request:
random bytes sent to any RPC would fill the log. ``lenient(request_cls)`` is a deserializer that returns a
``BadRequest`` instead of raising; the handler wrapper calls ``check(request)``, which raises InvalidArgument
(INVALID_ARGUMENT) naming the message type and the reason.
"""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf.message import DecodeError

from objvid.runtime.errors import InvalidArgument


@dataclass(frozen=True)
class BadRequest:
    type_name: str
    reason: str


def lenient(request_cls):
    """``request_cls.FromString`` that returns BadRequest for bytes that are not such a message."""
    name = request_cls.DESCRIPTOR.name

    def deserialize(data: bytes):
        try:
            return request_cls.FromString(data)
        except (DecodeError, ValueError, RuntimeError) as exc:
            return BadRequest(name, str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__)

    return deserialize


def check(request) -> None:
    """ValueError when the request did not parse (see module docstring)."""
    if isinstance(request, BadRequest):
        raise InvalidArgument(f"request: not a valid {request.type_name} message ({request.reason})")
