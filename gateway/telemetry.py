"""`GET /v1/telemetry`'s events: the gateway's own, which are only what the sidecar
cannot see (every HTTP request, routes not found, calls to the sidecar that
failed), merged with the sidecar's payment events; newest first, each once, with
its source."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from paysidecar.v1 import status_pb2
from paysidecar_common.events import Event, EventRing


def gateway_events(capacity: int, *, env: str) -> EventRing:
    """The gateway's ring: each event carries the runtime env (the payment network
    is the sidecar's, on its payment events)."""
    return EventRing(capacity, {"env": env})


def from_sidecar(event: status_pb2.TelemetryEvent) -> Event:
    moment = event.timestamp.ToDatetime(tzinfo=UTC).timestamp()
    return Event(event.name, moment, event.request_id, event.route, dict(event.attributes))


def newest_first(limit: int, *, gateway: Iterable[Event], sidecar: Iterable[Event]) -> list[dict[str, Any]]:
    """Up to `limit` events of both sources, as JSON."""
    tagged = [(event, "gateway") for event in gateway] + [(event, "sidecar") for event in sidecar]
    tagged.sort(key=lambda pair: pair[0].timestamp, reverse=True)
    return [_json(event, source) for event, source in tagged[:limit]]


def _json(event: Event, source: str) -> dict[str, Any]:
    return {
        "name": event.name,
        "timestamp": datetime.fromtimestamp(event.timestamp, UTC).isoformat(),
        "request_id": event.request_id,
        "route": event.route,
        "source": source,
        "attributes": dict(event.attributes),
    }
