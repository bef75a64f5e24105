"""Settle one payment on the facilitator that verified it (money rule 4).

Only an explicit `success: true` settles. An ambiguous answer (timeout, dropped
connection, 5xx, bad JSON, settlement_pending) is retried on the same facilitator
with the same payload — the chain's nonce makes that idempotent — and if the
outcome is still unknown the chain is asked whether the authorization was used."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ..constants import Reason
from .ports import Attempt, ChainReader, Facilitator
from .used_nonce import paid_by_transfer
from .verification import sanitize_reason

SETTLED = "settled"
FAILED = "failed"
UNKNOWN = "unknown"


@dataclass(frozen=True)
class Authorization:
    network: str
    asset: str
    payer: str
    nonce: str


@dataclass(frozen=True)
class SettleOutcome:
    status: str  # SETTLED | FAILED | UNKNOWN
    transaction: str
    reason: str  # our own reason code when not settled
    facilitator_reason: str  # the facilitator's code, sanitized, for the record only
    source: str  # "facilitator" | "chain" | ""
    attempts: tuple[Attempt, ...]

    @property
    def reconciled(self) -> bool:
        return self.source == "chain"


@dataclass(frozen=True)
class ReconcilePolicy:
    retries: int
    window_s: float
    poll_s: float
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    clock: Callable[[], float] = time.monotonic


async def settle_payment(
    facilitator: Facilitator,
    body: dict[str, Any],
    auth: Authorization,
    chain: ChainReader,
    policy: ReconcilePolicy,
) -> SettleOutcome:
    attempts: list[Attempt] = []
    transaction = ""
    facilitator_reason = ""
    ambiguous = False  # some attempt may have reached the facilitator and acted

    def outcome(status: str, reason: str = "", source: str = "") -> SettleOutcome:
        return SettleOutcome(status, transaction, reason, facilitator_reason, source, tuple(attempts))

    async def settled_on_chain() -> SettleOutcome:
        """The nonce is used: by this payment's transfer, or by the payer's cancel."""
        nonlocal transaction
        paid, found = await paid_by_transfer(chain, auth.network, auth.asset, auth.payer, auth.nonce)
        if paid is None:
            return outcome(UNKNOWN, Reason.SETTLEMENT_UNKNOWN)
        if not paid:
            transaction = ""  # what a facilitator named did not pay
            return outcome(FAILED, Reason.SETTLEMENT_FAILED, source="chain")
        transaction = found or transaction
        return outcome(SETTLED, source="chain")

    for _ in range(policy.retries + 1):
        answer = await facilitator.settle(body)
        attempts.append(answer.attempt)
        data = answer.data if answer.ok else None
        if data is not None:
            if isinstance(data.get("transaction"), str) and data["transaction"]:
                transaction = data["transaction"]
            if data["success"] is True:
                return outcome(SETTLED, source="facilitator")
            facilitator_reason = sanitize_reason(data.get("errorReason"), "settlement_failed")
            if facilitator_reason != "settlement_pending":
                if not ambiguous:
                    # A clean "no" to the only request sent: one look at the chain
                    # catches a facilitator that moved the money and said otherwise.
                    used = await _chain_says(chain, auth)
                    if used:
                        return await settled_on_chain()
                    return outcome(FAILED, Reason.SETTLEMENT_FAILED)
                break
        else:
            facilitator_reason = answer.attempt.reason
        ambiguous = ambiguous or answer.may_have_acted

    if not ambiguous:
        return outcome(FAILED, Reason.SETTLEMENT_FAILED)  # nothing ever reached it
    return await _reconcile(chain, auth, policy, outcome, settled_on_chain)


async def _chain_says(chain: ChainReader, auth: Authorization) -> bool | None:
    if not chain.configured(auth.network):
        return None
    return await chain.authorization_used(auth.network, auth.asset, auth.payer, auth.nonce)


async def _reconcile(
    chain: ChainReader,
    auth: Authorization,
    policy: ReconcilePolicy,
    outcome: Callable[..., SettleOutcome],
    settled_on_chain: Callable[[], Awaitable[SettleOutcome]],
) -> SettleOutcome:
    """Poll the chain for a bounded window: used -> settled; unused -> failed."""
    if not chain.configured(auth.network):
        return outcome(UNKNOWN, Reason.SETTLEMENT_UNKNOWN)
    deadline = policy.clock() + policy.window_s
    last: bool | None = None
    while True:
        used = await chain.authorization_used(auth.network, auth.asset, auth.payer, auth.nonce)
        if used:
            return await settled_on_chain()
        last = used if used is not None else last
        if policy.clock() >= deadline:
            break
        await policy.sleep(policy.poll_s)
    if last is False:
        return outcome(FAILED, Reason.SETTLEMENT_FAILED)
    return outcome(UNKNOWN, Reason.SETTLEMENT_UNKNOWN)
