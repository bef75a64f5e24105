"""TrackingService servicer: list, get, stats and prune, converted to and from
the tracking records port (the store answers it) and the retention rule."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import grpc
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from paysidecar.v1 import tracking_pb2, tracking_pb2_grpc

from ..config import Settings
from ..constants import Reason
from ..payments import retention
from ..payments.errors import InvalidRequest
from ..payments.ports import TrackingRecords
from ..payments.record_queries import DEFAULT_LIMIT, RecordQuery
from .errors import mapped


def _time(request: Message, name: str) -> dt.datetime | None:
    """The instant the Timestamp field `name` holds; None when it is not set."""
    if not request.HasField(name):
        return None
    try:
        return getattr(request, name).ToDatetime(tzinfo=dt.timezone.utc)
    except ValueError as exc:  # seconds or nanos outside what a Timestamp may hold
        raise InvalidRequest(Reason.INVALID_ARGUMENT, f"{name} is not a valid timestamp") from exc


def record_query(request: tracking_pb2.ListRecordsRequest) -> RecordQuery:
    return RecordQuery(
        path=request.path or None,
        network=request.network or None,
        scheme=request.scheme or None,
        payer=request.payer or None,
        verified=request.verified if request.HasField("verified") else None,
        settled=request.settled if request.HasField("settled") else None,
        start=_time(request, "start"),
        end=_time(request, "end"),
        sort_by="response_time" if request.sort_by == tracking_pb2.SORT_FIELD_RESPONSE_TIME else "timestamp",
        ascending=request.ascending,
        limit=request.limit or DEFAULT_LIMIT,
        cursor=request.cursor or None,
    )


def record_message(record: dict[str, Any]) -> tracking_pb2.Record:
    """A record (its columns by name) as a Record: each field of the message is
    the column of its name, so the list of columns is the store's alone."""
    message = tracking_pb2.Record()
    for field in tracking_pb2.Record.DESCRIPTOR.fields:
        value = record.get(field.name)
        if value is None:
            continue
        kind = field.message_type.full_name if field.message_type else ""
        if kind == "google.protobuf.Struct":
            if value:
                # jsonb objects are JSON already: Struct.update takes them as they are,
                # four times faster than json_format.ParseDict (50 records: 3 ms vs 14 ms).
                getattr(message, field.name).update(value)
        elif kind == "google.protobuf.Timestamp":
            getattr(message, field.name).FromDatetime(value)
        elif field.type == FieldDescriptor.TYPE_STRING:
            setattr(message, field.name, str(value))  # the id is a UUID
        else:
            setattr(message, field.name, value)
    return message


class TrackingServicer(tracking_pb2_grpc.TrackingServiceServicer):
    def __init__(self, records: TrackingRecords, settings: Settings) -> None:
        self._records = records
        self._settings = settings

    @mapped
    async def ListRecords(
        self, request: tracking_pb2.ListRecordsRequest, context: grpc.aio.ServicerContext
    ) -> tracking_pb2.ListRecordsResponse:
        page = await self._records.page(record_query(request))
        return tracking_pb2.ListRecordsResponse(
            records=[record_message(record) for record in page.records],
            total=page.total,
            has_more=page.has_more,
            next_cursor=page.next_cursor or "",
        )

    @mapped
    async def GetRecord(
        self, request: tracking_pb2.GetRecordRequest, context: grpc.aio.ServicerContext
    ) -> tracking_pb2.Record:
        try:
            record_id = uuid.UUID(request.id)
        except ValueError:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "invalid_argument: id must be a UUID")
        record = await self._records.get(record_id)
        if record is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"not_found: no record {request.id}")
        return record_message(record)

    @mapped
    async def GetStats(
        self, request: tracking_pb2.GetStatsRequest, context: grpc.aio.ServicerContext
    ) -> tracking_pb2.Stats:
        stats = await self._records.stats(_time(request, "start"), _time(request, "end"))
        return tracking_pb2.Stats(
            total_requests=stats.total_requests,
            payment_required_requests=stats.payment_required_requests,
            verified_payments=stats.verified_payments,
            successful_settlements=stats.successful_settlements,
            failed_settlements=stats.failed_settlements,
            avg_response_time_ms=stats.avg_response_time_ms or 0.0,
            p95_response_time_ms=stats.p95_response_time_ms or 0.0,
            by_path=stats.by_path,
            by_network=stats.by_network,
            by_scheme=stats.by_scheme,
            volume_by_network=stats.volume_by_network,
            volume_by_network_asset=stats.volume_by_network_asset,
        )

    @mapped
    async def Prune(
        self, request: tracking_pb2.PruneRequest, context: grpc.aio.ServicerContext
    ) -> tracking_pb2.PruneResponse:
        deleted = await retention.prune(
            self._records,
            _time(request, "older_than"),
            dt.datetime.now(dt.timezone.utc),
            retention_days=self._settings.retention_days,
            min_retention_days=self._settings.min_retention_days,
        )
        return tracking_pb2.PruneResponse(deleted=deleted)
