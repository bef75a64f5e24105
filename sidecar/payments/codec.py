"""Decode x402 payment headers (v2 PAYMENT-SIGNATURE, v1 X-PAYMENT) with the SDK,
then check the EVM exact payload's shape strictly. Anything malformed becomes a
PaymentError with status 400 and a reason code, never an exception of another kind."""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import rfc8785
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from x402.schemas import PaymentPayload
from x402.schemas.v1 import PaymentPayloadV1

from ..constants import (
    MAX_PAYMENT_HEADER_BYTES,
    MAX_PAYMENT_NESTING,
    PAYMENT_SIGNATURE_HEADER,
    X_PAYMENT_HEADER,
    Reason,
)
from .errors import PaymentError
from .identity import canonical_hash

_ADDRESS = r"^0x[0-9a-fA-F]{40}$"
_UINT = r"^[0-9]{1,78}$"


class _Authorization(BaseModel):
    """EIP-3009 authorization as it travels in the payload (strict types)."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    from_: str = Field(alias="from", pattern=_ADDRESS)
    to: str = Field(pattern=_ADDRESS)
    value: str = Field(pattern=_UINT)
    valid_after: str = Field(alias="validAfter", pattern=_UINT)
    valid_before: str = Field(alias="validBefore", pattern=_UINT)
    nonce: str = Field(pattern=r"^0x[0-9a-fA-F]{64}$")


class _ExactPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    authorization: _Authorization
    signature: str = Field(pattern=r"^0x[0-9a-fA-F]{130,8192}$")


@dataclass(frozen=True)
class SignedAuthorization:
    """The EIP-3009 authorization the payer signed, as the payload carries it."""

    payer: str
    to: str
    value: int
    valid_after: int
    valid_before: int
    nonce: str


@dataclass(frozen=True)
class DecodedPayment:
    version: int
    header_name: str
    header_value: str
    # The SDK model (v2 PaymentPayload or v1 PaymentPayloadV1) and its wire dict.
    payload: PaymentPayload | PaymentPayloadV1
    wire: dict[str, Any]
    authorization: SignedAuthorization
    # SHA-256 of the RFC 8785 form of `wire`.
    payload_hash: str

    @property
    def scheme(self) -> str:
        return self.payload.get_scheme()

    @property
    def network(self) -> str:
        return self.payload.get_network()


def _malformed(message: str, reason: str = Reason.INVALID_HEADER) -> PaymentError:
    return PaymentError(reason, message, status=400)


def _unusable(value: Any) -> str | None:
    """Why decoded JSON cannot be taken further, or None. Walked without recursion:
    pydantic, RFC 8785 and the tracking record recurse after it; and PostgreSQL
    text cannot hold U+0000 (the request's tracking record would be refused)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return "holds a NUL character"
        elif isinstance(item, dict | list):
            if depth > MAX_PAYMENT_NESTING:
                return f"nests deeper than {MAX_PAYMENT_NESTING} levels"
            stack.extend((child, depth + 1) for child in ([*item, *item.values()] if isinstance(item, dict) else item))
    return None


def is_url(value: str) -> bool:
    """Whether urlsplit takes it (it refuses, for one, an unclosed IPv6 bracket)."""
    try:
        urlsplit(value)
    except ValueError:
        return False
    return True


def pick_header(payment_signature: str, x_payment: str) -> tuple[str, str] | None:
    """The header the client paid with; v2 wins when both are present."""
    if payment_signature:
        return PAYMENT_SIGNATURE_HEADER, payment_signature
    if x_payment:
        return X_PAYMENT_HEADER, x_payment
    return None


@dataclass(frozen=True)
class Envelope:
    """A payment header decoded as far as every scheme shares: base64 JSON of an
    x402 v1 or v2 payment payload (the SDK model), with its identity hash. What the
    scheme's own `payload` holds is checked by the scheme's decoder."""

    version: int
    header_name: str
    header_value: str
    payload: PaymentPayload | PaymentPayloadV1
    wire: dict[str, Any]
    # SHA-256 of the RFC 8785 form of `wire`.
    payload_hash: str

    @property
    def scheme(self) -> str:
        return self.payload.get_scheme()


def decode_envelope(header_name: str, header_value: str) -> Envelope:
    if len(header_value) > MAX_PAYMENT_HEADER_BYTES:
        raise _malformed(
            f"{header_name} is larger than {MAX_PAYMENT_HEADER_BYTES} bytes", Reason.HEADER_TOO_LARGE
        )
    try:
        raw = base64.b64decode(header_value.strip(), validate=True)
        wire = json.loads(raw.decode("utf-8"))
    except (binascii.Error, ValueError, RecursionError) as exc:
        raise _malformed(f"{header_name} is not base64-encoded JSON") from exc
    if not isinstance(wire, dict):
        raise _malformed(f"{header_name} must encode a JSON object")
    unusable = _unusable(wire)
    if unusable:
        raise _malformed(f"{header_name} {unusable}")
    version = wire.get("x402Version")
    if type(version) is not int or version not in (1, 2):
        raise _malformed(
            f"x402Version must be 1 or 2, got {str(version)[:20]!r}", Reason.UNSUPPORTED_VERSION
        )
    try:
        payload = (PaymentPayloadV1 if version == 1 else PaymentPayload).model_validate(wire)
    except (ValidationError, TypeError, ValueError) as exc:
        raise _malformed(f"{header_name} does not hold a valid x402 v{version} payment") from exc
    if version == 2 and not re.fullmatch(_UINT, payload.accepted.amount):
        raise _malformed(f"{header_name}: accepted.amount must be a string of atomic units")
    if version == 2 and payload.resource is not None and not is_url(payload.resource.url):
        raise _malformed(f"{header_name}: resource.url is not a URL")
    try:
        # The payment's identity is the hash of its RFC 8785 form, which has no
        # integers beyond 2**53, no NaN and no lone surrogates: such a payload is malformed.
        payload_hash = canonical_hash(wire)
    except (rfc8785.CanonicalizationError, UnicodeError) as exc:
        raise _malformed(f"{header_name} holds values JSON cannot carry exactly (RFC 8785)") from exc
    return Envelope(version, header_name, header_value, payload, wire, payload_hash)


def decode_payment(header_name: str, header_value: str) -> DecodedPayment:
    """An EVM exact payment from its header."""
    return exact_payment(decode_envelope(header_name, header_value))


def exact_payment(envelope: Envelope) -> DecodedPayment:
    """The envelope's payload checked strictly as an EVM exact authorization."""
    try:
        exact = _ExactPayload.model_validate(envelope.payload.payload)
    except (ValidationError, TypeError, ValueError) as exc:
        raise _malformed(
            f"{envelope.header_name} does not hold a valid x402 v{envelope.version} exact payment"
        ) from exc
    signed = exact.authorization
    return DecodedPayment(
        version=envelope.version,
        header_name=envelope.header_name,
        header_value=envelope.header_value,
        payload=envelope.payload,
        wire=envelope.wire,
        authorization=SignedAuthorization(
            payer=signed.from_,
            to=signed.to,
            value=int(signed.value),
            valid_after=int(signed.valid_after),
            valid_before=int(signed.valid_before),
            nonce=signed.nonce.lower(),
        ),
        payload_hash=envelope.payload_hash,
    )
