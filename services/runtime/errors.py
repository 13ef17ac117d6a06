"""Typed errors that map onto gRPC status codes, usable in pure cores (no gRPC import here).

Raise these (or plain ``ValueError`` for a bad argument) from core code and handlers; the server framework
(``objvid.serving.status``) turns each into its status code with ``str(exc)`` as the one-line message.
``status`` is the gRPC status code *name*; ``objvid.serving`` looks the code up by that name.

Messages start with the field they are about: ``InvalidArgument("camera.width", "must be > 0")`` reads
``"camera.width: must be > 0"``.
"""

from __future__ import annotations


class ServiceError(Exception):
    """An error with a gRPC status (``status``: the code name); ``str(self)`` is the message."""

    status = "INTERNAL"

    def __init__(self, field_or_message: str, reason: str | None = None):
        super().__init__(field_or_message if reason is None else f"{field_or_message}: {reason}")


class InvalidArgument(ServiceError, ValueError):
    """A request field is malformed (``InvalidArgument(field, reason)``)."""

    status = "INVALID_ARGUMENT"


class NotFound(ServiceError):
    status = "NOT_FOUND"


class AlreadyExists(ServiceError):
    status = "ALREADY_EXISTS"


class ResourceExhausted(ServiceError):
    """Over a limit (a flag names it) or a memory budget."""

    status = "RESOURCE_EXHAUSTED"


class FailedPrecondition(ServiceError):
    status = "FAILED_PRECONDITION"


class DeadlineExceeded(ServiceError):
    status = "DEADLINE_EXCEEDED"


class Cancelled(ServiceError):
    status = "CANCELLED"


class Unavailable(ServiceError):
    """Not ready yet (model loading) or shutting down: retry later."""

    status = "UNAVAILABLE"


class Unauthenticated(ServiceError):
    status = "UNAUTHENTICATED"
