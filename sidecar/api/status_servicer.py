"""StatusService servicer: facilitator health, queues, database state, events."""

from __future__ import annotations

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from paysidecar.v1 import status_pb2, status_pb2_grpc
from paysidecar_common.events import EventRing

from .. import __version__
from ..config import Settings
from ..status import CollectionSource, StatusSource
from . import convert
from .errors import mapped


class StatusServicer(status_pb2_grpc.StatusServiceServicer):
    def __init__(
        self, settings: Settings, source: StatusSource, events: EventRing, collection: CollectionSource | None = None
    ) -> None:
        self._settings = settings
        self._source = source
        self._events = events
        self._collection = collection

    @mapped
    async def GetStatus(
        self, request: status_pb2.GetStatusRequest, context: grpc.aio.ServicerContext
    ) -> status_pb2.GetStatusResponse:
        status = self._source.status()
        tracking = status.tracking
        collector = None
        if self._collection is not None:
            collector = convert.collector_status(await self._collection.collection_status())
        return status_pb2.GetStatusResponse(
            version=__version__,
            env=self._settings.env,
            facilitators=[
                status_pb2.FacilitatorStatus(
                    name=f.name,
                    url=f.url,
                    breaker_state=f.breaker_state,
                    ewma_latency_ms=f.ewma_latency_ms,
                    success_rate=f.success_rate,
                    consecutive_failures=f.consecutive_failures,
                    attempts=f.attempts,
                )
                for f in status.facilitators
            ],
            tracking_queue_depth=tracking.queue_depth,
            spool_records=tracking.spool_records,
            spool_bytes=tracking.spool_bytes,
            database="up" if tracking.database_up else "down",
            in_flight_payments=status.in_flight_payments,
            tracking_missing_rows=tracking.missing_rows,
            tracking_rejected_rows=tracking.rejected_rows,
            tracking_journal_failures=tracking.journal_failures,
            money_at_risk=collector.money_at_risk if collector is not None else "",
            collector=collector,
        )

    @mapped
    async def GetTelemetry(
        self, request: status_pb2.GetTelemetryRequest, context: grpc.aio.ServicerContext
    ) -> status_pb2.GetTelemetryResponse:
        limit = request.limit if 0 < request.limit <= 1000 else 100
        events = []
        for event in self._events.recent(limit):
            stamp = Timestamp()
            stamp.FromNanoseconds(int(event.timestamp * 1e9))
            events.append(
                status_pb2.TelemetryEvent(
                    name=event.name,
                    timestamp=stamp,
                    request_id=event.request_id,
                    route=event.route,
                    attributes=event.attributes,
                )
            )
        return status_pb2.GetTelemetryResponse(events=events)
