"""Redeem: a payment settled but never delivered (`settled_unserved`: the client
went away, the sidecar crashed) is served once more to the same payment header
on the same route, without a second settle (DESIGN §4 rule 4)."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime, timezone
from typing import Any

from . import ledger, records
from .claims import InFlight, closed, move_taken
from .codec import DecodedPayment
from .context import PaymentContext
from .flow import AuthorizeInput
from .ledger import LedgerEntry
from .lifecycle import Step


async def claim(
    ctx: PaymentContext,
    unserved: LedgerEntry,
    payment: DecodedPayment,
    req: AuthorizeInput,
    tracking_id: uuid.UUID,
    audit: dict[str, Any],
) -> InFlight | None:
    """Authorize: claim the settled_unserved payment for this request, or None
    when it is not redeemable (another payload, redeemed meanwhile)."""
    entry = await ctx.ledger.claim_redeem(unserved.payment_id, payment.payload_hash, uuid.uuid4())
    if entry is None:
        return None
    # The redeem is this request's story: its record, not the first one's.
    entry = dataclasses.replace(entry, tracking_id=tracking_id)
    flight = InFlight(entry, payment, req.route, req.url, req.request_id, redeem=True)
    ctx.claims.hold(flight)
    fields = records.verification_fields(verified=True, error=None, extra=audit)
    fields["metadata"] = {"redeem": {"payment_id": entry.payment_id}}
    ctx.tracker.record(tracking_id, Step.VERIFICATION, fields)
    return flight


async def serve(ctx: PaymentContext, flight: InFlight, response_status: int, response_time_ms: int) -> str:
    """Settle of a redeem claim: record the delivery (no facilitator is asked) and
    return the transaction that paid."""
    entry = flight.entry
    served_at = datetime.now(timezone.utc)
    done = await move_taken(
        ctx.ledger, ctx.claims, flight, (ledger.REDEEMING,), ledger.SETTLED, served=True, served_at=served_at
    )
    if done is None:
        raise closed("released already")
    ctx.tracker.record(
        entry.tracking_id, Step.SETTLEMENT, records.redeem_fields(entry, response_status, response_time_ms)
    )
    return entry.transaction
