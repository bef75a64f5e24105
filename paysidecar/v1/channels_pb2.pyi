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

class CollectRequest(_message.Message):
    __slots__ = ("wait_seconds",)
    WAIT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    wait_seconds: int
    def __init__(self, wait_seconds: _Optional[int] = ...) -> None: ...

class Collection(_message.Message):
    __slots__ = ("id", "kind", "network", "receiver", "token", "channel_ids", "amount", "state", "transaction", "facilitator", "reason", "decided_by")
    ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    RECEIVER_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_IDS_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    TRANSACTION_FIELD_NUMBER: _ClassVar[int]
    FACILITATOR_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DECIDED_BY_FIELD_NUMBER: _ClassVar[int]
    id: str
    kind: str
    network: str
    receiver: str
    token: str
    channel_ids: _containers.RepeatedScalarFieldContainer[str]
    amount: str
    state: str
    transaction: str
    facilitator: str
    reason: str
    decided_by: str
    def __init__(self, id: _Optional[str] = ..., kind: _Optional[str] = ..., network: _Optional[str] = ..., receiver: _Optional[str] = ..., token: _Optional[str] = ..., channel_ids: _Optional[_Iterable[str]] = ..., amount: _Optional[str] = ..., state: _Optional[str] = ..., transaction: _Optional[str] = ..., facilitator: _Optional[str] = ..., reason: _Optional[str] = ..., decided_by: _Optional[str] = ...) -> None: ...

class LeftOutChannel(_message.Message):
    __slots__ = ("channel_id", "payer", "unclaimed", "reason")
    CHANNEL_ID_FIELD_NUMBER: _ClassVar[int]
    PAYER_FIELD_NUMBER: _ClassVar[int]
    UNCLAIMED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    channel_id: str
    payer: str
    unclaimed: str
    reason: str
    def __init__(self, channel_id: _Optional[str] = ..., payer: _Optional[str] = ..., unclaimed: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class CollectResponse(_message.Message):
    __slots__ = ("ran", "message", "claims", "settles", "left_out", "resolved", "claimed_channels", "claimed_amount", "settled_amount")
    RAN_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    CLAIMS_FIELD_NUMBER: _ClassVar[int]
    SETTLES_FIELD_NUMBER: _ClassVar[int]
    LEFT_OUT_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_FIELD_NUMBER: _ClassVar[int]
    CLAIMED_CHANNELS_FIELD_NUMBER: _ClassVar[int]
    CLAIMED_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    SETTLED_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    ran: bool
    message: str
    claims: _containers.RepeatedCompositeFieldContainer[Collection]
    settles: _containers.RepeatedCompositeFieldContainer[Collection]
    left_out: _containers.RepeatedCompositeFieldContainer[LeftOutChannel]
    resolved: _containers.RepeatedCompositeFieldContainer[Collection]
    claimed_channels: int
    claimed_amount: str
    settled_amount: str
    def __init__(self, ran: _Optional[bool] = ..., message: _Optional[str] = ..., claims: _Optional[_Iterable[_Union[Collection, _Mapping]]] = ..., settles: _Optional[_Iterable[_Union[Collection, _Mapping]]] = ..., left_out: _Optional[_Iterable[_Union[LeftOutChannel, _Mapping]]] = ..., resolved: _Optional[_Iterable[_Union[Collection, _Mapping]]] = ..., claimed_channels: _Optional[int] = ..., claimed_amount: _Optional[str] = ..., settled_amount: _Optional[str] = ...) -> None: ...

class ChannelAtRisk(_message.Message):
    __slots__ = ("channel_id", "payer", "unclaimed", "withdraw_requested_at")
    CHANNEL_ID_FIELD_NUMBER: _ClassVar[int]
    PAYER_FIELD_NUMBER: _ClassVar[int]
    UNCLAIMED_FIELD_NUMBER: _ClassVar[int]
    WITHDRAW_REQUESTED_AT_FIELD_NUMBER: _ClassVar[int]
    channel_id: str
    payer: str
    unclaimed: str
    withdraw_requested_at: int
    def __init__(self, channel_id: _Optional[str] = ..., payer: _Optional[str] = ..., unclaimed: _Optional[str] = ..., withdraw_requested_at: _Optional[int] = ...) -> None: ...

class CollectorStatus(_message.Message):
    __slots__ = ("money_at_risk", "channels_at_risk", "withdrawals_pending", "top_at_risk", "last_claim_at", "failures_24h", "open_intents", "enabled", "last_run_at", "last_trigger", "last_claimed_channels", "last_claimed_amount", "last_settled_amount", "last_left_out", "runs", "failures", "last_failure", "watch_rounds", "watched_channels", "watch_round_seconds")
    MONEY_AT_RISK_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_AT_RISK_FIELD_NUMBER: _ClassVar[int]
    WITHDRAWALS_PENDING_FIELD_NUMBER: _ClassVar[int]
    TOP_AT_RISK_FIELD_NUMBER: _ClassVar[int]
    LAST_CLAIM_AT_FIELD_NUMBER: _ClassVar[int]
    FAILURES_24H_FIELD_NUMBER: _ClassVar[int]
    OPEN_INTENTS_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    LAST_RUN_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_TRIGGER_FIELD_NUMBER: _ClassVar[int]
    LAST_CLAIMED_CHANNELS_FIELD_NUMBER: _ClassVar[int]
    LAST_CLAIMED_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    LAST_SETTLED_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    LAST_LEFT_OUT_FIELD_NUMBER: _ClassVar[int]
    RUNS_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    LAST_FAILURE_FIELD_NUMBER: _ClassVar[int]
    WATCH_ROUNDS_FIELD_NUMBER: _ClassVar[int]
    WATCHED_CHANNELS_FIELD_NUMBER: _ClassVar[int]
    WATCH_ROUND_SECONDS_FIELD_NUMBER: _ClassVar[int]
    money_at_risk: str
    channels_at_risk: int
    withdrawals_pending: int
    top_at_risk: _containers.RepeatedCompositeFieldContainer[ChannelAtRisk]
    last_claim_at: _timestamp_pb2.Timestamp
    failures_24h: int
    open_intents: int
    enabled: bool
    last_run_at: _timestamp_pb2.Timestamp
    last_trigger: str
    last_claimed_channels: int
    last_claimed_amount: str
    last_settled_amount: str
    last_left_out: int
    runs: int
    failures: int
    last_failure: str
    watch_rounds: int
    watched_channels: int
    watch_round_seconds: float
    def __init__(self, money_at_risk: _Optional[str] = ..., channels_at_risk: _Optional[int] = ..., withdrawals_pending: _Optional[int] = ..., top_at_risk: _Optional[_Iterable[_Union[ChannelAtRisk, _Mapping]]] = ..., last_claim_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., failures_24h: _Optional[int] = ..., open_intents: _Optional[int] = ..., enabled: _Optional[bool] = ..., last_run_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_trigger: _Optional[str] = ..., last_claimed_channels: _Optional[int] = ..., last_claimed_amount: _Optional[str] = ..., last_settled_amount: _Optional[str] = ..., last_left_out: _Optional[int] = ..., runs: _Optional[int] = ..., failures: _Optional[int] = ..., last_failure: _Optional[str] = ..., watch_rounds: _Optional[int] = ..., watched_channels: _Optional[int] = ..., watch_round_seconds: _Optional[float] = ...) -> None: ...
