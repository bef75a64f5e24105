"""The payment ledger's states and row. One row per payment identity; the row is
claimed with a unique key so a payment settles once and serves once."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

VERIFIED = "verified"
SETTLING = "settling"
SETTLED = "settled"
SETTLED_UNSERVED = "settled_unserved"
REDEEMING = "redeeming"
UNKNOWN = "unknown"
FAILED = "failed"
RELEASED = "released"

# Nothing moved and the authorization is still good: the same payment may be claimed again.
RECLAIMABLE = (RELEASED, FAILED)
# A settle was (or may have been) sent and the outcome is not known yet.
UNRESOLVED = (SETTLING, UNKNOWN)


@dataclass(frozen=True)
class LedgerEntry:
    payment_id: str
    state: str
    claim_token: uuid.UUID
    route_key: str
    resource: str
    scheme: str
    network: str
    asset: str
    pay_to: str
    amount: int
    payer: str
    nonce: str
    valid_before: int
    x402_version: int
    facilitator: str
    requirements: dict[str, Any]
    payload_hash: str
    requirements_hash: str
    tracking_id: uuid.UUID | None = None
    transaction: str = ""
    settle_reason: str = ""
    reconciled_by: str = ""
    served: bool = False
    settle_attempts: int = 0
