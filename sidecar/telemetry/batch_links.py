"""Tracing for work done off the request path in batches (the tracking writer).

A batch write belongs to no single request, so its span starts a trace of its
own and LINKS to the request spans whose records it carries. The span context
of each request is captured when the request hands its step over (`capture()`,
on the request path), and the batch span is made with those links later.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanContext
from opentelemetry.util.types import AttributeValue

from paysidecar.trace_attributes import REQUEST_ID, current_request_id

# The SDK keeps at most 128 links per span by default; more would be dropped anyway.
MAX_LINKS = 128

_tracer = trace.get_tracer(__name__)


class BatchLinks:
    """The request spans (and their request ids) behind the steps queued so far."""

    def __init__(self) -> None:
        # (trace id, span id) -> (span context, request id); SpanContext itself is unhashable.
        self._pending: dict[tuple[int, int], tuple[SpanContext, str]] = {}

    def capture(self) -> None:
        """Remember the current request span; cheap and silent outside a sampled trace."""
        context = trace.get_current_span().get_span_context()
        if context.is_valid and context.trace_flags.sampled and len(self._pending) < MAX_LINKS:
            self._pending.setdefault((context.trace_id, context.span_id), (context, current_request_id()))

    def take(self) -> list[tuple[SpanContext, str]]:
        """The captured spans and their request ids, leaving none pending: one batch's links."""
        taken, self._pending = self._pending, {}
        return list(taken.values())


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
