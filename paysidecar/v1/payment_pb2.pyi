from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Route(_message.Message):
    __slots__ = ("key", "name", "price", "pay_to", "network", "asset", "description", "mime_type", "facilitators", "max_timeout_seconds", "amount", "schemes", "payment_identifier_required", "discovery", "tags", "service_name", "price_per_row")
    KEY_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    PAY_TO_FIELD_NUMBER: _ClassVar[int]
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    ASSET_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    MIME_TYPE_FIELD_NUMBER: _ClassVar[int]
    FACILITATORS_FIELD_NUMBER: _ClassVar[int]
    MAX_TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    SCHEMES_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_IDENTIFIER_REQUIRED_FIELD_NUMBER: _ClassVar[int]
    DISCOVERY_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    SERVICE_NAME_FIELD_NUMBER: _ClassVar[int]
    PRICE_PER_ROW_FIELD_NUMBER: _ClassVar[int]
    key: str
    name: str
    price: str
    pay_to: str
    network: str
    asset: str
    description: str
    mime_type: str
    facilitators: _containers.RepeatedScalarFieldContainer[str]
    max_timeout_seconds: int
    amount: str
    schemes: _containers.RepeatedScalarFieldContainer[str]
    payment_identifier_required: bool
    discovery: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    service_name: str
    price_per_row: str
    def __init__(self, key: _Optional[str] = ..., name: _Optional[str] = ..., price: _Optional[str] = ..., pay_to: _Optional[str] = ..., network: _Optional[str] = ..., asset: _Optional[str] = ..., description: _Optional[str] = ..., mime_type: _Optional[str] = ..., facilitators: _Optional[_Iterable[str]] = ..., max_timeout_seconds: _Optional[int] = ..., amount: _Optional[str] = ..., schemes: _Optional[_Iterable[str]] = ..., payment_identifier_required: _Optional[bool] = ..., discovery: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., service_name: _Optional[str] = ..., price_per_row: _Optional[str] = ...) -> None: ...

class AuthorizeRequest(_message.Message):
    __slots__ = ("request_id", "method", "url", "route", "payment_signature", "x_payment", "client_ip", "user_agent", "headers", "query", "call_key")
    class HeadersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    X_PAYMENT_FIELD_NUMBER: _ClassVar[int]
    CLIENT_IP_FIELD_NUMBER: _ClassVar[int]
    USER_AGENT_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    CALL_KEY_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    method: str
    url: str
    route: Route
    payment_signature: str
    x_payment: str
    client_ip: str
    user_agent: str
    headers: _containers.ScalarMap[str, str]
    query: str
    call_key: str
    def __init__(self, request_id: _Optional[str] = ..., method: _Optional[str] = ..., url: _Optional[str] = ..., route: _Optional[_Union[Route, _Mapping]] = ..., payment_signature: _Optional[str] = ..., x_payment: _Optional[str] = ..., client_ip: _Optional[str] = ..., user_agent: _Optional[str] = ..., headers: _Optional[_Mapping[str, str]] = ..., query: _Optional[str] = ..., call_key: _Optional[str] = ...) -> None: ...

class HttpAnswer(_message.Message):
    __slots__ = ("status", "headers", "body")
    class HeadersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    STATUS_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    status: int
    headers: _containers.ScalarMap[str, str]
    body: bytes
    def __init__(self, status: _Optional[int] = ..., headers: _Optional[_Mapping[str, str]] = ..., body: _Optional[bytes] = ...) -> None: ...

class PaymentRequired(_message.Message):
    __slots__ = ("status", "headers", "body")
    class HeadersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    STATUS_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    status: int
    headers: _containers.ScalarMap[str, str]
    body: bytes
    def __init__(self, status: _Optional[int] = ..., headers: _Optional[_Mapping[str, str]] = ..., body: _Optional[bytes] = ...) -> None: ...

class Rejected(_message.Message):
    __slots__ = ("status", "reason", "message", "headers", "body")
    class HeadersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    status: int
    reason: str
    message: str
    headers: _containers.ScalarMap[str, str]
    body: bytes
    def __init__(self, status: _Optional[int] = ..., reason: _Optional[str] = ..., message: _Optional[str] = ..., headers: _Optional[_Mapping[str, str]] = ..., body: _Optional[bytes] = ...) -> None: ...

class Verified(_message.Message):
    __slots__ = ("payment_id", "payer", "scheme", "network", "amount", "x402_version", "redeem", "claim_token", "channel_id", "price_per_row")
    PAYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    PAYER_FIELD_NUMBER: _ClassVar[int]
    SCHEME_FIELD_NUMBER: _ClassVar[int]
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    X402_VERSION_FIELD_NUMBER: _ClassVar[int]
    REDEEM_FIELD_NUMBER: _ClassVar[int]
    CLAIM_TOKEN_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_ID_FIELD_NUMBER: _ClassVar[int]
    PRICE_PER_ROW_FIELD_NUMBER: _ClassVar[int]
    payment_id: str
    payer: str
    scheme: str
    network: str
    amount: str
    x402_version: int
    redeem: bool
    claim_token: str
    channel_id: str
    price_per_row: str
    def __init__(self, payment_id: _Optional[str] = ..., payer: _Optional[str] = ..., scheme: _Optional[str] = ..., network: _Optional[str] = ..., amount: _Optional[str] = ..., x402_version: _Optional[int] = ..., redeem: _Optional[bool] = ..., claim_token: _Optional[str] = ..., channel_id: _Optional[str] = ..., price_per_row: _Optional[str] = ...) -> None: ...

