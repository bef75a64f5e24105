"""The collector's telemetry (the CollectionTelemetry port, payments/ports.py):
one span per chain transaction it sends, a claim or a settle (DESIGN §8: a remote
call), with the facilitator attempt under it; its events go to the recent-events
ring, which also puts them on that span. The collector runs outside any request:
each transaction's span is the root of a trace of its own."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from opentelemetry import trace

from paysidecar_common.events import EventRing

COLLECTION_KIND = "x402.collection.kind"
COLLECTION_NETWORK = "x402.network"
COLLECTION_CHANNELS = "x402.collection.channels"

_tracer = trace.get_tracer(__name__)


class CollectorTelemetry:
    def __init__(self, events: EventRing) -> None:
        self._events = events

    @contextlib.contextmanager
    def transaction(self, kind: str, network: str, channels: int) -> Iterator[None]:
        attributes = {COLLECTION_KIND: kind, COLLECTION_NETWORK: network, COLLECTION_CHANNELS: channels}
        with _tracer.start_as_current_span(f"collector {kind}", attributes=attributes):
            yield

    def event(self, name: str, *, collection_id: str = "", **attributes: Any) -> None:
        self._events.event(name, request_id=collection_id, route="", **attributes)
