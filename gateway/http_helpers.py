"""The gateway's HTTP basics: handler types, each request's id (DESIGN §7) and
answers in our JSON error shape."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web
from multidict import CIMultiDict

from paysidecar_common.http_answers import error_answer
from paysidecar_common.request_ids import REQUEST_ID_HEADER, choose_request_id

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Middleware = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]

_REQUEST_ID = web.RequestKey("request_id", str)


def request_id(request: web.BaseRequest) -> str:
    """The request's id: the client's X-Request-ID when it is well-formed, else a new
    UUID. Fixed on first use, so every part of the gateway (the paywall too) reports
    the same id."""
    known = request.get(_REQUEST_ID)
    if known is not None:
        return known
    chosen = choose_request_id(request.headers.get(REQUEST_ID_HEADER))
    request[_REQUEST_ID] = chosen
    return chosen


def json_error(
    status: int, code: str, message: str, request_id: str, *, headers: Mapping[str, str] | None = None
) -> web.Response:
    answer = error_answer(status, code, message, request_id, headers=headers)
    return web.Response(status=answer.status, headers=CIMultiDict(answer.headers), body=answer.body)
