"""Resolve ledger rows a crash or an unknown settle left behind — by asking the
chain, never by guessing (DESIGN §4 rule 4). A row in doubt stays in doubt until
the chain shows this payment's transfer, or shows that no transfer ever will."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Container
from dataclasses import dataclass
from typing import Any

from . import ledger, records
from .ledger import LedgerEntry
from .lifecycle import Step
from .ports import ChainReader, LedgerStore, Tracker
from .settlement import FROM_CHAIN
from .used_nonce import ChainCheck, ExpectedTransfer, Verdict, check_payment

log = logging.getLogger(__name__)

_STILL_IN_DOUBT = "unresolved"


@dataclass(frozen=True)
class RecoveryReport:
    settled_unserved: int = 0
    failed: int = 0
    released: int = 0
    unresolved: int = 0


async def recover_once(
    store: LedgerStore,
    chain: ChainReader,
    tracker: Tracker,
    *,
    unresolved_after_s: float,
    verified_after_s: float,
    in_flight: Container[str],
    now: Callable[[], float] = time.time,
    batch: int = 200,
) -> RecoveryReport:
    counts: Counter[str] = Counter()
    for entry in await store.stale(ledger.UNRESOLVED, unresolved_after_s, batch):
        state = await _resolve(store, chain, tracker, entry, now)
        if state is not None:
            counts[state] += 1
    for entry in await store.stale((ledger.VERIFIED,), verified_after_s, batch):
        if entry.payment_id not in in_flight and await _release_stale(store, tracker, entry, now):
            counts[ledger.RELEASED] += 1
    return RecoveryReport(
        settled_unserved=counts[ledger.SETTLED_UNSERVED],
        failed=counts[ledger.FAILED],
        released=counts[ledger.RELEASED],
        unresolved=counts[_STILL_IN_DOUBT],
    )


async def _resolve(
    store: LedgerStore, chain: ChainReader, tracker: Tracker, entry: LedgerEntry, now: Callable[[], float]
) -> str | None:
    """Ask the chain about a settle in doubt and move the row as it says: the
    state moved to, _STILL_IN_DOUBT, or None when the row had moved meanwhile."""
    check = await check_payment(chain, ExpectedTransfer.of(entry), transaction=entry.transaction, now=now)
    move = _move_for(check)
    if move is None:
        return _STILL_IN_DOUBT
    to_state, fields = move
    moved = await store.transition(entry.payment_id, entry.claim_token, ledger.UNRESOLVED, to_state, **fields)
    if moved is None:
        return None
    log.info("recovered payment payer=%s state=%s", entry.payer, to_state)
    if entry.tracking_id is not None:
        recovered = records.recovered_fields(
            entry, to_state, fields.get("transaction", ""), fields.get("settle_reason", ""), now()
        )
        tracker.record(entry.tracking_id, Step.FINALIZE, recovered)
    return to_state


def _move_for(check: ChainCheck) -> tuple[str, dict[str, Any]] | None:
    """Where the chain's answer moves a row in doubt, and what it records; None
    when it stays in doubt."""
    if check.verdict is Verdict.PAID:
        # Money moved but the answer never left: the payer may redeem it once.
        return ledger.SETTLED_UNSERVED, {"reconciled_by": FROM_CHAIN, "served": False, "transaction": check.transaction}
    if check.final:
        # Canceled, spent by another transfer, or expired unused: nothing was
        # paid to us and nothing ever will be.
        return ledger.FAILED, {"reconciled_by": FROM_CHAIN, "settle_reason": check.failure_reason}
    # Unused but still valid (a transaction may yet be mined), or the chain
    # cannot tell: stays in doubt, asked again next time.
    return None


async def _release_stale(store: LedgerStore, tracker: Tracker, entry: LedgerEntry, now: Callable[[], float]) -> bool:
    """Verified but never settled nor released (the caller vanished): nothing was
    sent to a facilitator's settle, so the claim can safely go back."""
    moved = await store.transition(entry.payment_id, entry.claim_token, (ledger.VERIFIED,), ledger.RELEASED)
    if moved is None:
        return False
    if entry.tracking_id is not None:
        # The request that made the claim never finished; its record says why.
        tracker.record(entry.tracking_id, Step.RELEASE, records.stale_release_fields(now()))
    return True
