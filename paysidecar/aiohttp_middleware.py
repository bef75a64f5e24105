"""x402 paywall for aiohttp apps, backed by the payment sidecar (DESIGN §4 rule 3, §7).

For a paid route: Authorize → (402 / rejection answered verbatim) → handler →
Settle only for a 2xx GET that the client is still waiting for → content with
PAYMENT-RESPONSE; anything else → Release with a reason (a HEAD is answered
without any header that depends on the data). Content never leaves
without a successful settle, and a sidecar that cannot be reached gives a 503.
The sidecar calls and the decisions live in paysidecar.payment_flow; this module is
the aiohttp side of them.

Put this middleware last (innermost): it prepares and sends a paid response
itself, to learn whether delivery failed, so middlewares outside it cannot change
that response. Add headers for every response with `app.on_response_prepare`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from paysidecar.client import SidecarClient
from paysidecar.payment_flow import (
    RELEASE_CLIENT_GONE,
    RELEASE_HANDLER_ERROR,
    RELEASE_HANDLER_STREAMED,
    RELEASE_HEAD,
    RELEASE_NOT_DELIVERED,
    EventSink,
    PaidRequest,
    PaymentFlow,
    RouteSpec,
    RouteTable,
    authorize_request,
    head_headers,
    release_reason,
    status_reason,
)
from paysidecar_common.http_answers import HttpAnswer
from paysidecar_common.request_ids import REQUEST_ID_HEADER, choose_request_id

logger = logging.getLogger(__name__)

REQUEST_ID_KEY = web.RequestKey("paysidecar_request_id", str)
# What the handler's answer costs, when the route is priced by what it delivers.
CHARGE_KEY = web.RequestKey("paysidecar_charge", int)
# The route's price per row from the sidecar's config (None: priced per request),
# for the handler of a paid request.
PRICE_PER_ROW_KEY = web.RequestKey("paysidecar_price_per_row", int | None)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Middleware = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]
RouteResolver = Callable[[web.Request], RouteSpec | None]


def request_id(request: web.Request) -> str:
    """The request's id: the client's X-Request-ID when it is well-formed, else a new
    UUID. Fixed on first use, so every part of the app reports the same id."""
    known = request.get(REQUEST_ID_KEY)
    if known is not None:
        return known
    chosen = choose_request_id(request.headers.get(REQUEST_ID_HEADER))
    request[REQUEST_ID_KEY] = chosen
    return chosen


def set_charge(request: web.Request, charge: int) -> None:
    """The handler's answer costs `charge` atomic units (e.g. per row it carries):
    Settle charges that, at most what the route offered. Unset: the route's price.
    An exact payment always settles what its payer signed."""
    request[CHARGE_KEY] = charge


def price_per_row(request: web.Request) -> int | None:
    """While a paid request's handler runs: the route's price per row in atomic
    units, as the sidecar's route config says (None: priced per request, or not a
    paid request). Charge rows × this with `set_charge`."""
    return request.get(PRICE_PER_ROW_KEY)


def _response(answer: HttpAnswer) -> web.Response:
    return web.Response(status=answer.status, headers=CIMultiDict(answer.headers), body=answer.body)


def route_table(table: Mapping[tuple[str, str], Mapping[str, Any]]) -> RouteResolver:
    """A resolver from {(method, path): RouteSpec fields}. `path` is the route's
    pattern (e.g. "/items/{id}") or a literal path; HEAD falls back to GET."""
    routes = RouteTable(table)

    def resolve(request: web.Request) -> RouteSpec | None:
        resource = request.match_info.route.resource
        paths = (resource.canonical, request.path) if resource is not None else (request.path,)
        return routes.find(request.method, *paths)

    return resolve


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


class _AiohttpPaywall:
    def __init__(self, client: SidecarClient, resolve: RouteResolver, on_event: EventSink | None) -> None:
        self._flow = PaymentFlow(client, on_event)
        self._resolve = resolve

    async def handle(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        route = self._resolve(request)
        if route is None:
            return await handler(request)
        rid = request_id(request)
        authorizing = authorize_request(
            request_id=rid,
            route=route,
            method=request.method,
            url=str(request.url),
            headers=request.headers.items(),
            client_ip=request.remote or "",
            query=request.query_string,
        )
        gate = await self._flow.authorize(route, authorizing)
        if isinstance(gate, HttpAnswer):
            return _response(gate)
        return await _serve(gate, request, handler)


async def _serve(paid: PaidRequest, request: web.Request, handler: Handler) -> web.StreamResponse:
    """Run the handler, then settle and deliver, or release."""
    request[PRICE_PER_ROW_KEY] = paid.price_per_row
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status >= 300:
            paid.response_status = exc.status
            await paid.release(status_reason(exc.status))
            raise
        # A raised 2xx is still content: it goes through settle like a returned one.
        response = web.Response(status=exc.status, headers=exc.headers, body=exc.body)
    except asyncio.CancelledError:
        await asyncio.shield(paid.release(RELEASE_CLIENT_GONE))
        raise
    except Exception:
        paid.response_status = 500
        await paid.release(RELEASE_HANDLER_ERROR)
        raise
    paid.response_status = response.status

    if response.prepared:
        # The handler sent its answer itself, so it left before any settle.
        logger.error("paid handler for %s streamed its response; not settling", paid.route.key)
        await paid.release(RELEASE_HANDLER_STREAMED)
        return response
    reason = release_reason(request.method, response.status, _client_gone(request))
    if reason is not None:
        await paid.release(reason)
        if reason == RELEASE_HEAD:
            return web.Response(status=response.status, headers=head_headers(response.headers.items()))
        return response

    settlement = await paid.settle(request.get(CHARGE_KEY))
    if settlement.refusal is not None:
        return _response(settlement.refusal)
    for name, value in settlement.headers.items():
        response.headers[name] = value
    try:
        await response.prepare(request)
        await response.write_eof()
    except ConnectionError:
        logger.warning("paid response for request %s was not delivered", paid.request_id)
        await paid.release(RELEASE_NOT_DELIVERED)
    except asyncio.CancelledError:
        await asyncio.shield(paid.release(RELEASE_NOT_DELIVERED))
        raise
    return response


def x402_middleware(
    client: SidecarClient,
    routes: RouteResolver | Mapping[tuple[str, str], Mapping[str, Any]],
    *,
    on_event: EventSink | None = None,
) -> Middleware:
    """An aiohttp middleware that paywalls the routes `routes` names.

    `routes` is either a callable returning the RouteSpec for a request (None =
    free) or a table {(method, path pattern): RouteSpec fields}. `on_event` hears
    of a call to the sidecar that failed (`sidecar_call_failed`; the sidecar
    records the payment events itself). The request's id is `request_id(request)`.
    """
    resolve = routes if callable(routes) else route_table(routes)
    paywall = _AiohttpPaywall(client, resolve, on_event)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        return await paywall.handle(request, handler)

    return middleware


__all__ = [
    "CHARGE_KEY",
    "PRICE_PER_ROW_KEY",
    "REQUEST_ID_HEADER",
    "REQUEST_ID_KEY",
    "RouteSpec",
    "price_per_row",
    "request_id",
    "route_table",
    "set_charge",
    "x402_middleware",
]
