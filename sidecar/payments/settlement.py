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
from dataclasses import dataclass, field
from typing import Any

from x402.pending_settlement_store import ERR_SETTLEMENT_PENDING

from ..constants import Reason
from .ledger import FAILED, SETTLED, UNKNOWN
from .ports import Attempt, ChainReader, Facilitator, FacilitatorAnswer
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
    learned = await ask_facilitator(facilitator, body, policy.retries)
    if learned.settled:
        return learned.outcome(SETTLED, source=FROM_FACILITATOR)
    if learned.refused and not learned.ambiguous:
        return await _after_clean_no(chain, expected, learned)
    if not learned.ambiguous:
        return learned.outcome(FAILED, Reason.SETTLEMENT_FAILED)  # nothing ever reached it
    return await _after_ambiguous(chain, expected, learned, policy)


@dataclass
class Learned:
    """What the settle attempts on the facilitator learned."""

    attempts: list[Attempt] = field(default_factory=list)
    transaction: str = ""  # the last one a facilitator named
    facilitator_reason: str = ""  # the last failure's code, sanitized
    settled: bool = False  # answered an explicit success: true
    refused: bool = False  # answered a clean success: false (not settlement_pending)
    ambiguous: bool = False  # an attempt before the last answer may have reached it and acted
    data: dict[str, Any] | None = None  # the answer that ended the attempts (settled or refused)

    def read(self, answer: FacilitatorAnswer) -> bool:
        """Take one answer in; True when it ends the attempts (settled or refused)."""
        self.attempts.append(answer.attempt)
        data = answer.data if answer.ok else None
        if data is None:
            self.facilitator_reason = answer.attempt.reason
        else:
            if isinstance(data.get("transaction"), str) and data["transaction"]:
                self.transaction = data["transaction"]
            if data["success"] is True:
                self.settled, self.data = True, data
                return True
            self.facilitator_reason = sanitize_reason(data.get("errorReason"), Reason.SETTLEMENT_FAILED)
            if self.facilitator_reason != ERR_SETTLEMENT_PENDING:
                self.refused, self.data = True, data
                return True
        self.ambiguous = self.ambiguous or answer.may_have_acted
        return False

    def outcome(self, status: str, reason: str = "", source: str = "", transaction: str | None = None) -> SettleOutcome:
        transaction = self.transaction if transaction is None else transaction
        return SettleOutcome(status, transaction, reason, self.facilitator_reason, source, tuple(self.attempts))


async def ask_facilitator(facilitator: Facilitator, body: dict[str, Any], retries: int) -> Learned:
    """The same payload to the same facilitator (the chain's nonce makes that
    idempotent) until it answers clearly, at most 1 + retries times. Channel
    deposits and refunds go through here too: an ERC-3009 nonce and the contract's
    refund nonce make their retries idempotent the same way."""
    learned = Learned()
    for _ in range(retries + 1):
        if learned.read(await facilitator.settle(body)):
            break
    return learned


async def _after_clean_no(chain: ChainReader, expected: ExpectedTransfer, learned: Learned) -> SettleOutcome:
    """A clean "no" to the only request sent: one look at the chain catches a
    facilitator that moved the money and said otherwise, and a nonce the payer
    spent or canceled meanwhile."""
    check = await check_payment(chain, expected, transaction=learned.transaction)
    if check.final:
        return _chain_says(check, learned)
    if check.verdict is Verdict.UNTRACED:
        # Used by something we cannot see: never served, never failed.
        return learned.outcome(UNKNOWN, Reason.PAYMENT_IN_DOUBT)
    return learned.outcome(FAILED, Reason.SETTLEMENT_FAILED)


async def _after_ambiguous(
    chain: ChainReader, expected: ExpectedTransfer, learned: Learned, policy: ReconcilePolicy
) -> SettleOutcome:
    """An attempt may have acted: the chain is asked for a bounded window, and
    what it has not decided by then is in doubt."""
    check = await _reconcile(chain, expected, learned.transaction, policy)
    if check.final:
        return _chain_says(check, learned)
    return learned.outcome(UNKNOWN, Reason.PAYMENT_IN_DOUBT)


def _chain_says(check: ChainCheck, learned: Learned) -> SettleOutcome:
    """A final verdict: this payment's transfer, or a nonce that never pays us."""
    if check.verdict is Verdict.PAID:
        return learned.outcome(SETTLED, source=FROM_CHAIN, transaction=check.transaction)
    # Whatever transaction a facilitator named did not pay us.
    return learned.outcome(FAILED, check.failure_reason, source=FROM_CHAIN, transaction="")


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
