"""x402 paywall for aiohttp apps, backed by the payment sidecar (DESIGN §4 rule 3, §7).

For a paid route: Authorize → (402 / rejection answered verbatim) → handler →
Settle only for a 2xx GET that the client is still waiting for → content with
PAYMENT-RESPONSE; anything else → Release with a reason. Content never leaves
without a successful settle, and a sidecar that cannot be reached gives a 503.

Put this middleware last (innermost): it prepares and sends a paid response
itself, to learn whether delivery failed, so middlewares outside it cannot change
that response. Add headers for every response with `app.on_response_prepare`.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc
from aiohttp import hdrs, web
from multidict import CIMultiDict

from paysidecar.client import SidecarClient
from paysidecar.trace_attributes import tag_request
from paysidecar.v1 import payment_pb2

logger = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-ID"
REQUEST_ID_KEY = web.RequestKey("paysidecar_request_id", str)
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")

PAID_CACHE_CONTROL = "private, no-store"

# Telemetry event names (the sidecar's seed names, DESIGN §8).
PAYMENT_CHALLENGE_ISSUED = "payment_challenge_issued"
PAYMENT_VERIFY_FAILED = "payment_verify_failed"
PAYMENT_SETTLEMENT_FAILED = "payment_settlement_failed"
PAYMENT_SETTLED = "payment_settled"
# The request's x402.outcome on its trace spans, set with each event.
_EVENT_OUTCOMES = {
    PAYMENT_CHALLENGE_ISSUED: "payment_required",
    PAYMENT_VERIFY_FAILED: "rejected",
    PAYMENT_SETTLEMENT_FAILED: "settlement_failed",
    PAYMENT_SETTLED: "settled",
}

# Release reasons understood by the sidecar.
RELEASE_HANDLER_ERROR = "handler_error"
RELEASE_HEAD = "head_request"
RELEASE_CLIENT_GONE = "client_gone"
RELEASE_NOT_DELIVERED = "response_not_delivered"
RELEASE_HANDLER_STREAMED = "handler_streamed"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Middleware = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]
# on_event(name, request_id, route_key, attributes)
EventSink = Callable[[str, str, str, Mapping[str, str]], None]


@dataclass(frozen=True)
class RouteSpec:
    """A paid route as sent to the sidecar (payment_pb2.Route); empty = the sidecar's default."""

    key: str
    price: str = ""
    pay_to: str = ""
    network: str = ""
    asset: str = ""
    description: str = ""
    mime_type: str = "application/json"
    name: str = ""
    facilitators: tuple[str, ...] = field(default=())
    max_timeout_seconds: int = 0

    def to_proto(self) -> payment_pb2.Route:
        return payment_pb2.Route(
            key=self.key,
            name=self.name,
            price=self.price,
            pay_to=self.pay_to,
            network=self.network,
            asset=self.asset,
            description=self.description,
            mime_type=self.mime_type,
            facilitators=list(self.facilitators),
            max_timeout_seconds=self.max_timeout_seconds,
        )


RouteResolver = Callable[[web.Request], RouteSpec | None]


def request_id(request: web.Request) -> str:
    """The request's id: the client's X-Request-ID when it is well-formed, else a new
    UUID. Fixed on first use, so every part of the app reports the same id."""
    known = request.get(REQUEST_ID_KEY)
    if known is not None:
        return known
    offered = request.headers.get(REQUEST_ID_HEADER, "")
    chosen = offered if _REQUEST_ID.fullmatch(offered) else str(uuid.uuid4())
    request[REQUEST_ID_KEY] = chosen
    return chosen


