"""TrackingService servicer: list, get, stats and prune over the tracking store."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import asyncpg
import grpc
from google.protobuf.message import Message

from paysidecar.v1 import tracking_pb2, tracking_pb2_grpc

from ..config import Settings
from ..constants import Reason
from ..payments.errors import InvalidRequest
from ..payments.retention import prune_cutoff
from ..store import tracking_queries as queries
from .errors import mapped

_STRUCT_COLUMNS = ("payment", "settlement", "upto_session", "request", "route_config", "metadata")
_SCALAR_COLUMNS = (
    "request_id",
    "method",
    "path",
    "route_key",
    "url",
    "payment_required",
    "payment_verified",
    "verification_error",
    "x402_version",
    "payment_nonce",
    "payment_valid_before",
    "payload_hash",
    "requirements_hash",
    "payment_signature_hash",
    "response_status",
    "response_time_ms",
    "handler_executed",
)


def _time(request: Message, name: str) -> dt.datetime | None:
    """The instant the Timestamp field `name` holds; None when it is not set."""
    if not request.HasField(name):
        return None
    try:
        return getattr(request, name).ToDatetime(tzinfo=dt.timezone.utc)
    except ValueError as exc:  # seconds or nanos outside what a Timestamp may hold
        raise InvalidRequest(Reason.INVALID_ARGUMENT, f"{name} is not a valid timestamp") from exc


def record_message(row: dict[str, Any]) -> tracking_pb2.Record:
    record = tracking_pb2.Record(id=str(row["id"]))
    for column in _SCALAR_COLUMNS:
        value = row.get(column)
        if value is not None:
            setattr(record, column, value)
    if row.get("timestamp") is not None:
        record.timestamp.FromDatetime(row["timestamp"])
    for column in _STRUCT_COLUMNS:
        value = row.get(column)
        if value:
            # jsonb objects are JSON already: Struct.update takes them as they are,
            # four times faster than json_format.ParseDict (50 records: 3 ms vs 14 ms).
            getattr(record, column).update(value)
    return record


class TrackingServicer(tracking_pb2_grpc.TrackingServiceServicer):
    def __init__(self, pool: asyncpg.Pool, settings: Settings) -> None:
        self._pool = pool
        self._settings = settings

    @mapped
    async def ListRecords(
        self, request: tracking_pb2.ListRecordsRequest, context: grpc.aio.ServicerContext
    ) -> tracking_pb2.ListRecordsResponse:
        page = await queries.list_records(
            self._pool,
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
            limit=request.limit or 50,
            cursor=request.cursor or None,
        )
        return tracking_pb2.ListRecordsResponse(
            records=[record_message(row) for row in page.records],
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
        row = await queries.get_record(self._pool, record_id)
        if row is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"not_found: no record {request.id}")
        return record_message(row)

    @mapped
    async def GetStats(
        self, request: tracking_pb2.GetStatsRequest, context: grpc.aio.ServicerContext
    ) -> tracking_pb2.Stats:
        stats = await queries.get_stats(
            self._pool,
            start=_time(request, "start"),
            end=_time(request, "end"),
        )
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
            volume_by_network={k: str(v) for k, v in stats.volume_by_network.items()},
            volume_by_network_asset={k: str(v) for k, v in stats.volume_by_network_asset.items()},
        )

    @mapped
    async def Prune(
        self, request: tracking_pb2.PruneRequest, context: grpc.aio.ServicerContext
    ) -> tracking_pb2.PruneResponse:
        older_than = prune_cutoff(
            _time(request, "older_than"),
            dt.datetime.now(dt.timezone.utc),
            retention_days=self._settings.retention_days,
            min_retention_days=self._settings.min_retention_days,
        )
        deleted = await queries.prune(self._pool, older_than)
        return tracking_pb2.PruneResponse(deleted=deleted)
