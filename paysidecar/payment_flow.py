"""The payment flow of a paid request, Authorize → handler → Settle | Release,
without any web framework (DESIGN §4 rule 3, §7): what the paywalls (the aiohttp
and ASGI middlewares) share.

Here: which routes are paid (`RouteTable`), the AuthorizeRequest built from a
request's method, URL and headers, the Authorize → Settle | Release calls with
their telemetry, the "settle or release?" decision, and the answers we send
(the sidecar's own answers verbatim, JSON errors). The framework adapters only
read the request, run the handler, hold its answer back, and send what this
module decides.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc

from paysidecar.client import SidecarClient
from paysidecar.v1 import payment_pb2
from paysidecar_common.http_answers import PAYMENT_IN_DOUBT, HttpAnswer, error_answer, payment_in_doubt
from paysidecar_common.trace_attributes import tag_request

logger = logging.getLogger(__name__)

PAID_CACHE_CONTROL = "private, no-store"

# All a paid route's HEAD answer keeps of the handler's headers. A HEAD is never
# settled, so a header that depends on the data (a length, a count, a tag, a link)
# would let one payment answer any number of questions about it.
HEAD_KEPT_HEADERS = frozenset({"content-type"})

# A Settle that failed may have moved the money: the payer retries later with the
# same payment header (redeemed once if the chain shows the payment).
IN_DOUBT_RETRY_AFTER_S = 5

# The one telemetry event of ours the sidecar cannot record: a call to it failed.
# (The sidecar records the payment events itself, DESIGN §8.)
SIDECAR_CALL_FAILED = "sidecar_call_failed"

# Release reasons understood by the sidecar (and status_reason() for a non-2xx answer).
RELEASE_HANDLER_ERROR = "handler_error"
RELEASE_HEAD = "head_request"
RELEASE_CLIENT_GONE = "client_gone"
RELEASE_NOT_DELIVERED = "response_not_delivered"
RELEASE_HANDLER_STREAMED = "handler_streamed"

class EventSink(Protocol):
    """Hears our telemetry events, e.g. paysidecar_common.events.EventRing.event."""

    def __call__(self, name: str, *, request_id: str, route: str, **attributes: str) -> None: ...


@dataclass(frozen=True)
class RouteSpec:
    """A paid route as sent to the sidecar (payment_pb2.Route). `name` is a route of
    the sidecar's config (empty: its default route), where the money terms live;
    `price`/`amount`, `price_per_row`, `pay_to`, `network`, `asset` and
    `facilitators` override them, which only a sidecar outside production
    accepts. Empty = the sidecar's."""

    key: str
    price: str = ""
    # Atomic units of `asset` (e.g. "1000"); overrides `price` when set.
    amount: str = ""
    pay_to: str = ""
    network: str = ""
    asset: str = ""
    description: str = ""
    mime_type: str = "application/json"
    name: str = ""
    facilitators: tuple[str, ...] = field(default=())
    max_timeout_seconds: int = 0
    # Price in atomic units of `asset`; overrides `price` when set.
    amount: str = ""
    # Atomic units per row an answer delivers (the handler sets the charge).
    price_per_row: str = ""
    # x402 extensions (payment_pb2.Route says more): payment-identifier required
    # (else optional), the Bazaar declaration (JSON text), its tags and service name.
    payment_identifier_required: bool = False
    discovery: str = ""
    tags: tuple[str, ...] = field(default=())
    service_name: str = ""

    def to_proto(self) -> payment_pb2.Route:
        return payment_pb2.Route(
            key=self.key,
            name=self.name,
            price=self.price,
            amount=self.amount,
            price_per_row=self.price_per_row,
            pay_to=self.pay_to,
            network=self.network,
            asset=self.asset,
            description=self.description,
            mime_type=self.mime_type,
            facilitators=list(self.facilitators),
            max_timeout_seconds=self.max_timeout_seconds,
            payment_identifier_required=self.payment_identifier_required,
            discovery=self.discovery,
            tags=list(self.tags),
            service_name=self.service_name,
        )


