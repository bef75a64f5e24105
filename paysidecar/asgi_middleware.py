"""x402 paywall for any ASGI app (Starlette, FastAPI, ...), backed by the payment
sidecar (DESIGN §4 rule 3, §7), with the same rules as the aiohttp middleware:

    app.add_middleware(
        X402Middleware,
        client=lambda: SidecarClient("127.0.0.1:50051"),
        routes={("GET", "/weather"): {"price": "$0.001", "pay_to": "0x..."}},
    )

or `X402Middleware(asgi_app, client_or_factory, routes=...)` around any ASGI app.

For a paid route: Authorize → (402 / rejection answered verbatim) → the inner
app, whose answer is held back → Settle only for a complete 2xx non-HEAD answer
while the client is still there → the content with PAYMENT-RESPONSE and
`Cache-Control: private, no-store`. Anything else releases the claim and lets
the app's own answer through (a HEAD's without any header that depends on the
data). A sidecar that cannot be reached gives a 503.

A SidecarClient must be made inside the running event loop: pass a factory and
the client is made on the first paid request, and closed at lifespan shutdown
(or by `aclose()`). A client passed in as is belongs to the caller.
The request id (the client's X-Request-ID when well-formed, else a new UUID) is
in `scope["paysidecar.request_id"]` for the app. An app whose answer is priced by
what it delivers (e.g. per row) puts its cost in atomic units in
`scope["paysidecar.charge"]` before answering; Settle charges that, at most what
the route offered (an exact payment always settles what its payer signed). The
route's price per row, from the sidecar's route config, is in
`scope["paysidecar.price_per_row"]` (None: priced per request).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

from paysidecar.client import SidecarClient
from paysidecar.payment_flow import (
    RELEASE_CLIENT_GONE,
    RELEASE_HANDLER_ERROR,
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
)
from paysidecar_common.http_answers import HttpAnswer
from paysidecar_common.request_ids import REQUEST_ID_HEADER, choose_request_id
from paysidecar_common.trace_attributes import request_scope

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

REQUEST_ID_SCOPE_KEY = "paysidecar.request_id"
CHARGE_SCOPE_KEY = "paysidecar.charge"
PRICE_PER_ROW_SCOPE_KEY = "paysidecar.price_per_row"
_HEADER_ENCODING = "latin-1"


class X402Middleware:
    """Paywalls the routes named in `routes`: {(method, path): RouteSpec fields},
    `path` literal or with `{param}` segments ("/items/{id}"); HEAD falls back to GET.
    `on_event` hears of a call to the sidecar that failed (`sidecar_call_failed`;
    the sidecar records the payment events itself)."""

    def __init__(
        self,
        app: ASGIApp,
        client: SidecarClient | Callable[[], SidecarClient],
        *,
        routes: Mapping[tuple[str, str], Mapping[str, Any]],
        on_event: EventSink | None = None,
    ) -> None:
        self.app = app
        self._routes = RouteTable(routes)
        self._on_event = on_event
        self._factory = None if isinstance(client, SidecarClient) else client
        self._client = client if isinstance(client, SidecarClient) else None
        self._flow: PaymentFlow | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, self._close_at_shutdown(send))
            return
        route = self._routes.find(scope["method"], scope["path"]) if scope["type"] == "http" else None
        if route is None:
            await self.app(scope, receive, send)
            return
        headers = [(name.decode(_HEADER_ENCODING), value.decode(_HEADER_ENCODING)) for name, value in scope["headers"]]
        rid = choose_request_id(next((v for n, v in headers if n.lower() == REQUEST_ID_HEADER.lower()), None))
        # An ASGI app has no request scope of ours (the gateway's tracing middleware
        # opens one for aiohttp): open it here, so the sidecar calls carry request.id.
        with request_scope(rid):
            await self._paid_route(scope, receive, send, route, rid, headers)

    async def aclose(self) -> None:
        """Closes the client this middleware made (a client passed in is left open)."""
        if self._factory is not None and self._client is not None:
            client, self._client, self._flow = self._client, None, None
            await client.close()

    def _close_at_shutdown(self, send: Send) -> Send:
        async def send_closing(message: Message) -> None:
            if message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                await self.aclose()
            await send(message)

        return send_closing

    def _flow_now(self) -> PaymentFlow:
        if self._flow is None:
            if self._client is None:
                assert self._factory is not None
                self._client = self._factory()
            self._flow = PaymentFlow(self._client, self._on_event)
        return self._flow

    async def _paid_route(
        self, scope: Scope, receive: Receive, send: Send, route: RouteSpec, rid: str, headers: list[tuple[str, str]]
    ) -> None:
        client_ip = scope["client"][0] if scope.get("client") else ""
        authorizing = authorize_request(
            request_id=rid,
            route=route,
            method=scope["method"],
            url=_request_url(scope, headers),
            headers=headers,
            client_ip=client_ip,
            query=scope.get("query_string", b"").decode(_HEADER_ENCODING),
        )
        gate = await self._flow_now().authorize(route, authorizing)
        if isinstance(gate, HttpAnswer):
            await _send_answer(send, gate)
            return
        await _PaidExchange(gate, scope, receive, send).serve(self.app)


def _request_url(scope: Scope, headers: list[tuple[str, str]]) -> str:
    """The URL as the client used it: Host header (else the server's address) and
    the raw path, so the payment binds to what the client saw in the 402."""
    host = next((value for name, value in headers if name.lower() == "host"), "")
    if not host and scope.get("server"):
        server_host, server_port = scope["server"]
        host = f"{server_host}:{server_port}" if server_port else server_host
    raw_path = scope.get("raw_path")
    path = raw_path.decode(_HEADER_ENCODING) if raw_path else scope["path"]
    query = scope.get("query_string", b"").decode(_HEADER_ENCODING)
    return f"{scope.get('scheme', 'http')}://{host}{path}" + (f"?{query}" if query else "")


def _encode_headers(headers: Mapping[str, str]) -> list[tuple[bytes, bytes]]:
    return [(name.lower().encode(_HEADER_ENCODING), value.encode(_HEADER_ENCODING)) for name, value in headers.items()]


def _with_headers(raw: list[tuple[bytes, bytes]], headers: Mapping[str, str]) -> list[tuple[bytes, bytes]]:
    """`raw` ASGI headers with `headers` set (replacing any of the same name)."""
    replaced = {name.lower().encode(_HEADER_ENCODING) for name in headers}
    return [(name, value) for name, value in raw if name.lower() not in replaced] + _encode_headers(headers)


async def _send_answer(send: Send, answer: HttpAnswer) -> None:
    headers = _with_headers(_encode_headers(answer.headers), {"Content-Length": str(len(answer.body))})
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": answer.body})


class _HeldAnswer:
    """The inner app's answer, kept back until the payment is settled or released."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.start: Message | None = None
        self.body = bytearray()
        self.complete = False

    @property
    def status(self) -> int:
        return int(self.start["status"]) if self.start is not None else 0

    def add(self, message: Message) -> None:
        self.messages.append(message)
        if message["type"] == "http.response.start":
            self.start = message
        elif message["type"] == "http.response.body":
            self.body += message.get("body", b"")
            self.complete = not message.get("more_body", False)


class _ClientWatch:
    """The request's receive channel, noting when the server reports the client gone."""

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self.gone = False

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.disconnect":
            self.gone = True
        return message

    async def has_left(self) -> bool:
        """Whether the server already knows the client went away. Reads only the
        messages the server has waiting (unread body, a disconnect); never waits
        for new ones."""
        while not self.gone:
            pending = asyncio.ensure_future(self.receive())
            # One loop step: a message that is already waiting comes back at once.
            await asyncio.sleep(0)
            if not pending.done():
                pending.cancel()
                await asyncio.wait({pending})
                return False
            pending.result()
        return True


class _PaidExchange:
    """One verified request: run the app with its answer held back; once the answer
    is complete, settle and deliver it, or release and let it through. The app's
    own `send` waits for that, so work it does after its answer (Starlette's
    background tasks) runs after delivery, as it would without the paywall."""

    def __init__(self, paid: PaidRequest, scope: Scope, receive: Receive, send: Send) -> None:
        self._paid = paid
        self._scope = scope
        self._client = _ClientWatch(receive)
        self._send = send
        self._held = _HeldAnswer()
        self._decided = False
        # The scope the app runs with: where it may leave its charge.
        self._scope_for_app = self._app_scope()

    def _app_scope(self) -> Scope:
        # Extensions that bypass or follow http.response.body (pathsend, zerocopysend,
        # trailers) are hidden: a held-back answer must be made of body messages.
        extensions = {
            name: value
            for name, value in (self._scope.get("extensions") or {}).items()
            if not name.startswith("http.response.")
        }
        return {
            **self._scope,
            "extensions": extensions,
            REQUEST_ID_SCOPE_KEY: self._paid.request_id,
            PRICE_PER_ROW_SCOPE_KEY: self._paid.price_per_row,
        }

    async def _app_send(self, message: Message) -> None:
        if self._decided:
            return  # nothing may follow a complete answer
        self._held.add(message)
        if self._held.complete:
            self._decided = True
            self._paid.response_status = self._held.status
            await self._answered()

    async def serve(self, app: ASGIApp) -> None:
        paid = self._paid
        try:
            await app(self._scope_for_app, self._client.receive, self._app_send)
        except asyncio.CancelledError:
            if not self._decided:
                await asyncio.shield(paid.release(RELEASE_CLIENT_GONE))
            raise
        except Exception:
            if not self._decided:
                paid.response_status = 500
                await paid.release(RELEASE_HANDLER_ERROR)
            raise
        if not self._decided:
            # The app returned without a whole answer: the server reports that.
            logger.error("paid app for %s returned without a complete response; not settling", paid.route.key)
            paid.response_status = self._held.status
            await self._release_and_pass_through(RELEASE_HANDLER_ERROR)

    async def _answered(self) -> None:
        held = self._held
        reason = release_reason(self._scope["method"], held.status, await self._client.has_left())
        if reason == RELEASE_HEAD:
            await self._paid.release(reason)
            await self._send_head(held)
            return
        if reason is not None:
            await self._release_and_pass_through(reason)
            return
        settlement = await self._paid.settle(self._scope_for_app.get(CHARGE_SCOPE_KEY))
        if settlement.refusal is not None:
            await _send_answer(self._send, settlement.refusal)
            return
        assert held.start is not None  # a complete answer has started
        start = {**held.start, "headers": _with_headers(list(held.start.get("headers", [])), settlement.headers)}
        await self._deliver(start, bytes(held.body))

    async def _send_head(self, held: _HeldAnswer) -> None:
        """The HEAD answer without the app's data-dependent headers (its length too)."""
        assert held.start is not None  # a complete answer has started
        raw = held.start.get("headers", [])
        headers = head_headers((name.decode(_HEADER_ENCODING), value.decode(_HEADER_ENCODING)) for name, value in raw)
        await self._send({"type": "http.response.start", "status": held.status, "headers": _encode_headers(headers)})
        await self._send({"type": "http.response.body", "body": b""})

    async def _release_and_pass_through(self, reason: str) -> None:
        await self._paid.release(reason)
        for message in self._held.messages:
            await self._send(message)

    async def _deliver(self, start: Message, body: bytes) -> None:
        paid = self._paid
        if await self._client.has_left():
            logger.warning("client left before the paid response for request %s", paid.request_id)
            await paid.release(RELEASE_NOT_DELIVERED)
            return
        try:
            await self._send(start)
            await self._send({"type": "http.response.body", "body": body})
        except OSError:
            # ASGI servers raise an OSError when the client is gone (spec 2.4).
            logger.warning("paid response for request %s was not delivered", paid.request_id)
            await paid.release(RELEASE_NOT_DELIVERED)
        except asyncio.CancelledError:
            await asyncio.shield(paid.release(RELEASE_NOT_DELIVERED))
            raise


__all__ = ["CHARGE_SCOPE_KEY", "PRICE_PER_ROW_SCOPE_KEY", "REQUEST_ID_SCOPE_KEY", "X402Middleware"]
