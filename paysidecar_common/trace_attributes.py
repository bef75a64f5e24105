"""The attributes every span of a request carries (DESIGN §8): `request.id` and the
x402 facts known so far (route, network, scheme, payer, amount, outcome, reason).

A request's attributes live in a context variable, set where the request enters
the process (the gateway's tracing middleware, the sidecar's gRPC interceptor),
which also puts them on that hop's server span. A span made later in the request
takes them at creation: ours pass `request_attributes()`, the stock gRPC client
spans get them from `onto_client_span` (their request hook). No span processor
copies them: spans are made only at hops (DESIGN §8), each knows where it is. The
variable is process-local: nothing here crosses the wire (the request id travels
as `x-request-id`, the trace as `traceparent`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span
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
    current span (the hop's server span) and on the spans made inside the block."""
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
    """Record x402 facts learnt during the request: on the current span now (the
    hop's server span), and in the scope for the spans made from here on. A fact
    the scope already holds with that value is on the span already."""
    attributes = _x402(**facts)
    scoped = _scoped.get()
    if scoped is not None:
        attributes = {key: value for key, value in attributes.items() if scoped.get(key) != value}
        scoped.update(attributes)
    if not attributes:
        return
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attributes(attributes)


def current_request_id() -> str:
    scoped = _scoped.get()
    value = scoped.get(REQUEST_ID, "") if scoped else ""
    return value if isinstance(value, str) else ""


def request_attributes() -> Mapping[str, AttributeValue]:
    """The attributes of the current request so far (empty outside one), for a span
    made now. Read-only: copy it, never change it."""
    return _scoped.get() or {}


def onto_client_span(span: Span, _request: Any = None) -> None:
    """The request's attributes onto a stock client span as it starts (the gRPC
    client interceptors' `request_hook`)."""
    scoped = _scoped.get()
    if scoped and span.is_recording():
        span.set_attributes(scoped)
