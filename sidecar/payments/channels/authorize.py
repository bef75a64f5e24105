"""Authorize of a batch-settlement payment (the binding's "Request Processing",
step 1, and the cooperative refund flow).

The payment is decoded and bound to the route's offer before anything else.
Then the request holds its channel (one request per channel at a time, across
replicas; another waits a bounded time, then channel_busy), and:

- a voucher or deposit must sign what we charged so far plus the price, else a
  corrective 402 with the channel as we hold it;
- a deposit, a refund, a voucher of an ERC-1271 payer, a voucher whose channel we
  have not seen (our state lost: the baseline is what the chain says was claimed)
  or whose mirror is stale is verified at a facilitator, and the mirror refreshed;
  a voucher of an EOA payer authorizer with a fresh mirror is verified here,
  without a facilitator;
- a paid payment answers Verified (the handler runs, then Settle commits the
  charge or Release gives the channel back); a refund is carried out here and
  answered Completed: no handler runs.

On any refusal the channel is given back unchanged."""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from typing import Any

from x402.mechanisms.evm.batch_settlement import errors as codes
from x402.mechanisms.evm.batch_settlement.constants import SCHEME_BATCH_SETTLEMENT
from x402.schemas import PaymentRequirements

from ...constants import Reason
from .. import records as tracking
from ..answers import IN_DOUBT_MESSAGE, HttpAnswer
from ..codec import Envelope
from ..context import PaymentContext
from ..errors import PaymentError
from ..flow import AuthorizeInput, Completed, Verified
from ..idempotency import refuse_on_channel
from ..lifecycle import Step
from ..ports import Facilitator
from ..routes import PricedRoute
from ..settlement import ask_facilitator
from ..verification import sanitize_reason, verify_with_fallback
from . import receipts, records, refunds, vouchers
from .accounting import check_cumulative
from .room import ChannelFlight, ChannelRoom, payment_id
from .state import DEPOSIT, REFUND, Channel, Mirror, Reservation
from .terms import ChannelTerms, corrective, requirements
from .vouchers import ChannelPayment
from .withdrawals import check_claimable_in_time

log = logging.getLogger(__name__)

_JSON = "application/json"


async def offer(ctx: PaymentContext, route: PricedRoute) -> PaymentRequirements | None:
    """The route's batch-settlement offer for its 402; None when it makes none."""
    if ctx.channels is None or not route.offers(SCHEME_BATCH_SETTLEMENT) or route.payment_identifier_required:
        return None  # a route requiring payment identifiers takes exact payments only (idempotency.py)
    terms = await ctx.channels.authorizers.terms(route)
    return requirements(route, terms) if terms is not None else None


