"""Recent telemetry events (DESIGN §8) in a bounded in-memory ring, each also added
as an event on the current OpenTelemetry span. On the span the event carries only
its own attributes: the span already has the request id and the route, and the
common ones (the runtime env, ...) say nothing about one request.

One source per event: the sidecar records the payment events it decides
(`request_received` of an Authorize, `payment_challenge_issued`,
`payment_verify_failed`, `payment_settlement_failed`, `payment_settled`); the
gateway records only what the sidecar cannot see (`request_received` of every HTTP
request, `route_not_found`, `sidecar_call_failed`).
"""

from __future__ import annotations

import collections
import itertools
import time
from collections.abc import Mapping
from dataclasses import dataclass

from opentelemetry import trace


@dataclass(frozen=True)
class Event:
    name: str
    timestamp: float  # seconds since the epoch
    request_id: str
    route: str
    attributes: Mapping[str, str]


class EventRing:
    """The newest `capacity` events. `common` attributes (the runtime env, ...) go on
    every event; empty attribute values are left out."""

    def __init__(self, capacity: int, common: Mapping[str, str]) -> None:
        self._events: collections.deque[Event] = collections.deque(maxlen=capacity)
        self._common = dict(common)

    def event(self, name: str, *, request_id: str, route: str, **attributes: object) -> None:
        known = {key: str(value) for key, value in attributes.items() if value not in (None, "")}
        recorded = Event(name, time.time(), request_id, route, {**self._common, **known})
        self._events.append(recorded)
        span = trace.get_current_span()
        if span.is_recording():
            span.add_event(name, known)

    def recent(self, limit: int) -> list[Event]:
        """Up to `limit` events, newest first."""
        return list(itertools.islice(reversed(self._events), max(limit, 0)))
