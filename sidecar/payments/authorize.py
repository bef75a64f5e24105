"""Authorize: a request to a paid route, before its handler runs (DESIGN §4).

No payment: the 402 challenge. Otherwise the payment must decode and be bound to
the route (rules 5 and 1) before any facilitator sees it; a payment the ledger
holds already is in doubt, redeemed once (redeem.py) or used; a new one is
verified at the healthiest facilitator and claimed in the ledger, once (rule 2),
and the handler may run. A payment carrying a payment-identifier id its payer
paid with before is not claimed but answered as its id says (idempotency.py):
served again from the first payment (replay.py), or refused. Every refusal is an
answer with a reason, and the call's tracking record says what was learned
about the payment on the way."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from x402.mechanisms.evm.batch_settlement.constants import SCHEME_BATCH_SETTLEMENT
from x402.schemas import PaymentRequirements

from ..constants import Reason
from . import answers, ledger, records, redeem, replay
from .binding import bind, forwarded_payload
from .channels import authorize as channels
from .claims import InFlight
from .codec import DecodedPayment, Envelope, decode_envelope, exact_payment, pick_header
from .context import PaymentContext
from .errors import LedgerUnavailable, PaymentError
from .flow import AuthorizeInput, Challenge, Completed, Rejection, Verified
from .idempotency import IdentifiedRequest, Verdict, decide, identify, refusal
from .identity import canonical_hash, header_hash, payment_id
from .ledger import LedgerEntry
from .lifecycle import Step
from .ports import Attempt, Facilitator
from .verification import verify_with_fallback


Outcome = Challenge | Rejection | Verified | Completed


async def authorize(ctx: PaymentContext, req: AuthorizeInput) -> tuple[uuid.UUID, Outcome]:
    route = req.route
    call = (req.request_id, req.method, req.url, route.key, req.payment_signature, req.x_payment, req.client_ip)
    tracking_id = records.tracking_id(req.call_key, *call)
    started = time.perf_counter()
    track = ctx.tracker.record
    track(tracking_id, Step.START, records.start_fields(req.request_id, req.method, req.url, route.key, req.trace_id))
    track(
        tracking_id,
        Step.REQUEST,
        records.request_fields(req.method, req.headers, req.query, req.client_ip, req.user_agent, route),
    )
    _event(ctx, "request_received", req, network=route.network)
    audit = _Audit()
    try:
        # The route's batch-settlement offer, for its 402s (None: exact only).
        audit.batch_offer = await channels.offer(ctx, route)
        outcome = await _answer(ctx, tracking_id, req, audit)
    except PaymentError as exc:
        outcome = _reject(ctx, tracking_id, req, exc, audit)
    except LedgerUnavailable:
        fields = records.verification_fields(verified=False, error=Reason.LEDGER_UNAVAILABLE)
        track(tracking_id, Step.VERIFICATION, fields)
        track(tracking_id, Step.FINALIZE, records.finalize_fields(503, 0))
        raise
    if isinstance(outcome, Verified):
        return tracking_id, outcome
    # Answered without the handler: the sidecar's own time is the response time.
    elapsed_ms = int((time.perf_counter() - started) * 1000)
    track(tracking_id, Step.FINALIZE, records.finalize_fields(outcome.answer.status, elapsed_ms))
    return tracking_id, outcome


@dataclass
class _Audit:
    """What the call learned about the payment before its answer, refusal or not:
    tracking fields (hashes, the payment's terms), the client's protocol version
    once decoded, and the verify attempts."""

    fields: dict[str, Any] = field(default_factory=dict)
    version: int = 2
    attempts: tuple[Attempt, ...] = ()
    batch_offer: PaymentRequirements | None = None


@dataclass(frozen=True)
class _Bound:
    """A decoded payment bound to the route, and what identifies it."""

    payment: DecodedPayment
    requirements: dict[str, Any]  # the wire paymentRequirements to verify and settle with
    payment_id: str
    requirements_hash: str


async def _answer(
    ctx: PaymentContext, tracking_id: uuid.UUID, req: AuthorizeInput, audit: _Audit
) -> Challenge | Verified | Completed:
    picked = pick_header(req.payment_signature, req.x_payment)
    if picked is None:
        return _challenge(ctx, tracking_id, req, audit)
    header_name, header_value = picked
    audit.fields["payment_signature_hash"] = header_hash(header_value)
    envelope = decode_envelope(header_name, header_value)
    audit.version = envelope.version
    if envelope.scheme == SCHEME_BATCH_SETTLEMENT:
        return await channels.authorize(ctx, tracking_id, req, envelope, audit)
    bound = _decode_and_bind(ctx, envelope, req, audit)
    request = identify(bound.payment, req.route, req.method, req.url)
    if request is not None:
        audit.fields.update(records.identifier_fields(request.identifier))
        return await _identified(ctx, tracking_id, req, bound, request, audit)
    return await _pay(ctx, tracking_id, req, bound, audit)


async def _pay(
    ctx: PaymentContext,
    tracking_id: uuid.UUID,
    req: AuthorizeInput,
    bound: _Bound,
    audit: _Audit,
    request: IdentifiedRequest | None = None,
) -> Verified:
    """A payment to verify and claim, unless the ledger holds it already."""
    existing = await ctx.ledger.get(bound.payment_id)
    if existing is not None and existing.state not in ledger.RECLAIMABLE:
        return await _held_already(ctx, tracking_id, req, bound, existing, audit)
    facilitator = await _verify(ctx, bound, req, audit)
    return await _claim(ctx, tracking_id, req, bound, facilitator, audit, request)


async def _identified(
    ctx: PaymentContext,
    tracking_id: uuid.UUID,
    req: AuthorizeInput,
    bound: _Bound,
    request: IdentifiedRequest,
    audit: _Audit,
) -> Verified:
    """A payment carrying a payment-identifier id: paid and bound to the id when
    the id is free; else never settled, but served again from the payment the
    id is bound to, or refused (idempotency.py)."""
    binding = await ctx.identifiers.get(request.payer, request.identifier)
    first = await ctx.ledger.get(binding.payment_id) if binding is not None else None
    verdict = decide(binding, first, request, ctx.idempotency)
    if verdict is Verdict.NEW or binding is None or first is None:
        return await _pay(ctx, tracking_id, req, bound, audit, request)
    if bound.payment_id != first.payment_id:
        # Only the payer may use its id: a payload other than the one verified
        # before must be the payer's signature too.
        await _verify(ctx, bound, req, audit)
    if verdict is Verdict.REPLAY:
        flight = await replay.claim(ctx, first, binding, bound.payment, req, tracking_id, audit.fields)
        if flight is not None:
            return Verified.of(flight.entry, bound.payment, redeem=True)
        verdict = Verdict.IN_FLIGHT  # another replay holds the id
    raise refusal(verdict, ctx.idempotency, answers.IN_DOUBT_MESSAGE)


def _challenge(ctx: PaymentContext, tracking_id: uuid.UUID, req: AuthorizeInput, audit: _Audit) -> Challenge:
    ctx.tracker.record(tracking_id, Step.VERIFICATION, records.verification_fields(verified=False, error=None))
    _event(ctx, "payment_challenge_issued", req, network=req.route.network, amount=str(req.route.amount))
    return Challenge(answers.payment_required(req.route, req.url, "payment required", batch=audit.batch_offer))


def _decode_and_bind(ctx: PaymentContext, envelope: Envelope, req: AuthorizeInput, audit: _Audit) -> _Bound:
    """Rules 5 and 1: a well-formed exact payment, bound to this route, or a PaymentError."""
    if not req.route.offers("exact"):
        raise PaymentError(Reason.SCHEME_MISMATCH, f"scheme {envelope.scheme!r} is not accepted here")
    with ctx.telemetry.step("x402 decode and bind"):
        payment = exact_payment(envelope)
        audit.fields.update(records.payment_fields(payment, req.route))
        requirements = bind(payment, req.route, req.url)
    bound = _Bound(payment, requirements, payment_id(payment), canonical_hash(requirements))
    audit.fields.update(payload_hash=payment.payload_hash, requirements_hash=bound.requirements_hash)
    return bound


async def _held_already(
    ctx: PaymentContext,
    tracking_id: uuid.UUID,
    req: AuthorizeInput,
    bound: _Bound,
    existing: LedgerEntry,
    audit: _Audit,
) -> Verified:
    """A payment the ledger holds and that moved, or may have moved, money."""
    if existing.state in ledger.UNRESOLVED:
        # Its settle is under way or in doubt: the payer must not pay again.
        raise PaymentError(Reason.PAYMENT_IN_DOUBT, answers.IN_DOUBT_MESSAGE, status=503)
    if existing.state == ledger.SETTLED_UNSERVED and existing.route_key == req.route.key:
        flight = await redeem.claim(ctx, existing, bound.payment, req, tracking_id, audit.fields)
        if flight is not None:
            return Verified.of(flight.entry, bound.payment, redeem=True)
    raise PaymentError(Reason.ALREADY_USED, "this payment has already been used")


async def _verify(ctx: PaymentContext, bound: _Bound, req: AuthorizeInput, audit: _Audit) -> Facilitator:
    """The facilitator that verified the payment (DESIGN §5), or a PaymentError."""
    payment = bound.payment
    body = {
        "x402Version": payment.version,
        "paymentPayload": forwarded_payload(payment, req.route, req.url),
        "paymentRequirements": bound.requirements,
    }
    result = await verify_with_fallback(ctx.facilitators.candidates(req.route.facilitators), body)
    audit.attempts = result.attempts
    if result.facilitator is None:
        raise PaymentError(Reason.VERIFY_UNAVAILABLE, "no facilitator could verify the payment", status=503)
    if not result.valid:
        raise PaymentError(Reason.INVALID_PAYMENT, f"the payment is not valid: {result.invalid_reason}")
    return result.facilitator


async def _claim(
    ctx: PaymentContext,
    tracking_id: uuid.UUID,
    req: AuthorizeInput,
    bound: _Bound,
    facilitator: Facilitator,
    audit: _Audit,
    request: IdentifiedRequest | None,
) -> Verified:
    """Rule 2: one claim per payment (and per payer and nonce) in the ledger;
    with an id, the id is bound to it in the same move, or neither happens."""
    payment, route = bound.payment, req.route
    signed = payment.authorization
    entry = LedgerEntry(
            payment_id=bound.payment_id,
            state=ledger.VERIFIED,
            claim_token=uuid.uuid4(),
            route_key=route.key,
            resource=req.url,
            scheme=payment.scheme,
            network=route.network,
            asset=route.asset,
            pay_to=route.pay_to,
            amount=signed.value,
            payer=signed.payer,
            nonce=signed.nonce,
            valid_before=signed.valid_before,
            x402_version=payment.version,
            facilitator=facilitator.url,
            requirements=bound.requirements,
            payload_hash=payment.payload_hash,
            requirements_hash=bound.requirements_hash,
            tracking_id=tracking_id,
        )
    if request is None:
        claimed = await ctx.ledger.claim(entry)
    else:
        claimed = await ctx.identifiers.claim(entry, request)
    if claimed is None and request is not None:
        # Another payment with the id (or this one) was claimed meanwhile.
        raise refusal(Verdict.IN_FLIGHT, ctx.idempotency, answers.IN_DOUBT_MESSAGE)
    if claimed is None:
        raise PaymentError(Reason.ALREADY_USED, "this payment has already been used")
    ctx.claims.hold(InFlight(claimed, payment, route, req.url, req.request_id, redeem=False))
    fields = records.verification_fields(verified=True, error=None, attempts=audit.attempts, extra=audit.fields)
    ctx.tracker.record(tracking_id, Step.VERIFICATION, fields)
    return Verified.of(claimed, payment, redeem=False)


def _reject(
    ctx: PaymentContext, tracking_id: uuid.UUID, req: AuthorizeInput, error: PaymentError, audit: _Audit
) -> Rejection:
    fields = records.verification_fields(
        verified=False, error=error.reason, attempts=audit.attempts, extra=audit.fields
    )
    ctx.tracker.record(tracking_id, Step.VERIFICATION, fields)
    _event(ctx, "payment_verify_failed", req, reason=error.reason, network=req.route.network)
    if error.status == 402:
        batch = error.offer or audit.batch_offer
        answer = answers.payment_required(req.route, req.url, error.reason, audit.version, batch=batch)
    elif error.reason == Reason.PAYMENT_IN_DOUBT:
        answer = answers.payment_in_doubt(req.request_id, ctx.policy.retry_after_s)
    else:
        answer = answers.error_answer(error.status, error.reason, error.message, req.request_id)
    if error.headers:
        answer = answers.HttpAnswer(answer.status, {**answer.headers, **error.headers}, answer.body)
    return Rejection(error.reason, error.message, answer)


def _event(ctx: PaymentContext, name: str, req: AuthorizeInput, **attributes: Any) -> None:
    ctx.telemetry.event(name, request_id=req.request_id, route=req.route.key, **attributes)
