"""Authorize -> (handler) -> Settle | Release: the payment flow of one request.

Pure domain: talks to facilitators, the chain, the ledger, tracking and telemetry
only through the Protocols in ports.py."""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from ..constants import RELEASE_NOT_DELIVERED, Reason
from . import answers, ledger, records
from .answers import HttpAnswer
from .binding import bind
from .codec import DecodedPayment, decode_payment, pick_header
from .errors import ClaimRefused, LedgerUnavailable, PaymentError, RouteError, UnknownPayment
from .identity import canonical_hash, header_hash, is_payment_id, payment_id
from .ledger import LedgerEntry
from .lifecycle import Step
from .ports import ChainReader, FacilitatorPool, LedgerStore, Telemetry, Tracker
from .routes import PricedRoute
from .settlement import ReconcilePolicy, SettleOutcome, settle_payment
from .used_nonce import ExpectedTransfer
from .verification import verify_with_fallback

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AuthorizeInput:
    request_id: str
    method: str
    url: str
    route: PricedRoute
    payment_signature: str = ""
    x_payment: str = ""
    client_ip: str = ""
    user_agent: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    query: str = ""
    trace_id: str = ""
    call_key: str = ""  # the caller's key of this call, the same on its retries


@dataclass(frozen=True)
class Challenge:
    answer: HttpAnswer


@dataclass(frozen=True)
class Rejection:
    reason: str
    message: str
    answer: HttpAnswer


@dataclass(frozen=True)
class Verified:
    payment_id: str
    payer: str
    scheme: str
    network: str
    amount: str
    version: int
    redeem: bool
    # Only the caller holding it may Settle or Release the claim.
    claim_token: str


@dataclass(frozen=True)
class SettleResult:
    success: bool
    headers: dict[str, str]
    transaction: str
    payer: str
    network: str
    reason: str = ""
    answer: HttpAnswer | None = None


@dataclass
class InFlight:
    """What Settle needs from Authorize, kept in memory only (never the raw payload in SQL)."""

    entry: LedgerEntry
    payment: DecodedPayment
    route: PricedRoute
    url: str
    request_id: str
    redeem: bool
    started: float = field(default_factory=time.monotonic)


