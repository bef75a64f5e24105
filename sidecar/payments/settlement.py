"""Settle one payment on the facilitator that verified it (money rule 4).

Only an explicit `success: true` settles. An ambiguous answer (timeout, dropped
connection, 5xx, bad JSON, settlement_pending) is retried on the same facilitator
with the same payload — the chain's nonce makes that idempotent — and then the
chain is asked, for a bounded window, what happened to the authorization. Whatever
the chain has not decided by then stays unknown (in doubt), never failed: a
pending transaction may still be mined, and the recovery job keeps asking."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from x402.pending_settlement_store import ERR_SETTLEMENT_PENDING

from ..constants import Reason
from .ledger import FAILED, SETTLED, UNKNOWN
from .ports import Attempt, ChainReader, Facilitator
from .used_nonce import ChainCheck, ExpectedTransfer, Verdict, check_payment
from .verification import sanitize_reason

# Who told the outcome (the ledger's reconciled_by).
FROM_FACILITATOR = "facilitator"
FROM_CHAIN = "chain"


@dataclass(frozen=True)
class SettleOutcome:
    status: str  # the ledger state it leads to: SETTLED | FAILED | UNKNOWN
    transaction: str
    reason: str  # our own reason code when not settled
    facilitator_reason: str  # the facilitator's code, sanitized, for the record only
    source: str  # FROM_FACILITATOR | FROM_CHAIN | ""
    attempts: tuple[Attempt, ...]

    @property
    def reconciled(self) -> bool:
        return self.source == FROM_CHAIN

    @property
    def record_reason(self) -> str:
        """The ledger's settle_reason: the chain's verdict when the chain decided,
        else the facilitator's (sanitized) code, else ours."""
        if self.reconciled:
            return self.reason
        return self.facilitator_reason or self.reason


@dataclass(frozen=True)
class ReconcilePolicy:
    retries: int
    window_s: float
    poll_s: float
    # Retry-After of an in-doubt answer: about when the chain will have been asked again.
    retry_after_s: int = 1
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    clock: Callable[[], float] = time.monotonic


async def settle_payment(
    facilitator: Facilitator,
    body: dict[str, Any],
    expected: ExpectedTransfer,
    chain: ChainReader,
    policy: ReconcilePolicy,
) -> SettleOutcome:
    attempts: list[Attempt] = []
    transaction = ""
    facilitator_reason = ""
    ambiguous = False  # some attempt may have reached the facilitator and acted

    def outcome(status: str, reason: str = "", source: str = "") -> SettleOutcome:
        return SettleOutcome(status, transaction, reason, facilitator_reason, source, tuple(attempts))

    def decided_by_chain(check: ChainCheck) -> SettleOutcome:
        """A final verdict: this payment's transfer, or a nonce that never pays us."""
        nonlocal transaction
        if check.verdict is Verdict.PAID:
            transaction = check.transaction
            return outcome(SETTLED, source=FROM_CHAIN)
        transaction = ""  # what a facilitator named did not pay us
        return outcome(FAILED, check.failure_reason, source=FROM_CHAIN)

    for _ in range(policy.retries + 1):
        answer = await facilitator.settle(body)
        attempts.append(answer.attempt)
        data = answer.data if answer.ok else None
        if data is not None:
            if isinstance(data.get("transaction"), str) and data["transaction"]:
                transaction = data["transaction"]
            if data["success"] is True:
                return outcome(SETTLED, source=FROM_FACILITATOR)
            facilitator_reason = sanitize_reason(data.get("errorReason"), Reason.SETTLEMENT_FAILED)
            if facilitator_reason != ERR_SETTLEMENT_PENDING:
                if not ambiguous:
                    # A clean "no" to the only request sent: one look at the chain
                    # catches a facilitator that moved the money and said otherwise,
                    # and a nonce the payer spent or canceled meanwhile.
                    check = await check_payment(chain, expected, transaction=transaction)
                    if check.final:
                        return decided_by_chain(check)
                    if check.verdict is Verdict.UNTRACED:
                        # Used by something we cannot see: never served, never failed.
                        return outcome(UNKNOWN, Reason.PAYMENT_IN_DOUBT)
                    return outcome(FAILED, Reason.SETTLEMENT_FAILED)
                break
        else:
            facilitator_reason = answer.attempt.reason
        ambiguous = ambiguous or answer.may_have_acted

    if not ambiguous:
        return outcome(FAILED, Reason.SETTLEMENT_FAILED)  # nothing ever reached it
    check = await _reconcile(chain, expected, transaction, policy)
    if check.final:
        return decided_by_chain(check)
    return outcome(UNKNOWN, Reason.PAYMENT_IN_DOUBT)


async def _reconcile(
    chain: ChainReader, expected: ExpectedTransfer, transaction: str, policy: ReconcilePolicy
) -> ChainCheck:
    """Ask the chain for a bounded window, until its verdict is final."""
    if not chain.configured(expected.network):
        return ChainCheck(Verdict.UNREADABLE)
    deadline = policy.clock() + policy.window_s
    while True:
        check = await check_payment(chain, expected, transaction=transaction)
        if check.final or policy.clock() >= deadline:
            return check
        await policy.sleep(policy.poll_s)