@dataclass
class _Call:
    """One channel payment on its way through Authorize."""

    ctx: PaymentContext
    room: ChannelRoom
    req: AuthorizeInput
    payment: ChannelPayment
    terms: ChannelTerms
    offer: PaymentRequirements
    reservation: Reservation
    audit: Any  # authorize._Audit: what the call learned, for its tracking record
    verified_by: Facilitator | None = None

    @property
    def route(self) -> PricedRoute:
        return self.req.route

    @property
    def amount(self) -> int:
        """The most this request may be charged: the price, nothing for a refund."""
        return 0 if self.payment.kind == REFUND else self.route.amount

    def body(self, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        """A facilitator request for this payment (its payload replaced by `payload`)."""
        wire = self.payment.envelope.wire
        if payload is not None:
            wire = {**wire, "payload": payload}
        return {
            "x402Version": 2,
            "paymentPayload": wire,
            "paymentRequirements": self.offer.model_dump(by_alias=True, exclude_none=True),
        }


async def authorize(
    ctx: PaymentContext, tracking_id: uuid.UUID, req: AuthorizeInput, envelope: Envelope, audit: Any
) -> Verified | Completed:
    room, route = ctx.channels, req.route
    if room is None or not route.offers(SCHEME_BATCH_SETTLEMENT):
        raise PaymentError(Reason.SCHEME_MISMATCH, f"scheme {SCHEME_BATCH_SETTLEMENT!r} is not accepted here")
    with ctx.telemetry.step("x402 decode and bind"):
        refuse_on_channel(envelope, route)
        payment = vouchers.decode(envelope)
        audit.fields.update(records.payment_fields(payment, route), payload_hash=envelope.payload_hash)
        terms = await room.authorizers.terms(route)
        if terms is None:
            raise PaymentError(Reason.VERIFY_UNAVAILABLE, "no receiver authorizer is available for channels", 503)
        vouchers.check_terms(payment, route, terms)
    reservation = Reservation(
        token=uuid.uuid4(),
        kind=payment.kind,
        amount=0 if payment.kind == REFUND else route.amount,
        max_claimable=payment.max_claimable,
        signature=payment.signature,
        tracking_id=tracking_id,
    )
    call = _Call(ctx, room, req, payment, terms, requirements(route, terms), reservation, audit)
    channel = await _held_and_verified(call)
    try:
        if payment.kind == REFUND:
            return await _refund(call, channel)
    except BaseException:
        await _give_back(call)
        raise
    return _verified(call, channel)


async def _held_and_verified(call: _Call) -> Channel:
    """The channel, held by this request, with the payment verified against it."""
    while True:
        channel = await _hold(call)
        if channel is not None:
            try:
                return await _verify_known(call, channel)
            except BaseException:
                await _give_back(call)
                raise
        opened = await _first_sight(call)
        if opened is not None:
            return opened
        # Another request opened the channel meanwhile: wait for it like for any holder.


async def _hold(call: _Call) -> Channel | None:
    """Hold the channel for this request, waiting a bounded time while another
    request holds it; None when we have no such channel."""
    room, channel_id = call.room, call.payment.channel_id
    policy = room.policy
    deadline = policy.clock() + policy.busy_wait_s
    pause = 0.01
    while True:
        held = await room.store.reserve(channel_id, call.reservation, policy.hold_s)
        if held is not None:
            return held
        if await room.store.get(channel_id) is None:
            return None
        left = deadline - policy.clock()
        if left <= 0:
            raise PaymentError(codes.ERR_CHANNEL_BUSY, "another request on this channel is under way; retry shortly")
        await policy.sleep(min(pause, left))
        pause = min(pause * 2, 0.1)


async def _first_sight(call: _Call) -> Channel | None:
    """A channel we hold no state for: a new one (its deposit), or one whose state we
    lost. The facilitator verifies it and tells what the chain says was claimed,
    which is our baseline (never the client's voucher). None when another request
    opened it meanwhile."""
    mirror = await _verify_at_facilitator(call)
    payment = call.payment
    channel = Channel(
        channel_id=payment.channel_id,
        network=call.route.network,
        config=payment.config,
        charged=mirror.total_claimed,
        signed_max_claimable=0,
        voucher_signature=None,
        mirror=mirror,
    )
    _check_cumulative(call, channel)
    vouchers.check_covered(payment, mirror, call.amount)
    _check_time_left(call, channel)
    return await call.room.store.open(channel, call.reservation, call.room.policy.hold_s)


async def _verify_known(call: _Call, channel: Channel) -> Channel:
    payment, policy = call.payment, call.room.policy
    _check_cumulative(call, channel)
    if policy.trusts_mirror(channel) and vouchers.local_verification_allowed(payment):
        # The mirror of the contract's fields stands in for a facilitator call.
        call.ctx.telemetry.note("cache hit", cache="channel_mirror")
        vouchers.check_signature(payment, call.route.network)
        vouchers.check_covered(payment, channel.mirror, call.amount)
        _check_time_left(call, channel)
        return channel
    mirror = await _verify_at_facilitator(call)
    vouchers.check_covered(payment, mirror, call.amount)
    _check_time_left(call, channel.with_mirror(mirror, policy.now()))
    refreshed = await call.room.store.refresh(channel.channel_id, call.reservation.token, mirror)
    if refreshed is None:  # our hold ran out while the facilitator answered
        raise PaymentError(codes.ERR_CHANNEL_BUSY, "the channel was taken over; retry shortly")
    return refreshed


def _check_time_left(call: _Call, channel: Channel) -> None:
    """A paid payment on a channel being withdrawn only while the collector can
    still claim it (a refund gives money back: always taken)."""
    if call.payment.kind != REFUND:
        policy = call.room.policy
        check_claimable_in_time(channel, policy.chain_now(channel.network), policy.claim_margin_s)


def _check_cumulative(call: _Call, channel: Channel) -> None:
    try:
        check_cumulative(call.payment.max_claimable, channel.charged, call.payment.kind, call.route.amount)
    except PaymentError as mismatch:
        mismatch.offer = corrective(call.offer, channel)
        raise


async def _verify_at_facilitator(call: _Call) -> Mirror:
    """/verify with the pool's fallback; the channel's contract state it reports."""
    ctx = call.ctx
    result = await verify_with_fallback(ctx.facilitators.candidates(call.route.facilitators), call.body())
    call.audit.attempts = (*call.audit.attempts, *result.attempts)
    if result.facilitator is None:
        raise PaymentError(Reason.VERIFY_UNAVAILABLE, "no facilitator could verify the payment", status=503)
    if not result.valid:
        reason = result.invalid_reason if result.invalid_reason.startswith("invalid_batch_settlement_evm_") else Reason.INVALID_PAYMENT
        raise PaymentError(reason, f"the payment is not valid: {result.invalid_reason}")
    mirror = Mirror.of(result.extra)
    if mirror is None:
        # The binding: without the facilitator's totalClaimed there is no baseline.
        raise PaymentError(codes.ERR_CHANNEL_STATE_READ_FAILED, "the facilitator did not report the channel's state", 503)
    call.verified_by = result.facilitator
    return mirror


def _verified(call: _Call, channel: Channel) -> Verified:
    ctx, payment, route = call.ctx, call.payment, call.route
    pid = payment_id(payment.channel_id, payment.max_claimable)
    call.room.flights.hold(
        ChannelFlight(
            payment_id=pid,
            token=call.reservation.token,
            kind=payment.kind,
            channel_id=payment.channel_id,
            network=route.network,
            payer=payment.payer,
            charged=channel.charged,
            amount=route.amount,
            max_claimable=payment.max_claimable,
            signature=payment.signature,
            tracking_id=call.reservation.tracking_id,
            route_key=route.key,
            request_id=call.req.request_id,
            url=call.req.url,
            record=call.audit.fields["payment"],
            payment=payment if payment.kind == DEPOSIT else None,
            offer=call.offer,
            facilitator=call.verified_by.url if call.verified_by is not None else "",
            route=route,
        )
    )
    fields = tracking.verification_fields(
        verified=True, error=None, attempts=call.audit.attempts, extra=call.audit.fields
    )
    ctx.tracker.record(call.reservation.tracking_id, Step.VERIFICATION, fields)
    return Verified(
        payment_id=pid,
        payer=payment.payer,
        scheme=SCHEME_BATCH_SETTLEMENT,
        network=route.network,
        amount=str(route.amount),
        version=2,
        redeem=False,
        claim_token=str(call.reservation.token),
        channel_id=payment.channel_id,
    )


async def _refund(call: _Call, channel: Channel) -> Completed:
    """Complete the refund, settle it at the facilitator, record the channel's new
    state; the answer is the receipt (no handler runs)."""
    ctx, payment = call.ctx, call.payment
    completed = refunds.complete(payment, channel, channel.mirror, call.room.authorizers.signer)
    # With the facilitator's authorizer, the facilitator that owns it signs.
    facilitator = ctx.facilitators.get(call.terms.facilitator) if call.terms.facilitator else call.verified_by
    assert facilitator is not None  # a refund is always verified at a facilitator first
    learned = await ask_facilitator(facilitator, call.body(completed.payload), call.room.policy.retries)
    call.audit.attempts = (*call.audit.attempts, *learned.attempts)
    if learned.settled:
        data = learned.data or {}
        after = Mirror.of((data.get("extra") or {}).get("channelState")) or _after_refund(channel, completed.amount)
        refunded = int(data["amount"]) if str(data.get("amount") or "").isdigit() else completed.amount
    elif learned.refused and not learned.ambiguous:
        reason = sanitize_reason(learned.facilitator_reason, Reason.SETTLEMENT_FAILED)
        failed = receipts.failed(channel.network, payment.payer, reason, learned.transaction)
        raise PaymentError(reason, "the refund was refused", headers=failed)
    else:
        # The refund nonce moves with every refund: the chain tells whether ours ran.
        after = await ctx.chain.channel(channel.network, channel.channel_id)
        if after is None or after.refund_nonce <= channel.mirror.refund_nonce:
            doubt = receipts.failed(channel.network, payment.payer, Reason.PAYMENT_IN_DOUBT, learned.transaction)
            raise PaymentError(Reason.PAYMENT_IN_DOUBT, IN_DOUBT_MESSAGE, 503, headers=doubt)
        refunded = completed.amount
    committed = await call.room.store.commit(
        channel.channel_id, call.reservation.token, channel.charged, 0, None, after
    )
    if committed is None:
        raise PaymentError(codes.ERR_CHANNEL_BUSY, "the channel was taken over during the refund", 503)
    fields = records.refund_fields(
        call.audit.fields["payment"], committed, refunded, learned.transaction, facilitator.url
    )
    fields["metadata"] = {"settle_attempts": [attempt.as_record() for attempt in learned.attempts]}
    ctx.tracker.record(call.reservation.tracking_id, Step.VERIFICATION, tracking.verification_fields(
        verified=True, error=None, attempts=call.audit.attempts, extra=call.audit.fields
    ))
    ctx.tracker.record(call.reservation.tracking_id, Step.SETTLEMENT, fields)
    ctx.telemetry.event(
        "payment_settled",
        request_id=call.req.request_id,
        route=call.route.key,
        network=channel.network,
        scheme=SCHEME_BATCH_SETTLEMENT,
        kind=REFUND,
        payer=payment.payer,
        transaction=learned.transaction,
        amount=str(refunded),
    )
    log.info("channel refund payer=%s channel=%s transaction=%s", payment.payer, channel.channel_id, learned.transaction)
    body = json.dumps({"refunded": str(refunded), "channelId": channel.channel_id}).encode()
    headers = {"Content-Type": _JSON, "Cache-Control": "no-store", **receipts.refunded(committed, learned.transaction, refunded)}
    return Completed(HttpAnswer(200, headers, body))


def _after_refund(channel: Channel, refunded: int) -> Mirror:
    """The channel after our refund when the facilitator's answer does not say:
    the charges claimed with it, the refund given back, the nonce used."""
    mirror = channel.mirror
    return Mirror(
        balance=mirror.balance - refunded,
        total_claimed=max(mirror.total_claimed, channel.charged),
        withdraw_requested_at=mirror.withdraw_requested_at,
        refund_nonce=mirror.refund_nonce + 1,
    )


async def _give_back(call: _Call) -> None:
    """A refused request gives its channel back unchanged."""
    await call.room.free(call.payment.channel_id, call.reservation.token)
