import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ListChannelsRequest(_message.Message):
    __slots__ = ("payer", "limit", "cursor")
    PAYER_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    payer: str
    limit: int
    cursor: str
    def __init__(self, payer: _Optional[str] = ..., limit: _Optional[int] = ..., cursor: _Optional[str] = ...) -> None: ...

class Channel(_message.Message):
    __slots__ = ("channel_id", "network", "payer", "payer_authorizer", "receiver", "receiver_authorizer", "token", "withdraw_delay_seconds", "charged", "signed", "balance", "claimed", "refund_nonce", "withdraw_requested_at", "synced_at", "last_request_at", "busy")
    CHANNEL_ID_FIELD_NUMBER: _ClassVar[int]
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    PAYER_FIELD_NUMBER: _ClassVar[int]
    PAYER_AUTHORIZER_FIELD_NUMBER: _ClassVar[int]
    RECEIVER_FIELD_NUMBER: _ClassVar[int]
    RECEIVER_AUTHORIZER_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    WITHDRAW_DELAY_SECONDS_FIELD_NUMBER: _ClassVar[int]
    CHARGED_FIELD_NUMBER: _ClassVar[int]
    SIGNED_FIELD_NUMBER: _ClassVar[int]
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    CLAIMED_FIELD_NUMBER: _ClassVar[int]
    REFUND_NONCE_FIELD_NUMBER: _ClassVar[int]
    WITHDRAW_REQUESTED_AT_FIELD_NUMBER: _ClassVar[int]
    SYNCED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_REQUEST_AT_FIELD_NUMBER: _ClassVar[int]
    BUSY_FIELD_NUMBER: _ClassVar[int]
    channel_id: str
    network: str
    payer: str
    payer_authorizer: str
    receiver: str
    receiver_authorizer: str
    token: str
    withdraw_delay_seconds: int
    charged: str
    signed: str
    balance: str
    claimed: str
    refund_nonce: str
    withdraw_requested_at: int
    synced_at: _timestamp_pb2.Timestamp
    last_request_at: _timestamp_pb2.Timestamp
    busy: bool
    def __init__(self, channel_id: _Optional[str] = ..., network: _Optional[str] = ..., payer: _Optional[str] = ..., payer_authorizer: _Optional[str] = ..., receiver: _Optional[str] = ..., receiver_authorizer: _Optional[str] = ..., token: _Optional[str] = ..., withdraw_delay_seconds: _Optional[int] = ..., charged: _Optional[str] = ..., signed: _Optional[str] = ..., balance: _Optional[str] = ..., claimed: _Optional[str] = ..., refund_nonce: _Optional[str] = ..., withdraw_requested_at: _Optional[int] = ..., synced_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_request_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., busy: _Optional[bool] = ...) -> None: ...

class ListChannelsResponse(_message.Message):
    __slots__ = ("channels", "has_more", "next_cursor")
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    HAS_MORE_FIELD_NUMBER: _ClassVar[int]
    NEXT_CURSOR_FIELD_NUMBER: _ClassVar[int]
    channels: _containers.RepeatedCompositeFieldContainer[Channel]
    has_more: bool
    next_cursor: str
    def __init__(self, channels: _Optional[_Iterable[_Union[Channel, _Mapping]]] = ..., has_more: _Optional[bool] = ..., next_cursor: _Optional[str] = ...) -> None: ...
