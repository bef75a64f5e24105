"""The payment domain's Telemetry port (payments/ports.py): its events go to the
recent-events ring, which also puts them on the current span, and the steps it
times become spans of the request."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from opentelemetry import trace

from paysidecar_common.events import EventRing

_tracer = trace.get_tracer(__name__)


class PaymentTelemetry:
    def __init__(self, events: EventRing) -> None:
        self._events = events

    def event(self, name: str, *, request_id: str, route: str, **attributes: Any) -> None:
        self._events.event(name, request_id=request_id, route=route, **attributes)

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        with _tracer.start_as_current_span(name):
            yield