_PATH_PARAM = re.compile(r"\{[^{}/]+\}")


class RouteTable:
    """Paid routes from {(method, path): RouteSpec fields}. `path` is a literal path
    or a pattern whose `{param}` parts each match one path segment ("/items/{id}");
    the route key defaults to "<METHOD> <path>". HEAD falls back to GET."""

    def __init__(self, table: Mapping[tuple[str, str], Mapping[str, Any]]) -> None:
        self._specs: dict[tuple[str, str], RouteSpec] = {}
        self._patterns: list[tuple[str, re.Pattern[str], RouteSpec]] = []
        for (method, path), fields in table.items():
            method = method.upper()
            spec_fields = {"key": f"{method} {path}", **fields}
            for listed in ("facilitators", "tags"):
                if listed in spec_fields:
                    spec_fields[listed] = tuple(spec_fields[listed])
            spec = RouteSpec(**spec_fields)
            self._specs[(method, path)] = spec
            if _PATH_PARAM.search(path):
                literal_parts = (re.escape(part) for part in _PATH_PARAM.split(path))
                self._patterns.append((method, re.compile("[^/]+".join(literal_parts)), spec))

    def find(self, method: str, *paths: str) -> RouteSpec | None:
        """The spec for the first of `paths` (e.g. a matched route's pattern, then
        the request path) that the table names, or None: the route is free."""
        methods = (method, "GET") if method == "HEAD" else (method,)
        for candidate in methods:
            for path in paths:
                spec = self._specs.get((candidate, path))
                if spec is not None:
                    return spec
            for pattern_method, pattern, spec in self._patterns:
                if pattern_method == candidate and any(pattern.fullmatch(path) for path in paths):
                    return spec
        return None


def authorize_request(
    *,
    request_id: str,
    route: RouteSpec,
    method: str,
    url: str,
    headers: Iterable[tuple[str, str]],
    client_ip: str,
    query: str,
) -> payment_pb2.AuthorizeRequest:
    """The Authorize call for one request. `url` is the full URL as the client used
    it (the payment is bound to it); repeated headers are joined, as HTTP allows."""
    flat: dict[str, str] = {}
    for name, value in headers:
        key = name.lower()
        flat[key] = f"{flat[key]}, {value}" if key in flat else value
    return payment_pb2.AuthorizeRequest(
        request_id=request_id,
        method=method,
        url=url,
        route=route.to_proto(),
        payment_signature=flat.get("payment-signature", ""),
        x_payment=flat.get("x-payment", ""),
        client_ip=client_ip,
        user_agent=flat.get("user-agent", ""),
        headers=flat,
        query=query,
    )


def payment_service_unavailable(request_id: str) -> HttpAnswer:
    """Authorize failed: no settle was sent, so nothing was charged."""
    return error_answer(
        503,
        "payment_service_unavailable",
        "The payment service is unavailable; no content was served and nothing was charged. Retry later.",
        request_id,
        headers={"Retry-After": "1"},
    )


def sidecar_answer(status: int, headers: Mapping[str, str], body: bytes) -> HttpAnswer:
    """An answer the sidecar built (402, rejection, failed settle), sent verbatim."""
    answer_headers = dict(headers)
    if not any(name.lower() == "content-type" for name in answer_headers):
        answer_headers["Content-Type"] = "application/json"
    # A missing status must still refuse the content: 402 is the safe reading.
    return HttpAnswer(status or 402, answer_headers, body)


def status_reason(status: int) -> str:
    """The release reason for a handler that answered `status` (non-2xx)."""
    return f"handler_status_{status}"


def release_reason(method: str, status: int, client_gone: bool) -> str | None:
    """None when the handler's answer may be settled and sent; otherwise why the
    claim is released instead (DESIGN §4 rule 3). Redirects are non-2xx."""
    if not 200 <= status < 300:
        return status_reason(status)
    if method == "HEAD":
        return RELEASE_HEAD
    if client_gone:
        return RELEASE_CLIENT_GONE
    return None


