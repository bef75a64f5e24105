"""The one error table: domain errors -> gRPC status codes with `reason: message`
details. Anything unexpected is INTERNAL with a fixed message; the traceback
stays in the logs."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc

from ..constants import Reason
from ..payments.errors import CallerError, ClaimRefused, LedgerUnavailable, RouteRefused, UnknownPayment

log = logging.getLogger(__name__)

Req = TypeVar("Req")
Resp = TypeVar("Resp")


def _status_for(exc: Exception) -> tuple[grpc.StatusCode, str, str] | None:
    if isinstance(exc, CallerError):
        return grpc.StatusCode.INVALID_ARGUMENT, exc.reason, exc.message
    if isinstance(exc, UnknownPayment):
        return grpc.StatusCode.NOT_FOUND, Reason.UNKNOWN_PAYMENT, str(exc)
    if isinstance(exc, (ClaimRefused, RouteRefused)):
        return grpc.StatusCode.FAILED_PRECONDITION, exc.reason, exc.message
    if isinstance(exc, LedgerUnavailable):
        return grpc.StatusCode.UNAVAILABLE, Reason.LEDGER_UNAVAILABLE, "the payment ledger is unavailable"
    return None  # a bug of ours, whatever its type (a ValueError too): never the caller's fault


def mapped(
    method: Callable[..., Awaitable[Resp]],
) -> Callable[..., Awaitable[Resp]]:
    """Wrap a servicer method so every domain error becomes a proper status."""

    @functools.wraps(method)
    async def wrapper(self, request, context: grpc.aio.ServicerContext) -> Resp:
        try:
            return await method(self, request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            status = _status_for(exc)
            if status is None:
                log.exception("unexpected error in %s", method.__name__)
                await context.abort(grpc.StatusCode.INTERNAL, "internal: unexpected error")
            code, reason, message = status
            await context.abort(code, f"{reason}: {message}")

    return wrapper
