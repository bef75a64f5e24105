"""Settle: the claim's holder asks, after a 2xx answer of the handler, for the
payment to be settled and the content served (DESIGN §4 rules 2-4).

The claim moves to `settling` (a durable commit) before anything is sent; the
settle goes to the facilitator that verified (settlement.py); the content may
leave only when the payment settled and the ledger recorded its delivery. A
failed settle is a 402 with a receipt saying why; one in doubt is a 503 asking
for the same header again. A redeem claim is served without a settle
(redeem.py), and so is a replay of a payment its payment-identifier id paid
for (replay.py); a claim another replica verified is adopted with the client's
payment header."""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

from ..constants import Reason
from . import answers, ledger, records, redeem, replay
from .binding import forwarded_payload
from .claims import InFlight, check_holder, closed, move_taken
from .codec import decode_payment
from .context import PaymentContext
from .errors import PaymentError, RouteError, UnknownPayment
from .flow import SettleInput, SettleResult
from .identity import is_payment_id, payment_id
from .ledger import LedgerEntry
from .lifecycle import Step
from .release import release_flight
from .routes import PricedRoute
from .settlement import SettleOutcome, settle_payment
from .used_nonce import ExpectedTransfer

log = logging.getLogger(__name__)


async def settle(ctx: PaymentContext, req: SettleInput) -> SettleResult:
    flight = await _take_claim(ctx, req)
    response_status, response_time_ms = req.response_status, req.response_time_ms
    if not 200 <= response_status < 300:
        await release_flight(ctx, flight, f"handler_status_{response_status}", response_status, response_time_ms)
        raise RouteError(Reason.INVALID_SETTLE, "Settle is only for 2xx handler answers; the claim was released")
    if flight.replay_of is not None:
        transaction = await replay.serve(ctx, flight, flight.replay_of, response_status, response_time_ms)
        return _success(ctx, flight, transaction, response_status, response_time_ms)
    if flight.redeem:
        transaction = await redeem.serve(ctx, flight, response_status, response_time_ms)
        return _success(ctx, flight, transaction, response_status, response_time_ms)
    await _start_settling(ctx, flight)
    outcome = await _settle_on_facilitator(ctx, flight)
    fields = records.settlement_fields(flight.entry, outcome, response_status, response_time_ms)
    ctx.tracker.record(flight.entry.tracking_id, Step.SETTLEMENT, fields)
    if outcome.status == ledger.SETTLED:
        return await _settled(ctx, flight, outcome, response_status, response_time_ms)
    return await _not_settled(ctx, flight, outcome, response_time_ms)


async def _take_claim(ctx: PaymentContext, req: SettleInput) -> InFlight:
    """The claim to settle, for its holder only: the one held here, else one
    another replica verified. What is held here under another token is an older
    claim of the payment, closed elsewhere (and claimed again there): the ledger
    decides, and it is forgotten."""
    pid = req.payment_id
    if not is_payment_id(pid):
        raise UnknownPayment(pid)
    flight = ctx.claims.take_held(pid, req.claim_token)
    if flight is not None:
        return flight
    flight = await _adopt(ctx, pid, req.claim_token, req.header, req.request_id)
    if flight.replay_of is None:
        ctx.claims.drop_older(pid)
    return flight


async def _adopt(
    ctx: PaymentContext, pid: str, claim_token: str, header: tuple[str, str] | None, request_id: str
) -> InFlight:
    """Settle a payment verified by another replica, for the holder of its claim:
    the client's header is re-decoded and must hash to the claimed payment."""
    entry = await ctx.ledger.get(pid)
    if entry is None:
        raise UnknownPayment(pid)
    try:
        payment = decode_payment(*header) if header is not None else None
    except PaymentError:
        payment = None
    replayed = await replay.adopt(ctx, entry, claim_token, payment, _route_of(entry), request_id)
    if replayed is not None:
        return replayed
    check_holder(entry, claim_token)
    if entry.state not in (ledger.VERIFIED, ledger.REDEEMING):
        raise closed(f"it is {entry.state}")
    if payment is None or payment_id(payment) != pid or payment.payload_hash != entry.payload_hash:
        # Only the payment header lets this replica settle what another one verified.
        raise UnknownPayment(pid)
    redeem = entry.state == ledger.REDEEMING
    return InFlight(entry, payment, _route_of(entry), entry.resource, request_id, redeem=redeem)


def _route_of(entry: LedgerEntry) -> PricedRoute:
    """The route a ledger row was claimed for, as far as the row tells it."""
    return PricedRoute(
        key=entry.route_key,
        amount=entry.amount,
        asset=entry.asset,
        asset_name=str(entry.requirements.get("extra", {}).get("name", "")),
        asset_version=str(entry.requirements.get("extra", {}).get("version", "")),
        pay_to=entry.pay_to,
        network=entry.network,
        description="",
        mime_type="application/json",
        facilitators=(),
        max_timeout_seconds=int(entry.requirements.get("maxTimeoutSeconds", 60)),
    )


