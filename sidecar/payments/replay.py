"""Replay: a payment carrying a payment-identifier id that its payer already paid
with is served again from the first payment, never settled (idempotency.py says
when). Settle of a replay asks no facilitator and answers the first payment's
receipt; Release gives the id back.

A replay's claim is held on the id's binding, not only in memory: any replica
can Settle it (with the payment header) or Release it, and one id serves one
request at a time."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime, timezone
from typing import Any

from . import ledger, records
from .claims import InFlight, closed, token_of
from .codec import DecodedPayment
from .context import PaymentContext
from .errors import LedgerUnavailable, PaymentError, UnknownPayment
from .flow import AuthorizeInput
from .idempotency import Binding, payment_identifier
from .ledger import LedgerEntry
from .lifecycle import Step
from .routes import PricedRoute


async def claim(
    ctx: PaymentContext,
    first: LedgerEntry,
    binding: Binding,
    payment: DecodedPayment,
    req: AuthorizeInput,
    tracking_id: uuid.UUID,
    audit: dict[str, Any],
) -> InFlight | None:
    """Authorize: hold the id for this request's replay of `first`; None while
    another replay holds it."""
    token = uuid.uuid4()
    if not await ctx.identifiers.take_replay(binding, token, tracking_id, ctx.idempotency.replay_timeout_s):
        return None
    flight = _flight(first, token, tracking_id, payment, req.route, req.url, req.request_id)
    ctx.claims.hold(flight)
    fields = records.verification_fields(verified=True, error=None, extra=audit)
    fields["metadata"] = {
        **fields.get("metadata", {}),
        **records.identifier_fields(binding.identifier, replay_of=first.payment_id)["metadata"],
    }
    ctx.tracker.record(tracking_id, Step.VERIFICATION, fields)
    return flight


def _flight(
    first: LedgerEntry,
    token: uuid.UUID,
    tracking_id: uuid.UUID | None,
    payment: DecodedPayment,
    route: PricedRoute,
    url: str,
    request_id: str,
) -> InFlight:
    seen = dataclasses.replace(first, claim_token=token, tracking_id=tracking_id)
    return InFlight(seen, payment, route, url, request_id, redeem=False, replay_of=first)


async def adopt(
    ctx: PaymentContext,
    first: LedgerEntry,
    claim_token: str,
    payment: DecodedPayment | None,
    route: PricedRoute,
    request_id: str,
) -> InFlight | None:
    """Settle on a replica that did not authorize the replay: the replay this
    token holds, when the client's header is a payment with the same id from
    the same payer; None when the token holds no replay of `first`."""
    token = token_of(claim_token)
    binding = await ctx.identifiers.replay_held(first.payment_id, token) if token is not None else None
    if binding is None:
        return None
    try:
        identifier = payment_identifier(payment) if payment is not None else None
    except PaymentError:
        identifier = None
    if identifier != binding.identifier or payment.authorization.payer.lower() != binding.payer:
        # Only a payment with the id, from its payer, lets this replica serve the replay.
        raise UnknownPayment(first.payment_id)
    return _flight(first, token, binding.replay_tracking_id, payment, route, first.resource, request_id)


async def serve(
    ctx: PaymentContext, flight: InFlight, first: LedgerEntry, response_status: int, response_time_ms: int
) -> str:
    """Settle of a replay of `first`: give the id back, record that the first
    payment has now been delivered, and return its transaction. No facilitator
    is asked."""
    entry = flight.entry
    try:
        ended = await ctx.identifiers.end_replay(entry.payment_id, entry.claim_token)
    except LedgerUnavailable:
        ctx.claims.hold(flight)  # nothing was served yet: a retry may use the claim
        raise
    if not ended:
        raise closed("the replay was released, or taken over after its timeout")
    if first.state == ledger.SETTLED_UNSERVED:
        # Delivered at last. Under the first payment's own token: a redeem of it
        # meanwhile moved the row on, and then nothing changes here.
        served_at = datetime.now(timezone.utc)
        await ctx.ledger.transition(
            first.payment_id,
            first.claim_token,
            (ledger.SETTLED_UNSERVED,),
            ledger.SETTLED,
            served=True,
            served_at=served_at,
        )
    if entry.tracking_id is not None:
        ctx.tracker.record(
            entry.tracking_id, Step.SETTLEMENT, records.replay_fields(first, response_status, response_time_ms)
        )
    return entry.transaction


async def release(
    ctx: PaymentContext, entry: LedgerEntry, reason: str, response_status: int, response_time_ms: int
) -> bool:
    """Give the id back after a replay that was not served; False when the token
    holds no replay (settled or released already)."""
    if not await ctx.identifiers.end_replay(entry.payment_id, entry.claim_token):
        return False
    if entry.tracking_id is not None:
        records.record_release(ctx.tracker, entry.tracking_id, reason, entry.state, response_status, response_time_ms)
    return True


async def held(ctx: PaymentContext, first: LedgerEntry, claim_token: str) -> LedgerEntry | None:
    """Release on a replica that did not authorize the replay: the first
    payment's row as the replay this token holds sees it, or None."""
    token = token_of(claim_token)
    binding = await ctx.identifiers.replay_held(first.payment_id, token) if token is not None else None
    if binding is None:
        return None
    return dataclasses.replace(first, claim_token=token, tracking_id=binding.replay_tracking_id)
