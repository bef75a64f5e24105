"""Request ids (DESIGN §7) and the `request_received` event.

The id is the client's X-Request-ID when it matches [A-Za-z0-9._-]{1,128}, else a new
UUID; it is echoed on every response from `on_response_prepare`, which also runs for
answers that other middlewares or aiohttp itself produce.
"""

from __future__ import annotations

from aiohttp import web

from paysidecar_common.request_ids import REQUEST_ID_HEADER

from .constants import REQUEST_RECEIVED
from .http_helpers import Handler, request_id
from .keys import EVENTS


def route_key(request: web.Request) -> str:
    """"GET /v1/datasets/{name}" for a matched route, the raw path otherwise."""
    resource = request.match_info.route.resource
    path = resource.canonical if resource is not None else request.path
    return f"{request.method} {path}"


@web.middleware
async def request_context_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    rid = request_id(request)
    request.app[EVENTS].event(REQUEST_RECEIVED, request_id=rid, route=route_key(request), method=request.method)
    return await handler(request)


async def echo_request_id(request: web.Request, response: web.StreamResponse) -> None:
    response.headers[REQUEST_ID_HEADER] = request_id(request)
