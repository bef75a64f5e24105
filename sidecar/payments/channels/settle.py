"""Settle and Release of a channel request (the binding's "Request Processing",
steps 3 and 4).

Settle, after a 2xx answer of the handler: a deposit is settled at the facilitator
that verified it (the deposit transaction); then the charge (the caller's, at most
the price, else the price) is committed with the voucher that covers it, in one
conditional UPDATE under the request's hold: durable before the content may
leave, and impossible twice. No facilitator is asked for a voucher. Release:
nothing changes but the hold; the same voucher can be sent again. A Release
reporting that a settled answer never reached the client takes its charge back
while nothing happened on the channel since (never a charge for an answer not
served).

A request verified by another replica is settled from the channel's row (its
hold carries the voucher); a deposit also needs the client's payment header
(Settle carries it), which must bring the voucher the channel is held for."""

from __future__ import annotations

import logging
from typing import Any

from x402.mechanisms.evm.batch_settlement.constants import SCHEME_BATCH_SETTLEMENT

from ...constants import RELEASE_NOT_DELIVERED, Reason
from .. import answers
from .. import records as tracking
from ..claims import check_token, closed
from ..context import PaymentContext
from ..codec import decode_envelope
from ..errors import CallerError, LedgerUnavailable, PaymentError, RouteError, UnknownPayment
from ..flow import ReleaseInput, SettleInput, SettleResult
from ..lifecycle import Step
from ..settlement import ask_facilitator
from ..verification import sanitize_reason
from . import receipts, records, vouchers
from .accounting import charge_of
from .room import ChannelFlight, ChannelRoom, Delivery, parse_payment_id
from .state import DEPOSIT, VOUCHER, Channel, Mirror, Reservation
from .vouchers import ChannelPayment

log = logging.getLogger(__name__)

RELEASED = "released"