def json_error(
    status: int,
    code: str,
    message: str,
    request_id: str,
    *,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    """The error shape every answer of ours uses: {error: {code, message, request_id}}."""
    body = {"error": {"code": code, "message": message, "request_id": request_id}}
    return web.json_response(body, status=status, headers=headers)


def payment_service_unavailable(request_id: str) -> web.Response:
    return json_error(
        503,
        "payment_service_unavailable",
        "The payment service is unavailable; no content was served and nothing was charged. Retry later.",
        request_id,
        headers={hdrs.RETRY_AFTER: "1"},
    )


def route_table(table: Mapping[tuple[str, str], Mapping[str, Any]]) -> RouteResolver:
    """A resolver from {(method, path): RouteSpec fields}. `path` is the route's
    pattern (e.g. "/items/{id}") or a literal path; HEAD falls back to GET."""
    specs = {}
    for (method, path), fields in table.items():
        method = method.upper()
        spec_fields = {"key": f"{method} {path}", **fields}
        if "facilitators" in spec_fields:
            spec_fields["facilitators"] = tuple(spec_fields["facilitators"])
        specs[(method, path)] = RouteSpec(**spec_fields)

    def resolve(request: web.Request) -> RouteSpec | None:
        resource = request.match_info.route.resource
        paths = (resource.canonical, request.path) if resource is not None else (request.path,)
        methods = (request.method, hdrs.METH_GET) if request.method == hdrs.METH_HEAD else (request.method,)
        for method in methods:
            for path in paths:
                spec = specs.get((method, path))
                if spec is not None:
                    return spec
        return None

    return resolve


def _flat_headers(request: web.Request) -> dict[str, str]:
    """Request headers with repeated names joined, as HTTP allows."""
    flat: dict[str, str] = {}
    for name, value in request.headers.items():
        key = name.lower()
        flat[key] = f"{flat[key]}, {value}" if key in flat else value
    return flat


def authorize_request(request: web.Request, route: RouteSpec, request_id: str) -> payment_pb2.AuthorizeRequest:
    return payment_pb2.AuthorizeRequest(
        request_id=request_id,
        method=request.method,
        url=str(request.url),
        route=route.to_proto(),
        payment_signature=request.headers.get("PAYMENT-SIGNATURE", ""),
        x_payment=request.headers.get("X-PAYMENT", ""),
        client_ip=request.remote or "",
        user_agent=request.headers.get(hdrs.USER_AGENT, ""),
        headers=_flat_headers(request),
        query=request.query_string,
    )


def _answer(status: int, headers: Mapping[str, str], body: bytes) -> web.Response:
    """An answer the sidecar built (402, rejection, failed settle), sent verbatim."""
    answer_headers = CIMultiDict(headers)
    answer_headers.setdefault(hdrs.CONTENT_TYPE, "application/json")
    # A missing status must still refuse the content: 402 is the safe reading.
    return web.Response(status=status or 402, headers=answer_headers, body=body)


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


class _Paywall:
    def __init__(self, client: SidecarClient, resolve: RouteResolver, on_event: EventSink | None) -> None:
        self._client = client
        self._resolve = resolve
        self._on_event = on_event

    def _emit(self, name: str, request_id: str, route: RouteSpec, **attributes: str) -> None:
        tag_request(
            outcome=_EVENT_OUTCOMES[name],
            network=attributes.get("network", ""),
            payer=attributes.get("payer", ""),
            reason=attributes.get("reason", ""),
        )
        if self._on_event is not None:
            self._on_event(name, request_id, route.key, {k: v for k, v in attributes.items() if v})

    async def handle(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        route = self._resolve(request)
        if route is None:
            return await handler(request)
        rid = request_id(request)
        tag_request(route=route.key, network=route.network)
        try:
            authorized = await self._client.authorize(authorize_request(request, route, rid))
        except grpc.RpcError as exc:
            logger.error("authorize failed for request %s: %s", rid, _rpc_summary(exc))
            return payment_service_unavailable(rid)

        outcome = authorized.WhichOneof("outcome")
        if outcome == "payment_required":
            required = authorized.payment_required
            self._emit(PAYMENT_CHALLENGE_ISSUED, rid, route, network=route.network)
            return _answer(required.status, required.headers, required.body)
        if outcome == "rejected":
            rejected = authorized.rejected
            self._emit(PAYMENT_VERIFY_FAILED, rid, route, network=route.network, reason=rejected.reason)
            return _answer(rejected.status, rejected.headers, rejected.body)
        if outcome != "verified":
            logger.error("authorize for request %s returned no outcome", rid)
            return payment_service_unavailable(rid)
        verified = authorized.verified
        tag_request(
            outcome="verified",
            payer=verified.payer,
            scheme=verified.scheme,
            network=verified.network,
            amount=verified.amount,
        )
        paid = _PaidRequest(self._client, self._emit, request, route, rid, authorized.tracking_id, verified)
        return await paid.serve(handler)


class _PaidRequest:
    """One verified request: run the handler, then settle and deliver, or release."""

    def __init__(
        self,
        client: SidecarClient,
        emit: Callable[..., None],
        request: web.Request,
        route: RouteSpec,
        rid: str,
        tracking_id: str,
        verified: payment_pb2.Verified,
    ) -> None:
        self._client = client
        self._emit_event = emit
        self._request = request
        self._route = route
        self._rid = rid
        self._tracking_id = tracking_id
        self._verified = verified
        self._started = time.monotonic()
        self._status = 0

    def _elapsed_ms(self) -> int:
        return int((time.monotonic() - self._started) * 1000)

    def _emit(self, name: str, **attributes: str) -> None:
        self._emit_event(
            name,
            self._rid,
            self._route,
            network=self._verified.network or self._route.network,
            payer=self._verified.payer,
            **attributes,
        )

    async def _release(self, reason: str) -> None:
        """Releases the claim; a failure is logged, never raised into the response path
        (the sidecar recovers claims that were never settled or released)."""
        tag_request(outcome="released", reason=reason)
        try:
            answer = await self._client.release(
                payment_id=self._verified.payment_id,
                tracking_id=self._tracking_id,
                reason=reason,
                request_id=self._rid,
                response_status=self._status,
                response_time_ms=self._elapsed_ms(),
            )
        except grpc.RpcError as exc:
            logger.error("release (%s) failed for request %s: %s", reason, self._rid, _rpc_summary(exc))
            return
        logger.info("payment released for request %s: %s -> %s", self._rid, reason, answer.state)

    async def serve(self, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(self._request)
        except web.HTTPException as exc:
            if exc.status >= 300:
                self._status = exc.status
                await self._release(f"handler_status_{exc.status}")
                raise
            # A raised 2xx is still content: it goes through settle like a returned one.
            response = web.Response(status=exc.status, headers=exc.headers, body=exc.body)
        except asyncio.CancelledError:
            await asyncio.shield(self._release(RELEASE_CLIENT_GONE))
            raise
        except Exception:
            self._status = 500
            await self._release(RELEASE_HANDLER_ERROR)
            raise
        self._status = response.status

        if response.prepared:
            # The handler sent its answer itself, so it left before any settle.
            logger.error("paid handler for %s streamed its response; not settling", self._route.key)
            await self._release(RELEASE_HANDLER_STREAMED)
            return response
        if not 200 <= response.status < 300:
            await self._release(f"handler_status_{response.status}")
            return response
        if self._request.method == hdrs.METH_HEAD:
            response.headers[hdrs.CACHE_CONTROL] = PAID_CACHE_CONTROL
            await self._release(RELEASE_HEAD)
            return response
        if _client_gone(self._request):
            await self._release(RELEASE_CLIENT_GONE)
            return response
        return await self._settle_and_deliver(response)

    async def _settle_and_deliver(self, response: web.StreamResponse) -> web.StreamResponse:
        try:
            settled = await self._settle()
        except grpc.RpcError as exc:
            logger.error("settle failed for request %s: %s", self._rid, _rpc_summary(exc))
            self._emit(PAYMENT_SETTLEMENT_FAILED, reason="payment_service_unavailable")
            # The sidecar may or may not have settled: it releases, or keeps the
            # settled payment redeemable by the same payment header.
            await self._release(RELEASE_NOT_DELIVERED)
            return payment_service_unavailable(self._rid)
        if not settled.success:
            self._emit(PAYMENT_SETTLEMENT_FAILED, reason=settled.reason, transaction=settled.transaction)
            return _answer(settled.answer.status, settled.answer.headers, settled.answer.body)

        for name, value in settled.headers.items():
            response.headers[name] = value
        response.headers[hdrs.CACHE_CONTROL] = PAID_CACHE_CONTROL
        self._emit(PAYMENT_SETTLED, transaction=settled.transaction)
        logger.info(
            "payment settled for request %s: payer %s transaction %s", self._rid, settled.payer, settled.transaction
        )
        try:
            await response.prepare(self._request)
            await response.write_eof()
        except ConnectionError:
            logger.warning("paid response for request %s was not delivered", self._rid)
            await self._release(RELEASE_NOT_DELIVERED)
        except asyncio.CancelledError:
            await asyncio.shield(self._release(RELEASE_NOT_DELIVERED))
            raise
        return response

    async def _settle(self) -> payment_pb2.SettleResponse:
        settling = asyncio.ensure_future(
            self._client.settle(
                payment_id=self._verified.payment_id,
                tracking_id=self._tracking_id,
                response_status=self._status,
                response_time_ms=self._elapsed_ms(),
                request_id=self._rid,
            )
        )
        try:
            return await asyncio.shield(settling)
        except asyncio.CancelledError:
            # Cancelled mid-settle (client gone, shutdown): the settle keeps going,
            # so wait for its outcome and record that nothing was delivered.
            try:
                outcome = await asyncio.shield(settling)
            except grpc.RpcError:
                outcome = None
            if outcome is None or outcome.success:
                await asyncio.shield(self._release(RELEASE_NOT_DELIVERED))
            raise


def _rpc_summary(exc: grpc.RpcError) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name} {exc.details()}"
    return repr(exc)


def x402_middleware(
    client: SidecarClient,
    routes: RouteResolver | Mapping[tuple[str, str], Mapping[str, Any]],
    *,
    on_event: EventSink | None = None,
) -> Middleware:
    """An aiohttp middleware that paywalls the routes `routes` names.

    `routes` is either a callable returning the RouteSpec for a request (None =
    free) or a table {(method, path pattern): RouteSpec fields}. `on_event` hears
    the payment telemetry events.
    """
    resolve = routes if callable(routes) else route_table(routes)
    paywall = _Paywall(client, resolve, on_event)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        return await paywall.handle(request, handler)

    return middleware


__all__ = [
    "REQUEST_ID_HEADER",
    "REQUEST_ID_KEY",
    "RouteSpec",
    "json_error",
    "payment_service_unavailable",
    "request_id",
    "route_table",
    "x402_middleware",
]
