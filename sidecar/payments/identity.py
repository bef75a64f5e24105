"""Payment identity and audit hashes: SHA-256 of RFC 8785 canonical JSON, so the
same payment always hashes the same and nothing raw needs to be stored."""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING, Any

import rfc8785

if TYPE_CHECKING:  # codec hashes with canonical_hash below
    from .codec import DecodedPayment


# The shape payment_id() produces, and "pid:<payment-identifier id>", which named
# a payment carrying one before ids were bound per payer (idempotency.py): claims
# made then are still settled or released by their id. Anything else names no
# payment of ours.
_PAYMENT_ID = re.compile(r"^(pid:[A-Za-z0-9_-]{16,128}|sha256:[0-9a-f]{64})$")


def is_payment_id(value: str) -> bool:
    return bool(_PAYMENT_ID.match(value))


def canonical_hash(value: Any) -> str:
    return hashlib.sha256(rfc8785.dumps(value)).hexdigest()


def header_hash(header_value: str) -> str:
    return hashlib.sha256(header_value.encode("utf-8")).hexdigest()


def payment_id(payment: DecodedPayment) -> str:
    """The payload hash: one ledger row per signed payload. A payment-identifier
    id names a purchase, which a re-signed retry repeats with another payload;
    it is bound to its payer in a room of its own (idempotency.py)."""
    return "sha256:" + payment.payload_hash
