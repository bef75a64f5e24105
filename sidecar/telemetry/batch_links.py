"""Tracing for work done off the request path in batches (the tracking writer).

The steps a call queues are one event on its server span when the call ends
(`tracking enqueued`, with the steps in order): one event per call rather than
per step, as they are queued within microseconds of each other. A batch write
belongs to no single request, so its span starts a trace of its own and LINKS to
the request spans whose records it carries. The span context of each request is
captured when the request hands its step over (`capture()`, on the request
path), and the batch span is made with those links later.
"""

from __future__ import annotations

import contextlib
from collections.abc import Container, Hashable, Iterator, Mapping
from contextvars import ContextVar

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanContext
from opentelemetry.util.types import AttributeValue

from paysidecar_common.trace_attributes import REQUEST_ID, current_request_id

# The SDK keeps at most 128 links per span by default; more would be dropped anyway.
MAX_LINKS = 128
TRACKING_STEPS = "x402.tracking.steps"

_tracer = trace.get_tracer(__name__)


# The steps queued so far by the current call, while `tracking_steps()` collects them.
_queued: ContextVar[list[str] | None] = ContextVar("paysidecar_tracking_steps", default=None)


def enqueued(step: str) -> None:
    """A tracking step queued by the current call."""
    queued = _queued.get()
    if queued is not None:
        queued.append(step)


@contextlib.contextmanager
def tracking_steps() -> Iterator[None]:
    """The scope of one call: the steps it queues become one event on the span
    current when it ends."""
    queued: list[str] = []
    token = _queued.set(queued)
    try:
        yield
    finally:
        _queued.reset(token)
        span = trace.get_current_span()
        if queued and span.is_recording():
            span.add_event("tracking enqueued", {TRACKING_STEPS: queued})


class BatchLinks:
    """The request spans (and their request ids) behind the records queued so far."""

    def __init__(self) -> None:
        # record id -> (span context, request id) of the request that started it there.
        self._pending: dict[Hashable, tuple[SpanContext, str]] = {}

    def capture(self, record: Hashable) -> None:
        """Remember the current request span for `record`; cheap and silent outside a sampled trace."""
        context = trace.get_current_span().get_span_context()
        if context.is_valid and context.trace_flags.sampled and len(self._pending) < MAX_LINKS:
            self._pending.setdefault(record, (context, current_request_id()))

    def take(self, records: Container[Hashable]) -> list[tuple[SpanContext, str]]:
        """The spans behind those of `records` that have one, no longer pending: one batch's links."""
        if not self._pending:
            return []
        taken = [record for record in self._pending if record in records]
        # Several records of one request share its span: link it once.
        links = {}
        for record in taken:
            context, request_id = self._pending.pop(record)
            links.setdefault((context.trace_id, context.span_id), (context, request_id))
        return list(links.values())


@contextlib.contextmanager
def batch_span(
    name: str, links: list[tuple[SpanContext, str]], attributes: Mapping[str, AttributeValue] | None = None
) -> Iterator[Span]:
    """A root span linked to `links`, carrying their request ids."""
    request_ids = tuple(dict.fromkeys(rid for _, rid in links if rid))
    span_links = [Link(context, {REQUEST_ID: rid} if rid else None) for context, rid in links]
    span_attributes = {**(attributes or {}), REQUEST_ID: request_ids}
    with _tracer.start_as_current_span(name, context=Context(), links=span_links, attributes=span_attributes) as span:
        yield span
