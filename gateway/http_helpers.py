"""The gateway's HTTP basics: handler types, each request's id (DESIGN §7) and
answers in our JSON error shape."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web
from multidict import CIMultiDict

from paysidecar.aiohttp_middleware import request_id
from paysidecar_common.http_answers import error_answer

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Middleware = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]

# The request's id is the one the paywall sends to the sidecar: the client's
# X-Request-ID when it is well-formed, else a new UUID, fixed on first use. The
# paywall's public request_id() is that id for any aiohttp app, the gateway too.
__all__ = ["Handler", "Middleware", "json_error", "request_id"]


def json_error(
    status: int, code: str, message: str, request_id: str, *, headers: Mapping[str, str] | None = None
) -> web.Response:
    answer = error_answer(status, code, message, request_id, headers=headers)
    return web.Response(status=answer.status, headers=CIMultiDict(answer.headers), body=answer.body)
