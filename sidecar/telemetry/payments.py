"""The payment domain's Telemetry port (payments/ports.py), on the request's current
span: a step inside the process is not a hop, so it gets no span of its own but an
event with its duration (DESIGN §8).

- `event`: a payment event; to the recent-events ring, which also puts it on the span.
- `step`: the step's name as a span event once it is done, with `x402.duration_ms`
  (and, when it failed, `error.type` and the reason code).
- `note`: something seen on the way (a cache hit, ...): a span event only, kept
  out of the ring so that it cannot push the payment events out.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.util.types import AttributeValue

from paysidecar_common.events import EventRing
from paysidecar_common.trace_attributes import X402_REASON, tag_request

DURATION_MS = "x402.duration_ms"


def elapsed_ms(started: float) -> float:
    """Milliseconds since `started` (a time.perf_counter() reading), to the microsecond."""
    return round((time.perf_counter() - started) * 1000, 3)


def timed_event(name: str, started: float, attributes: Mapping[str, AttributeValue]) -> None:
    """Event `name` on the current span, with the milliseconds since `started`."""
    span = trace.get_current_span()
    if span.is_recording():
        span.add_event(name, {**attributes, DURATION_MS: elapsed_ms(started)})


class PaymentTelemetry:
    def __init__(self, events: EventRing) -> None:
        self._events = events

    def event(self, name: str, *, request_id: str, route: str, **attributes: Any) -> None:
        # The route on the span too: a Settle or Release names only the payment, and a
        # channel's (unlike the ledger's rows, ledger_events.py) is known only here.
        tag_request(route=route)
        self._events.event(name, request_id=request_id, route=route, **attributes)

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        span = trace.get_current_span()
        if not span.is_recording():
            yield
            return
        started = time.perf_counter()
        try:
            yield
        except Exception as exc:
            failed = {DURATION_MS: elapsed_ms(started), ERROR_TYPE: type(exc).__name__}
            reason = getattr(exc, "reason", None)
            if isinstance(reason, str) and reason:
                failed[X402_REASON] = reason
            span.add_event(name, failed)
            raise
        span.add_event(name, {DURATION_MS: elapsed_ms(started)})

    def note(self, name: str, **attributes: Any) -> None:
        span = trace.get_current_span()
        if span.is_recording():
            span.add_event(name, {key: value for key, value in attributes.items() if value not in (None, "")})
