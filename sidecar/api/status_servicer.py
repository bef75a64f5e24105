"""StatusService servicer: facilitator health, queues, database state, events."""

from __future__ import annotations

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from paysidecar.v1 import status_pb2, status_pb2_grpc
from paysidecar_common.events import EventRing

from .. import __version__
from ..config import Settings
from ..facilitators.pool import Pool
from ..payments.service import PaymentService
from ..store.tracking import TrackingWriter
from .errors import mapped


class StatusServicer(status_pb2_grpc.StatusServiceServicer):
    def __init__(
        self, settings: Settings, pool: Pool, writer: TrackingWriter, events: EventRing, service: PaymentService
    ) -> None:
        self._settings = settings
        self._pool = pool
        self._writer = writer
        self._events = events
        self._service = service

    @mapped
    async def GetStatus(
        self, request: status_pb2.GetStatusRequest, context: grpc.aio.ServicerContext
    ) -> status_pb2.GetStatusResponse:
        facilitators = [
            status_pb2.FacilitatorStatus(
                name=f.name,
                url=f.url,
                breaker_state=f.health.current_state(),
                ewma_latency_ms=f.health.ewma_latency_ms,
                success_rate=f.health.success_rate,
                consecutive_failures=f.health.consecutive_failures,
                attempts=f.health.attempts,
            )
            for f in self._pool.all()
        ]
        return status_pb2.GetStatusResponse(
            version=__version__,
            env=self._settings.env,
            facilitators=facilitators,
            tracking_queue_depth=self._writer.queue_depth,
            spool_records=self._writer.spool_records,
            spool_bytes=self._writer.spool_bytes,
            database="up" if self._writer.database_up else "down",
            in_flight_payments=len(self._service.in_flight),
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
