"""The attributes every span of a request carries (DESIGN §8): `request.id` and the
x402 facts known so far (route, network, scheme, payer, amount, outcome, reason).

A request's attributes live in a context variable, set where the request enters
the process (the gateway's tracing middleware, the sidecar's gRPC interceptor).
The RequestAttributes span processor copies them onto every span started inside
that request, so spans made by stock instrumentations (HTTP client, asyncpg)
carry them too. The variable is process-local: nothing here crosses the wire
(the request id travels as `x-request-id`, the trace as `traceparent`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import Span, SpanProcessor
from opentelemetry.util.types import AttributeValue

REQUEST_ID = "request.id"
X402_ROUTE = "x402.route"
X402_NETWORK = "x402.network"
X402_SCHEME = "x402.scheme"
X402_PAYER = "x402.payer"
X402_AMOUNT = "x402.amount"
X402_OUTCOME = "x402.outcome"
X402_REASON = "x402.reason"

_FACTS = {
    "route": X402_ROUTE,
    "network": X402_NETWORK,
    "scheme": X402_SCHEME,
    "payer": X402_PAYER,
    "amount": X402_AMOUNT,
    "outcome": X402_OUTCOME,
    "reason": X402_REASON,
}

_scoped: ContextVar[dict[str, AttributeValue] | None] = ContextVar("paysidecar_span_attributes", default=None)


def _x402(**facts: str) -> dict[str, str]:
    """{"x402.<fact>": value} for the facts that are known (non-empty)."""
    return {_FACTS[name]: value for name, value in facts.items() if value}


@contextlib.contextmanager
def request_scope(request_id: str, **facts: str) -> Iterator[None]:
    """The scope of one request: its id and the x402 facts known on entry go on the
    current span and on every span started inside the block."""
    scoped: dict[str, AttributeValue] = {REQUEST_ID: request_id} if request_id else {}
    scoped.update(_x402(**facts))
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attributes(scoped)
    token = _scoped.set(scoped)
    try:
        yield
    finally:
        _scoped.reset(token)


def tag_request(**facts: str) -> None:
    """Record x402 facts learnt during the request: on the current span now, and on
    every span the request starts from here on."""
    attributes = _x402(**facts)
    if not attributes:
        return
    scoped = _scoped.get()
    if scoped is not None:
        scoped.update(attributes)
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attributes(attributes)


def current_request_id() -> str:
    scoped = _scoped.get()
    value = scoped.get(REQUEST_ID, "") if scoped else ""
    return value if isinstance(value, str) else ""


class RequestAttributes(SpanProcessor):
    """Copies the scoped request attributes onto each span as it starts."""

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        scoped = _scoped.get()
        if scoped:
            span.set_attributes(scoped)
