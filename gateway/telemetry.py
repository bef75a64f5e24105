"""The gateway's own telemetry: a bounded in-memory ring of recent events, each also
added to the current trace span as a span event (DESIGN §8)."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace


@dataclass(frozen=True)
class Event:
    name: str
    timestamp: datetime
    request_id: str
    route: str
    attributes: Mapping[str, str] = field(default_factory=dict)
    source: str = "gateway"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "timestamp": self.timestamp.isoformat(),
            "request_id": self.request_id,
            "route": self.route,
            "source": self.source,
            "attributes": dict(self.attributes),
        }


class EventLog:
    """Newest events, at most `capacity`; every event carries the runtime env and the
    payment network."""

    def __init__(self, capacity: int, *, env: str, network: str) -> None:
        self._events: deque[Event] = deque(maxlen=capacity)
        self._common = {"env": env, "payment.network": network}

    def record(self, name: str, request_id: str, route: str, attributes: Mapping[str, str] | None = None) -> Event:
        event = Event(
            name=name,
            timestamp=datetime.now(UTC),
            request_id=request_id,
            route=route,
            attributes={**self._common, **(attributes or {})},
        )
        self._events.append(event)
        span = trace.get_current_span()
        if span.is_recording():
            span.add_event(name, {"request.id": request_id, "x402.route": route, **event.attributes})
        return event

    def recent(self, limit: int) -> list[Event]:
        """Up to `limit` events, newest first."""
        newest_first = reversed(self._events)
        return [event for _, event in zip(range(limit), newest_first, strict=False)]