def head_headers(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The headers of a paid route's HEAD answer, from the handler's answer to it."""
    kept = {name: value for name, value in headers if name.lower() in HEAD_KEPT_HEADERS}
    return {**kept, "Cache-Control": PAID_CACHE_CONTROL}


def max_charge(charge: int, offered: str) -> int:
    """`charge` capped at `offered` (Verified.amount, atomic units): min(max, charge)."""
    if not isinstance(charge, int) or isinstance(charge, bool) or charge < 0:
        raise ValueError(f"a charge is a whole number of atomic units, got {charge!r}")
    return min(charge, int(offered)) if offered.isdigit() else charge


def handler_failed(request_id: str) -> HttpAnswer:
    """The paid handler failed after the payment verified: nothing was charged."""
    return error_answer(500, "handler_error", "The request failed; nothing was charged.", request_id)


def rpc_summary(exc: grpc.RpcError) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name} {exc.details()}"
    return repr(exc)


def _rpc_code(exc: grpc.RpcError) -> str:
    return exc.code().name if isinstance(exc, grpc.aio.AioRpcError) else type(exc).__name__


class PaymentFlow:
    """The sidecar calls of a paid request. The sidecar records the payment events;
    here the request's x402 facts go on its spans, and `on_event` hears of a call
    to the sidecar that failed."""

    def __init__(self, client: SidecarClient, on_event: EventSink | None = None) -> None:
        self._client = client
        self._on_event = on_event

    def call_failed(self, call: str, exc: grpc.RpcError, request_id: str, route: RouteSpec) -> None:
        if self._on_event is not None:
            self._on_event(SIDECAR_CALL_FAILED, request_id=request_id, route=route.key, call=call, code=_rpc_code(exc))

    async def authorize(self, route: RouteSpec, request: payment_pb2.AuthorizeRequest) -> HttpAnswer | PaidRequest:
        """Either the answer to send now (402, rejection, 503), or a verified and
        claimed payment: run the handler, then settle or release it."""
        rid = request.request_id
        tag_request(route=route.key, network=route.network)
        try:
            authorized = await self._client.authorize(request)
        except grpc.RpcError as exc:
            logger.error("authorize failed for request %s: %s", rid, rpc_summary(exc))
            self.call_failed("authorize", exc, rid, route)
            return payment_service_unavailable(rid)

        outcome = authorized.WhichOneof("outcome")
        if outcome == "payment_required":
            required = authorized.payment_required
            tag_request(outcome="payment_required")
            return sidecar_answer(required.status, required.headers, required.body)
        if outcome == "rejected":
            rejected = authorized.rejected
            tag_request(outcome="rejected", reason=rejected.reason)
            return sidecar_answer(rejected.status, rejected.headers, rejected.body)
        if outcome == "completed":
            # A payment operation the sidecar carried out (a channel refund): no handler runs.
            completed = authorized.completed
            tag_request(outcome="completed")
            return sidecar_answer(completed.status, completed.headers, completed.body)
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
        return PaidRequest(
            self,
            self._client,
            route,
            rid,
            authorized.tracking_id,
            verified,
            payment_signature=request.payment_signature,
            x_payment=request.x_payment,
        )


@dataclass(frozen=True)
class Settlement:
    """Settle's outcome: no `refusal` → send the content with `headers` added
    (PAYMENT-RESPONSE, Cache-Control); else send `refusal` instead of the content."""

    headers: Mapping[str, str] = field(default_factory=dict)
    refusal: HttpAnswer | None = None


class PaidRequest:
    """One verified request. The adapter runs the handler, sets `response_status`,
    then calls `settle()` (2xx and still wanted, see `release_reason`) or `release()`.

    Settle sends the payment header again with the claim token: the replica of a
    sidecar pool that gets it may not be the one that verified the payment, and
    adopts the claim from them. Release needs the claim token alone."""

    def __init__(
        self,
        flow: PaymentFlow,
        client: SidecarClient,
        route: RouteSpec,
        request_id: str,
        tracking_id: str,
        verified: payment_pb2.Verified,
        *,
        payment_signature: str,
        x_payment: str,
    ) -> None:
        self._flow = flow
        self._client = client
        self.route = route
        self.request_id = request_id
        self._tracking_id = tracking_id
        self._verified = verified
        self._payment_signature = payment_signature
        self._x_payment = x_payment
        self._started = time.monotonic()
        self.response_status = 0

    @property
    def price_per_row(self) -> int | None:
        """The route's price per row (atomic units, the sidecar's route config), or
        None when it is priced per request: the handler charges rows × this."""
        units = self._verified.price_per_row
        return int(units) if units.isascii() and units.isdigit() else None

    def _elapsed_ms(self) -> int:
        return int((time.monotonic() - self._started) * 1000)

    def _tag_outcome(self, outcome: str, reason: str = "") -> None:
        network = self._verified.network or self.route.network
        tag_request(outcome=outcome, network=network, payer=self._verified.payer, reason=reason)

    async def release(self, reason: str) -> None:
        """Releases the claim; a failure is logged, never raised into the response path
        (the sidecar recovers claims that were never settled or released)."""
        tag_request(outcome="released", reason=reason)
        try:
            answer = await self._client.release(
                payment_id=self._verified.payment_id,
                claim_token=self._verified.claim_token,
                tracking_id=self._tracking_id,
                reason=reason,
                request_id=self.request_id,
                response_status=self.response_status,
                response_time_ms=self._elapsed_ms(),
            )
        except grpc.RpcError as exc:
            logger.error("release (%s) failed for request %s: %s", reason, self.request_id, rpc_summary(exc))
            self._flow.call_failed("release", exc, self.request_id, self.route)
            return
        logger.info("payment released for request %s: %s -> %s", self.request_id, reason, answer.state)

    async def settle(self, charge: int | None = None) -> Settlement:
        """`charge`: what the answer costs when priced by what it delivers (a
        batch-settlement request; an exact payment settles what its payer signed).
        Never more than Verified.amount, what the route offered: a larger charge is
        cut to it."""
        if charge is not None:
            try:
                charge = max_charge(charge, self._verified.amount)
            except ValueError as exc:
                # The app's own mistake: nothing is charged, nothing is served.
                logger.error("paid handler for %s set an invalid charge: %s", self.route.key, exc)
                await self.release(RELEASE_HANDLER_ERROR)
                return Settlement(refusal=handler_failed(self.request_id))
        try:
            settled = await self._settle(charge)
        except grpc.RpcError as exc:
            logger.error("settle failed for request %s: %s", self.request_id, rpc_summary(exc))
            self._flow.call_failed("settle", exc, self.request_id, self.route)
            self._tag_outcome("settlement_failed", PAYMENT_IN_DOUBT)
            # The sidecar may or may not have settled: it releases, or keeps the
            # settled payment redeemable by the same payment header.
            await self.release(RELEASE_NOT_DELIVERED)
            # The settle may have reached the facilitator: never "nothing was charged".
            return Settlement(refusal=payment_in_doubt(self.request_id, IN_DOUBT_RETRY_AFTER_S))
        if not settled.success:
            self._tag_outcome("settlement_failed", settled.reason)
            answer = settled.answer
            return Settlement(refusal=sidecar_answer(answer.status, answer.headers, answer.body))

        self._tag_outcome("settled")
        logger.info(
            "payment settled for request %s: payer %s transaction %s",
            self.request_id,
            settled.payer,
            settled.transaction,
        )
        return Settlement(headers={**settled.headers, "Cache-Control": PAID_CACHE_CONTROL})

    async def _settle(self, charge: int | None) -> payment_pb2.SettleResponse:
        settling = asyncio.ensure_future(
            self._client.settle(
                payment_id=self._verified.payment_id,
                claim_token=self._verified.claim_token,
                tracking_id=self._tracking_id,
                response_status=self.response_status,
                response_time_ms=self._elapsed_ms(),
                request_id=self.request_id,
                payment_signature=self._payment_signature,
                x_payment=self._x_payment,
                charge=charge,
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
                await asyncio.shield(self.release(RELEASE_NOT_DELIVERED))
            raise
