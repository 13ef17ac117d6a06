"""Client errors: every failure carries the stage it happened in, printed as ``error: <stage>: <reason>``."""

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