async def _start_settling(ctx: PaymentContext, flight: InFlight) -> None:
    """verified -> settling, durably, before any settle is sent: from here on a
    crash leaves the payment in doubt, for the recovery job to ask the chain."""
    attempts = flight.entry.settle_attempts + 1
    settling = await move_taken(
        ctx.ledger, ctx.claims, flight, (ledger.VERIFIED,), ledger.SETTLING, settle_attempts=attempts
    )
    if settling is None:
        raise closed("released, settled or being settled already")


async def _settle_on_facilitator(ctx: PaymentContext, flight: InFlight) -> SettleOutcome:
    entry = flight.entry
    body = {
        "x402Version": flight.payment.version,
        "paymentPayload": forwarded_payload(flight.payment, flight.route, flight.url),
        "paymentRequirements": entry.requirements,
    }
    facilitator = ctx.facilitators.get(entry.facilitator)
    return await settle_payment(facilitator, body, ExpectedTransfer.of(entry), ctx.chain, ctx.policy)


async def _settled(
    ctx: PaymentContext, flight: InFlight, outcome: SettleOutcome, response_status: int, response_time_ms: int
) -> SettleResult:
    """Paid: served once the ledger records the delivery."""
    entry = flight.entry
    done = await ctx.ledger.transition(
        entry.payment_id,
        entry.claim_token,
        (ledger.SETTLING,),
        ledger.SETTLED,
        transaction=outcome.transaction or None,
        reconciled_by=outcome.source,
        served=True,
        served_at=datetime.now(timezone.utc),
    )
    if done is None:
        # The ledger could not record the delivery: don't serve; recovery marks
        # the row settled_unserved and the payer redeems it with the same header.
        return _failure(ctx, flight, Reason.PAYMENT_IN_DOUBT, outcome.transaction, 503, response_time_ms, outcome)
    return _success(ctx, flight, outcome.transaction, response_status, response_time_ms)


async def _not_settled(
    ctx: PaymentContext, flight: InFlight, outcome: SettleOutcome, response_time_ms: int
) -> SettleResult:
    """Failed (nothing was paid) or in doubt: recorded, never served."""
    entry = flight.entry
    await ctx.ledger.transition(
        entry.payment_id,
        entry.claim_token,
        (ledger.SETTLING,),
        outcome.status,  # FAILED or UNKNOWN
        transaction=outcome.transaction or None,
        settle_reason=outcome.record_reason,
    )
    status = 402 if outcome.status == ledger.FAILED else 503  # nothing was paid | in doubt
    return _failure(ctx, flight, outcome.reason, outcome.transaction, status, response_time_ms, outcome)


def _success(ctx: PaymentContext, flight: InFlight, transaction: str, status: int, elapsed_ms: int) -> SettleResult:
    entry = flight.entry
    ctx.tracker.record(entry.tracking_id, Step.FINALIZE, records.finalize_fields(status, elapsed_ms))
    _event(ctx, "payment_settled", flight, transaction=transaction, payer=entry.payer, amount=str(entry.amount))
    log.info("payment settled payer=%s transaction=%s", entry.payer, transaction)
    headers = answers.receipt_headers(
        flight.payment.version, success=True, network=entry.network, transaction=transaction, payer=entry.payer
    )
    return SettleResult(True, headers, transaction, entry.payer, entry.network)


def _failure(
    ctx: PaymentContext,
    flight: InFlight,
    reason: str,
    transaction: str,
    status: int,
    elapsed_ms: int,
    outcome: SettleOutcome,
) -> SettleResult:
    entry = flight.entry
    if status == 402:
        answer = answers.settlement_failed(
            flight.route,
            flight.url,
            flight.payment.version,
            reason=reason,
            network=entry.network,
            transaction=transaction,
            payer=entry.payer,
        )
    elif reason == Reason.PAYMENT_IN_DOUBT:
        receipt = answers.receipt_headers(
            flight.payment.version,
            success=False,
            network=entry.network,
            transaction=transaction,
            payer=entry.payer,
            reason=reason,
        )
        answer = answers.payment_in_doubt(flight.request_id, ctx.policy.retry_after_s, headers=receipt)
    else:
        answer = answers.error_answer(
            status, reason, "the payment could not be completed; retry later", flight.request_id
        )
    ctx.tracker.record(entry.tracking_id, Step.FINALIZE, records.finalize_fields(answer.status, elapsed_ms))
    attempts = [a.reason for a in outcome.attempts if a.reason]
    _event(ctx, "payment_settlement_failed", flight, reason=reason, attempts=",".join(attempts))
    log.warning("settlement failed payer=%s reason=%s transaction=%s", entry.payer, reason, transaction)
    return SettleResult(False, {}, transaction, entry.payer, entry.network, reason, answer)


def _event(ctx: PaymentContext, name: str, flight: InFlight, **attributes: Any) -> None:
    ctx.telemetry.event(
        name,
        request_id=flight.request_id,
        route=flight.entry.route_key,
        network=flight.entry.network,
        facilitator=flight.entry.facilitator,
        **attributes,
    )
