"""One exception-to-status mapping for every RPC of every service, and the handler guards that apply it.

- ``objvid.runtime.errors.ServiceError`` subclasses -> their code (``InvalidArgument``, ``NotFound``...);
- any other ``ValueError`` -> INVALID_ARGUMENT (cores raise ``ValueError("field: reason")``);
- device out of memory (``torch.cuda.OutOfMemoryError``) or host ``MemoryError`` -> RESOURCE_EXHAUSTED;
- anything else -> INTERNAL with a one-line message carrying a reference, and ONE log line (error level;
  the traceback only at debug level). The server never dies on a request.

``guard_unary`` / ``guard_stream`` wrap a servicer method: a request that did not parse (registered with
``objvid.runtime.requests.lenient``) refused as INVALID_ARGUMENT, deadline checked before the work, the status
mapped, the outcome reported to ``self.observe_rpc(method, code_name, seconds)`` when the servicer has it.
"""

from __future__ import annotations

import functools
import logging
import sys
import time
import uuid

import grpc

from objvid.runtime.errors import DeadlineExceeded, ServiceError
from objvid.runtime.requests import check as check_request

log = logging.getLogger("objvid.serving.status")


def is_device_oom(exc: BaseException) -> bool:
    torch = sys.modules.get("torch")  # only a process that imported torch can raise its OOM
    oom = getattr(getattr(torch, "cuda", None), "OutOfMemoryError", None) if torch else None
    return oom is not None and isinstance(exc, oom)


def status_of(exc: BaseException) -> tuple[grpc.StatusCode, str, bool]:
    """(code, one-line message, unexpected) for an exception raised while handling a request."""
    if isinstance(exc, ServiceError):
        return grpc.StatusCode[exc.status], str(exc), False
    if isinstance(exc, ValueError):
        return grpc.StatusCode.INVALID_ARGUMENT, str(exc), False
    if is_device_oom(exc):
        return (
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "device out of memory; send fewer or smaller inputs",
            False,
        )
    if isinstance(exc, MemoryError):
        return grpc.StatusCode.RESOURCE_EXHAUSTED, "host out of memory; send fewer or smaller inputs", False
    return grpc.StatusCode.INTERNAL, "", True


def failure(method: str, exc: BaseException, logger: logging.Logger = log) -> tuple[grpc.StatusCode, str]:
    """Map ``exc`` and log it: one line for unexpected errors (traceback at debug level), debug otherwise."""
    code, message, unexpected = status_of(exc)
    if unexpected:
        ref = uuid.uuid4().hex[:12]
        first = (str(exc).splitlines() or [""])[0][:200]
        logger.error(
            "event=rpc_internal_error method=%s ref=%s error=%s: %s", method, ref, type(exc).__name__, first
        )
        logger.debug("event=rpc_internal_error_traceback ref=%s", ref, exc_info=exc)
        message = f"internal error in {method} ({type(exc).__name__}: {first}); server log ref={ref}"
    else:
        logger.debug("event=rpc_error method=%s code=%s detail=%s", method, code.name, message)
    return code, message


def check_deadline(context) -> None:
    """Raise DeadlineExceeded when the call's deadline has already passed (before doing any work)."""
    remaining = context.time_remaining()
    if remaining is not None and remaining <= 0:
        raise DeadlineExceeded("deadline exceeded before the request started")


def ended(context) -> grpc.StatusCode:
    """Why a call ended early: its deadline passed (DEADLINE_EXCEEDED) or its client went away (CANCELLED)."""
    remaining = context.time_remaining()
    if remaining is not None and remaining <= 0:
        return grpc.StatusCode.DEADLINE_EXCEEDED
    return grpc.StatusCode.CANCELLED


def _observe(servicer, method: str, code: grpc.StatusCode, t0: float) -> None:
    observe = getattr(servicer, "observe_rpc", None)
    if observe is not None:
        observe(method, code.name, time.perf_counter() - t0)


def guard_unary(fn):
    """Unary handler wrapper: deadline, status mapping, metrics, logs."""
    name = fn.__name__

    @functools.wraps(fn)
    def wrapper(self, request, context):
        t0 = time.perf_counter()
        code = grpc.StatusCode.OK
        try:
            check_request(request)
            check_deadline(context)
            return fn(self, request, context)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a status
            code, message = failure(name, exc, getattr(self, "log", log))
            context.abort(code, message)
        finally:
            _observe(self, name, code, t0)

    return wrapper


def guard_stream(fn):
    """Server-streaming variant of ``guard_unary``; a client that goes away ends the stream (CANCELLED)."""
    name = fn.__name__

    @functools.wraps(fn)
    def wrapper(self, request, context):
        t0 = time.perf_counter()
        code = grpc.StatusCode.OK
        try:
            check_request(request)
            check_deadline(context)
            yield from fn(self, request, context)
            if not context.is_active():
                code = ended(context)
        except GeneratorExit:
            code = ended(context)
            raise
        except Exception as exc:  # noqa: BLE001
            code, message = failure(name, exc, getattr(self, "log", log))
            if code == grpc.StatusCode.CANCELLED:
                code = ended(context)  # a passed deadline counts as DEADLINE_EXCEEDED in the metrics
                return
            context.abort(code, message)
        finally:
            _observe(self, name, code, t0)

    return wrapper
