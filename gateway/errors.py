"""Every error answer as JSON {error: {code, message, request_id}}: our own ApiErrors,
aiohttp's HTTP errors (404, 405, ...) and unexpected exceptions (500, fixed message,
traceback only in the log)."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from aiohttp import hdrs, web

from .constants import ROUTE_NOT_FOUND
from .http_helpers import Handler, json_error, request_id
from .keys import EVENTS

logger = logging.getLogger(__name__)

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    408: "request_timeout",
    411: "length_required",
    413: "payload_too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
    429: "rate_limited",
    431: "request_header_fields_too_large",
    503: "service_unavailable",
}
# Headers of aiohttp's errors that the JSON answer keeps.
_KEPT_HEADERS = (hdrs.ALLOW, hdrs.RETRY_AFTER, hdrs.WWW_AUTHENTICATE)


class ApiError(Exception):
    """An error answer with a machine code and a human message."""

    def __init__(self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


def error_code(status: int) -> str:
    """The `error.code` of an HTTP error status."""
    return _CODES.get(status, "http_error")


def _message(request: web.Request, exc: web.HTTPException) -> str:
    if exc.status == 404:
        return f"No route for {request.method} {request.path}; see /openapi.json."
    if exc.status == 405:
        return f"{request.method} is not allowed here; allowed: {exc.headers.get(hdrs.ALLOW, '')}."
    return exc.reason


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return json_error(exc.status, exc.code, exc.message, request_id(request), headers=exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        rid = request_id(request)
        if exc.status == 404 and request.match_info.http_exception is not None:
            request.app[EVENTS].event(ROUTE_NOT_FOUND, request_id=rid, route=request.path, method=request.method)
        headers = {name: exc.headers[name] for name in _KEPT_HEADERS if name in exc.headers}
        return json_error(exc.status, error_code(exc.status), _message(request, exc), rid, headers=headers)
    except Exception:
        rid = request_id(request)
        logger.exception("unhandled error for request %s (%s %s)", rid, request.method, request.path)
        return json_error(500, "internal_error", "Internal server error.", rid)
