import datetime

from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SortField(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SORT_FIELD_UNSPECIFIED: _ClassVar[SortField]
    SORT_FIELD_TIMESTAMP: _ClassVar[SortField]
    SORT_FIELD_RESPONSE_TIME: _ClassVar[SortField]
SORT_FIELD_UNSPECIFIED: SortField
SORT_FIELD_TIMESTAMP: SortField
SORT_FIELD_RESPONSE_TIME: SortField

class Record(_message.Message):
    __slots__ = ("id", "request_id", "method", "path", "route_key", "url", "timestamp", "payment_required", "payment_verified", "verification_error", "payment", "settlement", "upto_session", "x402_version", "payment_nonce", "payment_valid_before", "payload_hash", "requirements_hash", "payment_signature_hash", "response_status", "response_time_ms", "handler_executed", "request", "route_config", "metadata")
    ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    ROUTE_KEY_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_REQUIRED_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_VERIFIED_FIELD_NUMBER: _ClassVar[int]
    VERIFICATION_ERROR_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_FIELD_NUMBER: _ClassVar[int]
    SETTLEMENT_FIELD_NUMBER: _ClassVar[int]
    UPTO_SESSION_FIELD_NUMBER: _ClassVar[int]
    X402_VERSION_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_NONCE_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_VALID_BEFORE_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_HASH_FIELD_NUMBER: _ClassVar[int]
    REQUIREMENTS_HASH_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_SIGNATURE_HASH_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_STATUS_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    HANDLER_EXECUTED_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    ROUTE_CONFIG_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    id: str
    request_id: str
    method: str
    path: str
    route_key: str
    url: str
    timestamp: _timestamp_pb2.Timestamp
    payment_required: bool
    payment_verified: bool
    verification_error: str
    payment: _struct_pb2.Struct
    settlement: _struct_pb2.Struct
    upto_session: _struct_pb2.Struct
    x402_version: int
    payment_nonce: str
    payment_valid_before: str
    payload_hash: str
    requirements_hash: str
    payment_signature_hash: str
    response_status: int
    response_time_ms: int
    handler_executed: bool
    request: _struct_pb2.Struct
    route_config: _struct_pb2.Struct
    metadata: _struct_pb2.Struct
    def __init__(self, id: _Optional[str] = ..., request_id: _Optional[str] = ..., method: _Optional[str] = ..., path: _Optional[str] = ..., route_key: _Optional[str] = ..., url: _Optional[str] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., payment_required: _Optional[bool] = ..., payment_verified: _Optional[bool] = ..., verification_error: _Optional[str] = ..., payment: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., settlement: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., upto_session: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., x402_version: _Optional[int] = ..., payment_nonce: _Optional[str] = ..., payment_valid_before: _Optional[str] = ..., payload_hash: _Optional[str] = ..., requirements_hash: _Optional[str] = ..., payment_signature_hash: _Optional[str] = ..., response_status: _Optional[int] = ..., response_time_ms: _Optional[int] = ..., handler_executed: _Optional[bool] = ..., request: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., route_config: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class ListRecordsRequest(_message.Message):
    __slots__ = ("path", "network", "scheme", "payer", "verified", "settled", "start", "end", "sort_by", "ascending", "limit", "cursor")
    PATH_FIELD_NUMBER: _ClassVar[int]
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    SCHEME_FIELD_NUMBER: _ClassVar[int]
    PAYER_FIELD_NUMBER: _ClassVar[int]
    VERIFIED_FIELD_NUMBER: _ClassVar[int]
    SETTLED_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    SORT_BY_FIELD_NUMBER: _ClassVar[int]
    ASCENDING_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    path: str
    network: str
    scheme: str
    payer: str
    verified: bool
    settled: bool
    start: _timestamp_pb2.Timestamp
    end: _timestamp_pb2.Timestamp
    sort_by: SortField
    ascending: bool
    limit: int
    cursor: str
    def __init__(self, path: _Optional[str] = ..., network: _Optional[str] = ..., scheme: _Optional[str] = ..., payer: _Optional[str] = ..., verified: _Optional[bool] = ..., settled: _Optional[bool] = ..., start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., sort_by: _Optional[_Union[SortField, str]] = ..., ascending: _Optional[bool] = ..., limit: _Optional[int] = ..., cursor: _Optional[str] = ...) -> None: ...

class ListRecordsResponse(_message.Message):
    __slots__ = ("records", "total", "has_more", "next_cursor")
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    HAS_MORE_FIELD_NUMBER: _ClassVar[int]
    NEXT_CURSOR_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[Record]
    total: int
    has_more: bool
    next_cursor: str
    def __init__(self, records: _Optional[_Iterable[_Union[Record, _Mapping]]] = ..., total: _Optional[int] = ..., has_more: _Optional[bool] = ..., next_cursor: _Optional[str] = ...) -> None: ...

class GetRecordRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetStatsRequest(_message.Message):
    __slots__ = ("start", "end")
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    start: _timestamp_pb2.Timestamp
    end: _timestamp_pb2.Timestamp
    def __init__(self, start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Stats(_message.Message):
    __slots__ = ("total_requests", "payment_required_requests", "verified_payments", "successful_settlements", "failed_settlements", "avg_response_time_ms", "p95_response_time_ms", "by_path", "by_network", "by_scheme", "volume_by_network", "volume_by_network_asset")
    class ByPathEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class ByNetworkEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class BySchemeEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class VolumeByNetworkEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class VolumeByNetworkAssetEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TOTAL_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_REQUIRED_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    VERIFIED_PAYMENTS_FIELD_NUMBER: _ClassVar[int]
    SUCCESSFUL_SETTLEMENTS_FIELD_NUMBER: _ClassVar[int]
    FAILED_SETTLEMENTS_FIELD_NUMBER: _ClassVar[int]
    AVG_RESPONSE_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    P95_RESPONSE_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    BY_PATH_FIELD_NUMBER: _ClassVar[int]
    BY_NETWORK_FIELD_NUMBER: _ClassVar[int]
    BY_SCHEME_FIELD_NUMBER: _ClassVar[int]
    VOLUME_BY_NETWORK_FIELD_NUMBER: _ClassVar[int]
    VOLUME_BY_NETWORK_ASSET_FIELD_NUMBER: _ClassVar[int]
    total_requests: int
    payment_required_requests: int
    verified_payments: int
    successful_settlements: int
    failed_settlements: int
    avg_response_time_ms: float
    p95_response_time_ms: float
    by_path: _containers.ScalarMap[str, int]
    by_network: _containers.ScalarMap[str, int]
    by_scheme: _containers.ScalarMap[str, int]
    volume_by_network: _containers.ScalarMap[str, str]
    volume_by_network_asset: _containers.ScalarMap[str, str]
    def __init__(self, total_requests: _Optional[int] = ..., payment_required_requests: _Optional[int] = ..., verified_payments: _Optional[int] = ..., successful_settlements: _Optional[int] = ..., failed_settlements: _Optional[int] = ..., avg_response_time_ms: _Optional[float] = ..., p95_response_time_ms: _Optional[float] = ..., by_path: _Optional[_Mapping[str, int]] = ..., by_network: _Optional[_Mapping[str, int]] = ..., by_scheme: _Optional[_Mapping[str, int]] = ..., volume_by_network: _Optional[_Mapping[str, str]] = ..., volume_by_network_asset: _Optional[_Mapping[str, str]] = ...) -> None: ...

class PruneRequest(_message.Message):
    __slots__ = ("older_than",)
    OLDER_THAN_FIELD_NUMBER: _ClassVar[int]
    older_than: _timestamp_pb2.Timestamp
    def __init__(self, older_than: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class PruneResponse(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: int
    def __init__(self, deleted: _Optional[int] = ...) -> None: ...
