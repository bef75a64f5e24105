"""One span per facilitator attempt (DESIGN §5, §8), parent of the HTTP client
span the aiohttp instrumentation makes, plus the attempts counter.

The HTTP span ends when the answer's headers arrive; whether the attempt
succeeded is known only once the body is read and checked, so the outcome,
reason code and latency go on this span instead.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from opentelemetry import metrics, trace
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.semconv.attributes.http_attributes import HTTP_RESPONSE_STATUS_CODE
from opentelemetry.trace import Span, Status, StatusCode

from ..payments.ports import Attempt, Outcome

FACILITATOR_NAME = "x402.facilitator.name"
FACILITATOR_STAGE = "x402.facilitator.stage"
FACILITATOR_OUTCOME = "x402.facilitator.outcome"
FACILITATOR_REASON = "x402.facilitator.reason"
FACILITATOR_LATENCY_MS = "x402.facilitator.latency_ms"

_tracer = trace.get_tracer(__name__)
_attempts = metrics.get_meter(__name__).create_counter(
    "paysidecar.facilitator.attempts",
    unit="{attempt}",
    description="Facilitator calls by facilitator, stage, outcome and reason code",
)


@contextlib.contextmanager
def attempt_span(facilitator: str, stage: str) -> Iterator[Span]:
    attributes = {FACILITATOR_NAME: facilitator, FACILITATOR_STAGE: stage}
    with _tracer.start_as_current_span(f"facilitator {stage}", attributes=attributes) as span:
        yield span


def record_attempt(span: Span, attempt: Attempt) -> None:
    """Count the attempt and put its result on its span."""
    _attempts.add(
        1,
        {
            FACILITATOR_NAME: attempt.facilitator,
            FACILITATOR_STAGE: attempt.stage,
            FACILITATOR_OUTCOME: attempt.outcome.value,
            FACILITATOR_REASON: attempt.reason,
        },
    )
    if not span.is_recording():
        return
    span.set_attributes(
        {
            FACILITATOR_OUTCOME: attempt.outcome.value,
            FACILITATOR_LATENCY_MS: round(attempt.latency_ms, 2),
        }
    )
    if attempt.status:
        span.set_attribute(HTTP_RESPONSE_STATUS_CODE, attempt.status)
    if attempt.outcome is not Outcome.OK:
        span.set_attributes({FACILITATOR_REASON: attempt.reason, ERROR_TYPE: attempt.outcome.value})
        span.set_status(Status(StatusCode.ERROR, attempt.reason))
