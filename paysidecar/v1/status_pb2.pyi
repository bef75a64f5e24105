import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from paysidecar.v1 import channels_pb2 as _channels_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class FacilitatorStatus(_message.Message):
    __slots__ = ("name", "url", "breaker_state", "ewma_latency_ms", "success_rate", "consecutive_failures", "attempts")
    NAME_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    BREAKER_STATE_FIELD_NUMBER: _ClassVar[int]
    EWMA_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_RATE_FIELD_NUMBER: _ClassVar[int]
    CONSECUTIVE_FAILURES_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    name: str
    url: str
    breaker_state: str
    ewma_latency_ms: float
    success_rate: float
    consecutive_failures: int
    attempts: int
    def __init__(self, name: _Optional[str] = ..., url: _Optional[str] = ..., breaker_state: _Optional[str] = ..., ewma_latency_ms: _Optional[float] = ..., success_rate: _Optional[float] = ..., consecutive_failures: _Optional[int] = ..., attempts: _Optional[int] = ...) -> None: ...

class GetStatusResponse(_message.Message):
    __slots__ = ("version", "env", "facilitators", "tracking_queue_depth", "spool_records", "spool_bytes", "database", "in_flight_payments", "tracking_missing_rows", "tracking_rejected_rows", "tracking_journal_failures", "money_at_risk", "collector")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    FACILITATORS_FIELD_NUMBER: _ClassVar[int]
    TRACKING_QUEUE_DEPTH_FIELD_NUMBER: _ClassVar[int]
    SPOOL_RECORDS_FIELD_NUMBER: _ClassVar[int]
    SPOOL_BYTES_FIELD_NUMBER: _ClassVar[int]
    DATABASE_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_PAYMENTS_FIELD_NUMBER: _ClassVar[int]
    TRACKING_MISSING_ROWS_FIELD_NUMBER: _ClassVar[int]
    TRACKING_REJECTED_ROWS_FIELD_NUMBER: _ClassVar[int]
    TRACKING_JOURNAL_FAILURES_FIELD_NUMBER: _ClassVar[int]
    MONEY_AT_RISK_FIELD_NUMBER: _ClassVar[int]
    COLLECTOR_FIELD_NUMBER: _ClassVar[int]
    version: str
    env: str
    facilitators: _containers.RepeatedCompositeFieldContainer[FacilitatorStatus]
    tracking_queue_depth: int
    spool_records: int
    spool_bytes: int
    database: str
    in_flight_payments: int
    tracking_missing_rows: int
    tracking_rejected_rows: int
    tracking_journal_failures: int
    money_at_risk: str
    collector: _channels_pb2.CollectorStatus
    def __init__(self, version: _Optional[str] = ..., env: _Optional[str] = ..., facilitators: _Optional[_Iterable[_Union[FacilitatorStatus, _Mapping]]] = ..., tracking_queue_depth: _Optional[int] = ..., spool_records: _Optional[int] = ..., spool_bytes: _Optional[int] = ..., database: _Optional[str] = ..., in_flight_payments: _Optional[int] = ..., tracking_missing_rows: _Optional[int] = ..., tracking_rejected_rows: _Optional[int] = ..., tracking_journal_failures: _Optional[int] = ..., money_at_risk: _Optional[str] = ..., collector: _Optional[_Union[_channels_pb2.CollectorStatus, _Mapping]] = ...) -> None: ...

class GetTelemetryRequest(_message.Message):
    __slots__ = ("limit",)
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    limit: int
    def __init__(self, limit: _Optional[int] = ...) -> None: ...

class TelemetryEvent(_message.Message):
    __slots__ = ("name", "timestamp", "request_id", "route", "attributes")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    name: str
    timestamp: _timestamp_pb2.Timestamp
    request_id: str
    route: str
    attributes: _containers.ScalarMap[str, str]
    def __init__(self, name: _Optional[str] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., request_id: _Optional[str] = ..., route: _Optional[str] = ..., attributes: _Optional[_Mapping[str, str]] = ...) -> None: ...

class GetTelemetryResponse(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[TelemetryEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[TelemetryEvent, _Mapping]]] = ...) -> None: ...
