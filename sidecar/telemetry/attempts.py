"""Facilitator calls in the request's trace (DESIGN §5, §8), and the attempts counter.

Each attempt on the wire is one client span, `facilitator verify`, `facilitator
settle` (or `facilitator supported`), carrying the HTTP attributes itself
(method, URL, server, status): no stock HTTP client span is made under it, so one
remote call is one span. The outcome and the reason code are known only once the
body is read and checked, which is when the attempt's span ends. What happens
around the attempts is an event on the span current then: a facilitator skipped
because its breaker is open, and each change of a breaker's state.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator, Mapping
from urllib.parse import urlsplit

from opentelemetry import metrics, propagate, trace
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.semconv.attributes.http_attributes import HTTP_REQUEST_METHOD, HTTP_RESPONSE_STATUS_CODE
from opentelemetry.semconv.attributes.server_attributes import SERVER_ADDRESS, SERVER_PORT
from opentelemetry.semconv.attributes.url_attributes import URL_FULL
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from paysidecar_common.trace_attributes import request_attributes

from ..payments.ports import Attempt, Outcome

FACILITATOR_NAME = "x402.facilitator.name"
FACILITATOR_STAGE = "x402.facilitator.stage"
FACILITATOR_OUTCOME = "x402.facilitator.outcome"
FACILITATOR_REASON = "x402.facilitator.reason"
BREAKER_FROM = "x402.facilitator.breaker.from"

_tracer = trace.get_tracer(__name__)
_attempts = metrics.get_meter(__name__).create_counter(
    "paysidecar.facilitator.attempts",
    unit="{attempt}",
    description="Facilitator calls by facilitator, stage, outcome and reason code",
)


@functools.lru_cache(maxsize=256)
def _http_attributes(facilitator: str, method: str, url: str) -> Mapping[str, AttributeValue]:
    """What an attempt's span says about its HTTP call; the same for every call to `url`."""
    parts = urlsplit(url)
    return {
        FACILITATOR_NAME: facilitator,
        HTTP_REQUEST_METHOD: method,
        # Without any user:password the URL may hold.
        URL_FULL: parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl(),
        SERVER_ADDRESS: parts.hostname or "",
        SERVER_PORT: parts.port or (443 if parts.scheme == "https" else 80),
    }


@contextlib.contextmanager
def attempt_span(facilitator: str, stage: str, method: str, url: str) -> Iterator[Span]:
    """The client span of one call (`method` `url`), current inside the block."""
    attributes = {**request_attributes(), **_http_attributes(facilitator, method, url)}
    with _tracer.start_as_current_span(f"facilitator {stage}", kind=SpanKind.CLIENT, attributes=attributes) as span:
        yield span


def with_trace_context(headers: dict[str, str]) -> dict[str, str]:
    """`headers` plus `traceparent` for the current span, so that a facilitator that
    traces joins the request's trace; `headers` itself when there is no trace."""
    if not trace.get_current_span().get_span_context().is_valid:
        return headers
    carried = dict(headers)
    propagate.inject(carried)
    return carried


def record_attempt(span: Span, attempt: Attempt) -> None:
    """Count the attempt and put its result on its span."""
    _count(attempt)
    if not span.is_recording():
        return
    if attempt.status:
        span.set_attribute(HTTP_RESPONSE_STATUS_CODE, attempt.status)
    if attempt.outcome is Outcome.OK:
        span.set_attribute(FACILITATOR_OUTCOME, attempt.outcome.value)
        return
    span.set_attributes(
        {FACILITATOR_OUTCOME: attempt.outcome.value, FACILITATOR_REASON: attempt.reason, ERROR_TYPE: attempt.outcome.value}
    )
    span.set_status(Status(StatusCode.ERROR, attempt.reason))


def record_skipped(attempt: Attempt) -> None:
    """Count an attempt that never went out (the breaker is open): an event on the
    current span, as no call was made."""
    _count(attempt)
    span = trace.get_current_span()
    if span.is_recording():
        span.add_event(
            f"facilitator {attempt.stage} skipped", {FACILITATOR_NAME: attempt.facilitator, FACILITATOR_REASON: attempt.reason}
        )


def record_breaker_change(facilitator: str, before: str, after: str) -> None:
    """A breaker changed state: `breaker <state>` on the current span."""
    span = trace.get_current_span()
    if span.is_recording():
        span.add_event(f"breaker {after}", {FACILITATOR_NAME: facilitator, BREAKER_FROM: before})


def _count(attempt: Attempt) -> None:
    _attempts.add(
        1,
        {
            FACILITATOR_NAME: attempt.facilitator,
            FACILITATOR_STAGE: attempt.stage,
            FACILITATOR_OUTCOME: attempt.outcome.value,
            FACILITATOR_REASON: attempt.reason,
        },
    )