class PaymentService:
    def __init__(
        self,
        *,
        facilitators: FacilitatorPool,
        ledger_store: LedgerStore,
        chain: ChainReader,
        tracker: Tracker,
        telemetry: Telemetry,
        policy: ReconcilePolicy,
    ) -> None:
        self._facilitators = facilitators
        self._ledger = ledger_store
        self._chain = chain
        self._tracker = tracker
        self._telemetry = telemetry
        self._policy = policy
        self._in_flight: dict[str, InFlight] = {}

    @property
    def in_flight(self) -> dict[str, InFlight]:
        return self._in_flight

    # ------------------------------------------------------------------ Authorize

    async def authorize(self, req: AuthorizeInput) -> tuple[uuid.UUID, Challenge | Rejection | Verified]:
        route = req.route
        call = (req.request_id, req.method, req.url, route.key, req.payment_signature, req.x_payment, req.client_ip)
        tracking_id = records.tracking_id(req.call_key, *call)
        started = time.perf_counter()
        track = self._tracker.record
        track(tracking_id, Step.START, records.start_fields(req.request_id, req.method, req.url, route.key, req.trace_id))
        track(
            tracking_id,
            Step.REQUEST,
            records.request_fields(req.method, req.headers, req.query, req.client_ip, req.user_agent, route),
        )
        self._event("request_received", req, network=route.network)
        try:
            outcome = await self._authorize(tracking_id, req)
        except PaymentError as exc:
            outcome = self._reject(tracking_id, req, exc)
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

    async def _authorize(self, tracking_id: uuid.UUID, req: AuthorizeInput) -> Challenge | Rejection | Verified:
        route = req.route
        picked = pick_header(req.payment_signature, req.x_payment)
        if picked is None:
            self._tracker.record(tracking_id, Step.VERIFICATION, records.verification_fields(verified=False, error=None))
            self._event("payment_challenge_issued", req, network=route.network, amount=str(route.amount))
            return Challenge(answers.payment_required(route, req.url, "payment required"))

        header_name, header_value = picked
        audit = {"payment_signature_hash": header_hash(header_value)}
        with self._telemetry.step("x402 decode and bind"):
            try:
                payment = decode_payment(header_name, header_value)
            except PaymentError as exc:
                raise _Audited(exc, audit) from exc
            audit.update(records.payment_fields(payment, route))
            try:
                requirements = bind(payment, route, req.url)
            except PaymentError as exc:
                raise _Audited(exc, audit, payment.version) from exc
        pid = payment_id(payment)
        payload_hash = payment.payload_hash
        requirements_hash = canonical_hash(requirements)
        audit.update(payload_hash=payload_hash, requirements_hash=requirements_hash)

        existing = await self._ledger.get(pid)
        if existing is not None and existing.state not in ledger.RECLAIMABLE:
            return await self._redeem_or_refuse(tracking_id, req, payment, existing, payload_hash, audit)

        body = {"x402Version": payment.version, "paymentPayload": payment.wire, "paymentRequirements": requirements}
        result = await verify_with_fallback(self._facilitators.candidates(route.facilitators), body)
        if result.facilitator is None:
            exc = PaymentError(Reason.VERIFY_UNAVAILABLE, "no facilitator could verify the payment", status=503)
            raise _Audited(exc, audit, payment.version, result.attempts)
        if not result.valid:
            exc = PaymentError(Reason.INVALID_PAYMENT, f"the payment is not valid: {result.invalid_reason}")
            raise _Audited(exc, audit, payment.version, result.attempts)

        signed = payment.authorization
        claimed = await self._ledger.claim(
            LedgerEntry(
                payment_id=pid,
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
                facilitator=result.facilitator.url,
                requirements=requirements,
                payload_hash=payload_hash,
                requirements_hash=requirements_hash,
                tracking_id=tracking_id,
            )
        )
        if claimed is None:
            exc = PaymentError(Reason.ALREADY_USED, "this payment has already been used")
            raise _Audited(exc, audit, payment.version, result.attempts)
        self._in_flight[pid] = InFlight(claimed, payment, route, req.url, req.request_id, redeem=False)
        self._tracker.record(
            tracking_id,
            Step.VERIFICATION,
            records.verification_fields(verified=True, error=None, attempts=result.attempts, extra=audit),
        )
        return _verified(claimed, payment, redeem=False)

    async def _redeem_or_refuse(
        self,
        tracking_id: uuid.UUID,
        req: AuthorizeInput,
        payment: DecodedPayment,
        existing: LedgerEntry,
        payload_hash: str,
        audit: dict[str, Any],
    ) -> Verified:
        """A settled-but-undelivered payment is served once more, without a new settle."""
        if existing.state in ledger.UNRESOLVED:
            # Its settle is under way or in doubt: the payer must not pay again.
            exc = PaymentError(Reason.PAYMENT_IN_DOUBT, answers.IN_DOUBT_MESSAGE, status=503)
            raise _Audited(exc, audit, payment.version)
        if existing.state == ledger.SETTLED_UNSERVED and existing.route_key == req.route.key:
            entry = await self._ledger.claim_redeem(existing.payment_id, payload_hash, uuid.uuid4())
            if entry is not None:
                # The redeem is this request's story: its record, not the first one's.
                entry = dataclasses.replace(entry, tracking_id=tracking_id)
                self._in_flight[entry.payment_id] = InFlight(
                    entry, payment, req.route, req.url, req.request_id, redeem=True
                )
                fields = records.verification_fields(verified=True, error=None, extra=audit)
                fields["metadata"] = {"redeem": {"payment_id": entry.payment_id}}
                self._tracker.record(tracking_id, Step.VERIFICATION, fields)
                return _verified(entry, payment, redeem=True)
        exc = PaymentError(Reason.ALREADY_USED, "this payment has already been used")
        raise _Audited(exc, audit, payment.version)

    def _reject(self, tracking_id: uuid.UUID, req: AuthorizeInput, exc: PaymentError) -> Rejection:
        audited = exc if isinstance(exc, _Audited) else _Audited(exc, {})
        error = audited.inner
        fields = records.verification_fields(
            verified=False, error=error.reason, attempts=audited.attempts, extra=audited.audit
        )
        self._tracker.record(tracking_id, Step.VERIFICATION, fields)
        self._event("payment_verify_failed", req, reason=error.reason, network=req.route.network)
        if error.status == 402:
            answer = answers.payment_required(req.route, req.url, error.reason, audited.version)
        elif error.reason == Reason.PAYMENT_IN_DOUBT:
            answer = answers.payment_in_doubt(req.request_id, self._policy.retry_after_s)
        else:
            answer = answers.error_answer(error.status, error.reason, error.message, req.request_id)
        return Rejection(error.reason, error.message, answer)

    # ------------------------------------------------------------------ Settle

    async def settle(
        self,
        pid: str,
        claim_token: str,
        response_status: int,
        response_time_ms: int,
        header: tuple[str, str] | None = None,
    ) -> SettleResult:
        if not is_payment_id(pid):
            raise UnknownPayment(pid)
        flight = self._in_flight.get(pid)
        if flight is not None:
            _check_holder(flight.entry, claim_token)
            del self._in_flight[pid]
        else:
            flight = await self._adopt(pid, claim_token, header)
        if not 200 <= response_status < 300:
            await self._release_entry(flight.entry, f"handler_status_{response_status}", response_status, response_time_ms)
            raise RouteError(Reason.INVALID_SETTLE, "Settle is only for 2xx handler answers; the claim was released")
        if flight.redeem:
            return await self._serve_redeem(flight, response_status, response_time_ms)

        entry = flight.entry
        try:
            settling = await self._ledger.transition(
                pid, entry.claim_token, (ledger.VERIFIED,), ledger.SETTLING, settle_attempts=entry.settle_attempts + 1
            )
        except LedgerUnavailable:
            # Nothing was sent to a facilitator: keep the claim so a retry can settle.
            self._in_flight[pid] = flight
            raise
        if settling is None:
            raise _closed("released, settled or being settled already")

        body = {
            "x402Version": flight.payment.version,
            "paymentPayload": flight.payment.wire,
            "paymentRequirements": entry.requirements,
        }
        outcome = await settle_payment(
            self._facilitators.get(entry.facilitator),
            body,
            ExpectedTransfer.of(entry),
            self._chain,
            self._policy,
        )
        fields = records.settlement_fields(entry, outcome, response_status, response_time_ms)
        self._tracker.record(entry.tracking_id, Step.SETTLEMENT, fields)

        if outcome.status == ledger.SETTLED:
            done = await self._ledger.transition(
                pid,
                entry.claim_token,
                (ledger.SETTLING,),
                ledger.SETTLED,
                transaction=outcome.transaction or None,
                reconciled_by=outcome.source,
                served=True,
                served_at=datetime.now(timezone.utc),
            )
            if done is not None:
                return self._success(flight, outcome.transaction, response_status, response_time_ms)
            # The ledger could not record the delivery: don't serve; recovery marks
            # the row settled_unserved and the payer redeems it with the same header.
            return self._failure(flight, Reason.PAYMENT_IN_DOUBT, outcome.transaction, 503, response_time_ms, outcome)

        await self._ledger.transition(
            pid,
            entry.claim_token,
            (ledger.SETTLING,),
            outcome.status,  # FAILED or UNKNOWN
            transaction=outcome.transaction or None,
            settle_reason=outcome.record_reason,
        )
        status = 402 if outcome.status == ledger.FAILED else 503  # nothing was paid | in doubt
        return self._failure(flight, outcome.reason, outcome.transaction, status, response_time_ms, outcome)

    async def _adopt(self, pid: str, claim_token: str, header: tuple[str, str] | None) -> InFlight:
        """Settle a payment verified by another replica, for the holder of its claim:
        the client's header is re-decoded and must hash to the claimed payment."""
        entry = await self._ledger.get(pid)
        if entry is None:
            raise UnknownPayment(pid)
        _check_holder(entry, claim_token)
        if entry.state not in (ledger.VERIFIED, ledger.REDEEMING):
            raise _closed(f"it is {entry.state}")
        try:
            payment = decode_payment(*header) if header is not None else None
        except PaymentError:
            payment = None
        if payment is None or payment_id(payment) != pid or payment.payload_hash != entry.payload_hash:
            # Only the payment header lets this replica settle what another one verified.
            raise UnknownPayment(pid)
        route = PricedRoute(
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
        return InFlight(entry, payment, route, entry.resource, "", redeem=entry.state == ledger.REDEEMING)

    async def _serve_redeem(self, flight: InFlight, response_status: int, response_time_ms: int) -> SettleResult:
        entry = flight.entry
        try:
            done = await self._ledger.transition(
                entry.payment_id,
                entry.claim_token,
                (ledger.REDEEMING,),
                ledger.SETTLED,
                served=True,
                served_at=datetime.now(timezone.utc),
            )
        except LedgerUnavailable:
            self._in_flight[entry.payment_id] = flight  # nothing served yet: a retry may redeem
            raise
        if done is None:
            raise _closed("released already")
        self._tracker.record(
            entry.tracking_id, Step.SETTLEMENT, records.redeem_fields(entry, response_status, response_time_ms)
        )
        return self._success(flight, entry.transaction, response_status, response_time_ms)

    def _success(self, flight: InFlight, transaction: str, status: int, elapsed_ms: int) -> SettleResult:
        entry = flight.entry
        self._tracker.record(entry.tracking_id, Step.FINALIZE, records.finalize_fields(status, elapsed_ms))
        self._event_flight(
            "payment_settled", flight, transaction=transaction, payer=entry.payer, amount=str(entry.amount)
        )
        log.info("payment settled payer=%s transaction=%s", entry.payer, transaction)
        headers = answers.receipt_headers(
            flight.payment.version, success=True, network=entry.network, transaction=transaction, payer=entry.payer
        )
        return SettleResult(True, headers, transaction, entry.payer, entry.network)

    def _failure(
        self,
        flight: InFlight,
        reason: str,
        transaction: str,
        status: int,
        elapsed_ms: int,
        outcome: SettleOutcome | None,
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
            answer = answers.payment_in_doubt(flight.request_id, self._policy.retry_after_s, headers=receipt)
        else:
            answer = answers.error_answer(
                status, reason, "the payment could not be completed; retry later", flight.request_id
            )
        self._tracker.record(entry.tracking_id, Step.FINALIZE, records.finalize_fields(answer.status, elapsed_ms))
        attempts = [a.reason for a in outcome.attempts if a.reason] if outcome else []
        self._event_flight("payment_settlement_failed", flight, reason=reason, attempts=",".join(attempts))
        log.warning("settlement failed payer=%s reason=%s transaction=%s", entry.payer, reason, transaction)
        return SettleResult(False, {}, transaction, entry.payer, entry.network, reason, answer)

    # ------------------------------------------------------------------ Release

    async def release(
        self, pid: str, claim_token: str, reason: str, response_status: int, response_time_ms: int
    ) -> str:
        """Gives back a claim that was not settled, for its holder only. A settled
        claim takes one Release: RELEASE_NOT_DELIVERED, the answer never reached the
        client, which makes the payment redeemable once by its header."""
        if not is_payment_id(pid):
            raise UnknownPayment(pid)
        flight = self._in_flight.get(pid)
        entry = flight.entry if flight is not None else await self._ledger.get(pid)
        if entry is None:
            raise UnknownPayment(pid)
        _check_holder(entry, claim_token)
        if flight is not None:
            self._in_flight.pop(pid, None)
        moved = await self._release_entry(
            entry, reason, response_status, response_time_ms, undelivered=reason == RELEASE_NOT_DELIVERED
        )
        if moved is None:
            raise _closed("a settled claim takes only a response_not_delivered Release, once")
        return moved.state

    async def _release_entry(
        self, entry: LedgerEntry, reason: str, response_status: int, elapsed_ms: int, undelivered: bool = False
    ) -> LedgerEntry | None:
        """No settle happened: the claim goes back (a redeem claim goes back to
        settled_unserved). With `undelivered`, a settled payment whose answer never
        reached the client becomes settled_unserved too, redeemable once. Only a
        claim under `entry`'s token moves; None when nothing did."""
        moved = await self._ledger.transition(
            entry.payment_id, entry.claim_token, (ledger.VERIFIED,), ledger.RELEASED
        ) or await self._ledger.transition(
            entry.payment_id,
            entry.claim_token,
            (ledger.REDEEMING, ledger.SETTLED) if undelivered else (ledger.REDEEMING,),
            ledger.SETTLED_UNSERVED,
            served=False,
            served_at=None,
        )
        if moved is not None and entry.tracking_id is not None:
            self._tracker.record(
                entry.tracking_id,
                Step.RELEASE,
                records.release_fields(reason, moved.state, response_status, elapsed_ms),
            )
            self._tracker.record(entry.tracking_id, Step.FINALIZE, records.finalize_fields(response_status, elapsed_ms))
        return moved

    async def release_all(self, reason: str) -> int:
        """Shutdown: give back every claim still waiting for Settle or Release."""
        pids = list(self._in_flight)
        for pid in pids:
            flight = self._in_flight.pop(pid, None)
            if flight is not None:
                await self._release_entry(flight.entry, reason, 0, 0)
        return len(pids)

    # ------------------------------------------------------------------ telemetry

    def _event(self, name: str, req: AuthorizeInput, **attributes: Any) -> None:
        self._telemetry.event(name, request_id=req.request_id, route=req.route.key, **attributes)

    def _event_flight(self, name: str, flight: InFlight, **attributes: Any) -> None:
        self._telemetry.event(
            name,
            request_id=flight.request_id,
            route=flight.entry.route_key,
            network=flight.entry.network,
            facilitator=flight.entry.facilitator,
            **attributes,
        )


def _verified(entry: LedgerEntry, payment: DecodedPayment, redeem: bool) -> Verified:
    signed = payment.authorization
    return Verified(
        entry.payment_id,
        signed.payer,
        payment.scheme,
        entry.network,
        str(signed.value),
        payment.version,
        redeem,
        str(entry.claim_token),
    )


def _check_holder(entry: LedgerEntry, claim_token: str) -> None:
    """Only the caller Authorize gave the claim token to may Settle or Release."""
    try:
        held = uuid.UUID(claim_token) == entry.claim_token
    except ValueError:
        held = False
    if not held:
        raise ClaimRefused(Reason.NOT_CLAIM_HOLDER, "Settle and Release need the claim_token Authorize returned")


def _closed(why: str) -> ClaimRefused:
    return ClaimRefused(Reason.CLAIM_CLOSED, f"the claim cannot be settled or released: {why}")


class _Audited(PaymentError):
    """A PaymentError carrying what we learned about the payment before refusing it."""

    def __init__(
        self, inner: PaymentError, audit: dict[str, Any], version: int = 2, attempts: tuple = ()
    ) -> None:
        super().__init__(inner.reason, inner.message, inner.status)
        self.inner = inner
        self.audit = audit
        self.version = version
        self.attempts = attempts