class Completed(_message.Message):
    __slots__ = ("status", "headers", "body")
    class HeadersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    STATUS_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    status: int
    headers: _containers.ScalarMap[str, str]
    body: bytes
    def __init__(self, status: _Optional[int] = ..., headers: _Optional[_Mapping[str, str]] = ..., body: _Optional[bytes] = ...) -> None: ...

class AuthorizeResponse(_message.Message):
    __slots__ = ("tracking_id", "payment_required", "rejected", "verified", "completed")
    TRACKING_ID_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_REQUIRED_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    VERIFIED_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_FIELD_NUMBER: _ClassVar[int]
    tracking_id: str
    payment_required: PaymentRequired
    rejected: Rejected
    verified: Verified
    completed: Completed
    def __init__(self, tracking_id: _Optional[str] = ..., payment_required: _Optional[_Union[PaymentRequired, _Mapping]] = ..., rejected: _Optional[_Union[Rejected, _Mapping]] = ..., verified: _Optional[_Union[Verified, _Mapping]] = ..., completed: _Optional[_Union[Completed, _Mapping]] = ...) -> None: ...

class SettleRequest(_message.Message):
    __slots__ = ("payment_id", "tracking_id", "response_status", "response_time_ms", "request_id", "payment_signature", "x_payment", "claim_token", "charge")
    PAYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    TRACKING_ID_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_STATUS_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    X_PAYMENT_FIELD_NUMBER: _ClassVar[int]
    CLAIM_TOKEN_FIELD_NUMBER: _ClassVar[int]
    CHARGE_FIELD_NUMBER: _ClassVar[int]
    payment_id: str
    tracking_id: str
    response_status: int
    response_time_ms: int
    request_id: str
    payment_signature: str
    x_payment: str
    claim_token: str
    charge: str
    def __init__(self, payment_id: _Optional[str] = ..., tracking_id: _Optional[str] = ..., response_status: _Optional[int] = ..., response_time_ms: _Optional[int] = ..., request_id: _Optional[str] = ..., payment_signature: _Optional[str] = ..., x_payment: _Optional[str] = ..., claim_token: _Optional[str] = ..., charge: _Optional[str] = ...) -> None: ...

class SettleResponse(_message.Message):
    __slots__ = ("success", "headers", "transaction", "payer", "network", "answer", "reason")
    class HeadersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    TRANSACTION_FIELD_NUMBER: _ClassVar[int]
    PAYER_FIELD_NUMBER: _ClassVar[int]
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    success: bool
    headers: _containers.ScalarMap[str, str]
    transaction: str
    payer: str
    network: str
    answer: HttpAnswer
    reason: str
    def __init__(self, success: _Optional[bool] = ..., headers: _Optional[_Mapping[str, str]] = ..., transaction: _Optional[str] = ..., payer: _Optional[str] = ..., network: _Optional[str] = ..., answer: _Optional[_Union[HttpAnswer, _Mapping]] = ..., reason: _Optional[str] = ...) -> None: ...

class ReleaseRequest(_message.Message):
    __slots__ = ("payment_id", "tracking_id", "reason", "response_status", "response_time_ms", "request_id", "claim_token")
    PAYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    TRACKING_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_STATUS_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CLAIM_TOKEN_FIELD_NUMBER: _ClassVar[int]
    payment_id: str
    tracking_id: str
    reason: str
    response_status: int
    response_time_ms: int
    request_id: str
    claim_token: str
    def __init__(self, payment_id: _Optional[str] = ..., tracking_id: _Optional[str] = ..., reason: _Optional[str] = ..., response_status: _Optional[int] = ..., response_time_ms: _Optional[int] = ..., request_id: _Optional[str] = ..., claim_token: _Optional[str] = ...) -> None: ...

class ReleaseResponse(_message.Message):
    __slots__ = ("state",)
    STATE_FIELD_NUMBER: _ClassVar[int]
    state: str
    def __init__(self, state: _Optional[str] = ...) -> None: ...

class DescribeRouteRequest(_message.Message):
    __slots__ = ("route",)
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    route: Route
    def __init__(self, route: _Optional[_Union[Route, _Mapping]] = ...) -> None: ...

class RouteDescription(_message.Message):
    __slots__ = ("key", "name", "price", "amount", "asset", "asset_name", "asset_version", "network", "pay_to", "schemes", "max_timeout_seconds", "price_per_row")
    KEY_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    ASSET_FIELD_NUMBER: _ClassVar[int]
    ASSET_NAME_FIELD_NUMBER: _ClassVar[int]
    ASSET_VERSION_FIELD_NUMBER: _ClassVar[int]
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    PAY_TO_FIELD_NUMBER: _ClassVar[int]
    SCHEMES_FIELD_NUMBER: _ClassVar[int]
    MAX_TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    PRICE_PER_ROW_FIELD_NUMBER: _ClassVar[int]
    key: str
    name: str
    price: str
    amount: str
    asset: str
    asset_name: str
    asset_version: str
    network: str
    pay_to: str
    schemes: _containers.RepeatedScalarFieldContainer[str]
    max_timeout_seconds: int
    price_per_row: str
    def __init__(self, key: _Optional[str] = ..., name: _Optional[str] = ..., price: _Optional[str] = ..., amount: _Optional[str] = ..., asset: _Optional[str] = ..., asset_name: _Optional[str] = ..., asset_version: _Optional[str] = ..., network: _Optional[str] = ..., pay_to: _Optional[str] = ..., schemes: _Optional[_Iterable[str]] = ..., max_timeout_seconds: _Optional[int] = ..., price_per_row: _Optional[str] = ...) -> None: ...
