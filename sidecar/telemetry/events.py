"""Recent payment events in a bounded in-memory ring (newest first on read), each
also added as an event on the current OpenTelemetry span."""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace


@dataclass(frozen=True)
class Event:
    name: str
    timestamp: float
    request_id: str
    route: str
    attributes: dict[str, str]


class EventRing:
    def __init__(self, capacity: int, env: str) -> None:
        self._events: collections.deque[Event] = collections.deque(maxlen=capacity)
        self._env = env

    def event(self, name: str, *, request_id: str, route: str, **attributes: Any) -> None:
        attrs = {k: str(v) for k, v in attributes.items() if v not in (None, "")}
        attrs["env"] = self._env
        self._events.append(Event(name, time.time(), request_id, route, attrs))
        span = trace.get_current_span()
        if span.is_recording():
            span.add_event(name, {"request.id": request_id, "x402.route": route, **{f"x402.{k}": v for k, v in attrs.items()}})

    def recent(self, limit: int) -> list[Event]:
        limit = max(1, min(limit, len(self._events) or 1))
        return list(reversed(self._events))[:limit]