class _NotCharged(Exception):
    """The request is not charged: nothing may be served. `status` 402 when nothing
    was paid, 503 when a deposit is in doubt."""

    def __init__(self, reason: str, status: int, transaction: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.transaction = transaction


async def settle(ctx: PaymentContext, req: SettleInput) -> SettleResult:
    room = _room(ctx)
    flight = await _take(ctx, room, req.payment_id, req.claim_token, req.header)
    status, elapsed_ms = req.response_status, req.response_time_ms
    if not 200 <= status < 300:
        await _release(ctx, room, flight, f"handler_status_{status}", status, elapsed_ms)
        raise RouteError(Reason.INVALID_SETTLE, "Settle is only for 2xx handler answers; the channel was released")
    try:
        charge = charge_of(req.charge, flight.amount, flight.charged, flight.max_claimable)
    except CallerError:
        room.flights.hold(flight)  # nothing moved: the caller may Settle again, or Release
        raise
    try:
        transaction, mirror = await _deposited(ctx, flight) if flight.kind == DEPOSIT else ("", None)
        committed = await room.store.commit(
            flight.channel_id, flight.token, flight.charged, charge, (flight.max_claimable, flight.signature), mirror
        )
    except LedgerUnavailable:
        room.flights.hold(flight)  # nothing was served: a retry of the Settle can still commit
        raise
    except _NotCharged as refused:
        await room.free(flight.channel_id, flight.token)
        return _not_charged(ctx, flight, refused, status, elapsed_ms)
    if committed is None:
        # Our hold ran out and another request took the channel: not charged, not served.
        return _not_charged(ctx, flight, _NotCharged(Reason.CLAIM_CLOSED, 402), status, elapsed_ms)
    room.on_charge(committed, charge)
    return _charged(ctx, flight, committed, charge, transaction, status, elapsed_ms)


async def release(ctx: PaymentContext, req: ReleaseInput) -> str:
    room = _room(ctx)
    if req.reason == RELEASE_NOT_DELIVERED:
        delivery = room.deliveries.take(req.claim_token)
        if delivery is not None and delivery.flight.payment_id == req.payment_id:
            return await _uncharge(ctx, room, delivery, req)
    flight = await _take(ctx, room, req.payment_id, req.claim_token)
    await _release(ctx, room, flight, req.reason, req.response_status, req.response_time_ms)
    return RELEASED


async def _uncharge(ctx: PaymentContext, room: ChannelRoom, delivery: Delivery, req: ReleaseInput) -> str:
    """The paid answer never reached the client: its charge is taken back, so the
    client's next voucher (it never saw the receipt) matches again. Refused once
    anything happened on the channel since: the charge then stands."""
    flight = delivery.flight
    taken_back = await room.store.uncharge(flight.channel_id, delivery.charged, delivery.charge, flight.max_claimable)
    if not taken_back:
        raise closed("the channel moved on since its charge; the charge stands")
    _track(ctx, flight, Step.RELEASE, tracking.release_fields(req.reason, RELEASED, req.response_status, req.response_time_ms))
    log.info("channel charge taken back (not delivered) payer=%s channel=%s", flight.payer, flight.channel_id)
    return RELEASED


async def release_all(ctx: PaymentContext, reason: str) -> int:
    """Shutdown: give back every channel a request of ours still holds."""
    room = ctx.channels
    if room is None:
        return 0
    tokens = room.flights.tokens()
    for token in tokens:
        flight = room.flights.take(token)
        if flight is not None:
            await _release(ctx, room, flight, reason, 0, 0)
    return len(tokens)


def _room(ctx: PaymentContext) -> ChannelRoom:
    if ctx.channels is None:
        raise UnknownPayment("channel")
    return ctx.channels


async def _take(
    ctx: PaymentContext, room: ChannelRoom, pid: str, claim_token: str, header: tuple[str, str] | None = None
) -> ChannelFlight:
    """The request to settle or release, for the holder of its claim token only:
    the one held here, else one another replica verified."""
    flight = room.flights.get(claim_token)
    if flight is None or flight.payment_id != pid:
        flight = await _adopt(ctx, room, pid, header)
    check_token(flight.token, claim_token)
    room.flights.take(claim_token)
    return flight


async def _adopt(
    ctx: PaymentContext, room: ChannelRoom, pid: str, header: tuple[str, str] | None
) -> ChannelFlight:
    """A request another replica verified: its channel's hold carries all a voucher's
    commit needs; a deposit's settle also needs its payload, from the client's header."""
    parsed = parse_payment_id(pid)
    if parsed is None:
        raise UnknownPayment(pid)
    channel_id, max_claimable = parsed
    channel = await room.store.get(channel_id)
    hold = channel.reservation if channel is not None else None
    if hold is None or hold.max_claimable != max_claimable:
        if channel is None:
            raise UnknownPayment(pid)
        raise closed("the channel is not held for this voucher (settled, released or expired)")
    payment = _held_deposit(channel_id, hold, header) if hold.kind == DEPOSIT else None
    if hold.kind not in (VOUCHER, DEPOSIT):
        raise UnknownPayment(pid)
    return ChannelFlight(
        payment_id=pid,
        token=hold.token,
        kind=hold.kind,
        channel_id=channel_id,
        network=channel.network,
        payer=channel.config.payer,
        charged=channel.charged,
        amount=hold.amount,
        max_claimable=hold.max_claimable,
        signature=hold.signature,
        tracking_id=hold.tracking_id,
        payment=payment,
        offer=payment.accepted if payment is not None else None,
        # Any facilitator may settle a deposit: its ERC-3009 nonce makes a second
        # settle fail, and an ambiguous answer is decided by reading the chain.
        facilitator=_first_facilitator(ctx) if payment is not None else "",
    )


def _held_deposit(channel_id: str, hold: Reservation, header: tuple[str, str] | None) -> ChannelPayment | None:
    """The deposit the channel is held for, from the client's header; None without
    one or when the header brings another payment (then it can be released, not
    settled)."""
    if header is None:
        return None
    try:
        payment = vouchers.decode(decode_envelope(*header))
    except PaymentError:
        return None
    same = (
        payment.kind == DEPOSIT
        and payment.channel_id == channel_id
        and payment.max_claimable == hold.max_claimable
        and payment.signature.lower() == hold.signature.lower()
    )
    return payment if same else None


def _first_facilitator(ctx: PaymentContext) -> str:
    candidates = ctx.facilitators.candidates(())
    return candidates[0].url if candidates else ""


async def _deposited(ctx: PaymentContext, flight: ChannelFlight) -> tuple[str, Mirror | None]:
    """Settle the deposit at the facilitator that verified it: its transaction and
    the channel's state after it. Ambiguous answers are retried there with the same
    payload (the deposit's ERC-3009 nonce makes that safe), then the chain is asked
    whether the channel now covers the voucher."""
    if flight.deposited is not None:
        return flight.deposited
    room, payment = _room(ctx), flight.payment
    if payment is None or flight.offer is None:
        raise UnknownPayment(flight.payment_id)
    body = {
        "x402Version": 2,
        "paymentPayload": payment.envelope.wire,
        "paymentRequirements": flight.offer.model_dump(by_alias=True, exclude_none=True),
    }
    learned = await ask_facilitator(ctx.facilitators.get(flight.facilitator), body, room.policy.retries)
    flight.settle_attempts = [attempt.as_record() for attempt in learned.attempts]
    if learned.settled:
        extra = (learned.data or {}).get("extra")
        flight.deposited = (learned.transaction, Mirror.of(extra.get("channelState") if isinstance(extra, dict) else None))
        return flight.deposited
    if learned.refused and not learned.ambiguous:
        raise _NotCharged(sanitize_reason(learned.facilitator_reason, Reason.SETTLEMENT_FAILED), 402, learned.transaction)
    on_chain = await ctx.chain.channel(flight.network, flight.channel_id)
    if on_chain is None or on_chain.balance < flight.max_claimable:
        raise _NotCharged(Reason.PAYMENT_IN_DOUBT, 503, learned.transaction)
    flight.deposited = (learned.transaction, on_chain)
    return flight.deposited


def _charged(
    ctx: PaymentContext,
    flight: ChannelFlight,
    channel: Channel,
    charge: int,
    transaction: str,
    status: int,
    elapsed_ms: int,
) -> SettleResult:
    attempts = flight.settle_attempts
    fields = records.charged_fields(
        flight.record,
        channel,
        charge,
        transaction=transaction,
        facilitator=flight.facilitator,
        response_status=status,
        response_time_ms=elapsed_ms,
    )
    if attempts:
        fields["metadata"] = {"settle_attempts": attempts}
    _track(ctx, flight, Step.SETTLEMENT, fields)
    _track(ctx, flight, Step.FINALIZE, tracking.finalize_fields(status, elapsed_ms))
    _event(ctx, flight, "payment_settled", transaction=transaction, charge=str(charge), cumulative=str(channel.charged))
    headers = receipts.charged(channel, charge, transaction=transaction, deposit=flight.payment.deposit if flight.payment else 0)
    _room(ctx).deliveries.add(Delivery(flight, charge, channel.charged))
    return SettleResult(True, headers, transaction, flight.payer, flight.network)


def _not_charged(
    ctx: PaymentContext, flight: ChannelFlight, refused: _NotCharged, status: int, elapsed_ms: int
) -> SettleResult:
    reason = refused.reason
    receipt = receipts.failed(flight.network, flight.payer, reason, refused.transaction)
    if refused.status == 503:
        answer = answers.payment_in_doubt(flight.request_id, ctx.policy.retry_after_s, headers=receipt)
    elif flight.route is not None:
        answer = answers.payment_required(flight.route, flight.url, reason, 2, batch=flight.offer)
        answer = answers.HttpAnswer(answer.status, {**answer.headers, **receipt}, answer.body)
    else:
        answer = answers.error_answer(402, reason, "the request was not charged; pay again", flight.request_id, headers=receipt)
    attempts = flight.settle_attempts
    fields = records.not_charged_fields(
        flight.network, flight.payer, reason, refused.transaction, flight.facilitator, status, elapsed_ms
    )
    if attempts:
        fields["metadata"] = {"settle_attempts": attempts}
    _track(ctx, flight, Step.SETTLEMENT, fields)
    _track(ctx, flight, Step.FINALIZE, tracking.finalize_fields(answer.status, elapsed_ms))
    _event(ctx, flight, "payment_settlement_failed", reason=reason)
    log.warning("channel request not charged payer=%s channel=%s reason=%s", flight.payer, flight.channel_id, reason)
    return SettleResult(False, {}, refused.transaction, flight.payer, flight.network, reason, answer)


async def _release(
    ctx: PaymentContext, room: ChannelRoom, flight: ChannelFlight, reason: str, status: int, elapsed_ms: int
) -> None:
    await room.free(flight.channel_id, flight.token)
    _track(ctx, flight, Step.RELEASE, tracking.release_fields(reason, RELEASED, status, elapsed_ms))
    _track(ctx, flight, Step.FINALIZE, tracking.finalize_fields(status, elapsed_ms))


def _track(ctx: PaymentContext, flight: ChannelFlight, step: Step, fields: dict[str, Any]) -> None:
    if flight.tracking_id is not None:
        ctx.tracker.record(flight.tracking_id, step, fields)


def _event(ctx: PaymentContext, flight: ChannelFlight, name: str, **attributes: Any) -> None:
    ctx.telemetry.event(
        name,
        request_id=flight.request_id,
        route=flight.route_key,
        network=flight.network,
        scheme=SCHEME_BATCH_SETTLEMENT,
        kind=flight.kind,
        payer=flight.payer,
        **attributes,
    )
