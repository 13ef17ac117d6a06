"""Client errors: every failure carries the stage it happened in, printed as ``error: <stage>: <reason>``.

:func:`stage_error` is the one place where an exception raised inside a stage becomes an
:class:`ObjvidError`; :func:`failure_reason` is the one place that words any failure for the run manifest.
"""

from __future__ import annotations


class ObjvidError(Exception):
    """A failure in one stage of a run. ``str()`` is the one-line ``<stage>: <reason>``."""

    def __init__(self, stage: str, reason: str):
        super().__init__(f"{stage}: {reason}")
        self.stage = stage
        self.reason = reason


class Interrupted(KeyboardInterrupt):
    """Raised in the main thread on SIGTERM (and used for Ctrl-C) so cleanup runs as for Ctrl-C."""

    def __init__(self, signum: int):
        super().__init__(f"interrupted by signal {signum}")
        self.signum = signum


class ServiceError(Exception):
    """A failed call to a service. code: the gRPC status name (e.g. ``NOT_FOUND``); details: the server's
    message; partial: some responses of a streaming call had already arrived (not safely retryable)."""

    def __init__(self, service: str, method: str, code: str, details: str, partial: bool = False):
        super().__init__(f"{service} {method} failed ({code}): {details}")
        self.service = service
        self.method = method
        self.code = code
        self.details = details
        self.partial = partial


def service_reason(err: ServiceError) -> str:
    """A ServiceError in the words of the CLI's error line."""
    if err.code == "UNAVAILABLE":
        return f"{err.service} service unreachable ({err.details})"
    if err.code == "DEADLINE_EXCEEDED":
        return f"{err.service} {err.method} timed out ({err.details})"
    return f"{err.service} {err.method}: {err.code}: {err.details}"


#: Exceptions a stage turns into ``ObjvidError(stage, reason)``; anything else is a bug and propagates.
STAGE_ERRORS = (ServiceError, ValueError, OSError, RuntimeError)


def stage_error(stage: str, exc: BaseException) -> ObjvidError | None:
    """``exc`` raised in ``stage`` -> the ObjvidError to raise instead (None: let it propagate as is)."""
    if isinstance(exc, ObjvidError):
        return exc
    if isinstance(exc, ServiceError):
        return ObjvidError(stage, service_reason(exc))
    if isinstance(exc, STAGE_ERRORS):
        return ObjvidError(stage, str(exc))
    return None


def failure_reason(exc: BaseException) -> str:
    """The manifest's ``error`` text for a run that ended with ``exc``."""
    if isinstance(exc, ObjvidError):
        return str(exc)
    if isinstance(exc, KeyboardInterrupt):
        return f"interrupted ({type(exc).__name__})"
    return f"{type(exc).__name__}: {exc}"
