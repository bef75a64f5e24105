"""Resolve ledger rows a crash or an unknown settle left behind — by asking the
chain, never by guessing (DESIGN §4 rule 4). A row in doubt stays in doubt until
the chain shows this payment's transfer, or shows that no transfer ever will."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Container
from dataclasses import dataclass

from . import ledger
from ..constants import RELEASE_STALE_CLAIM
from .lifecycle import Step
from .ports import ChainReader, LedgerStore, Tracker
from .settlement import FROM_CHAIN
from .used_nonce import ExpectedTransfer, Verdict, check_payment

log = logging.getLogger(__name__)

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
    counts = {ledger.SETTLED_UNSERVED: 0, ledger.FAILED: 0, ledger.RELEASED: 0, "unresolved": 0}
    for entry in await store.stale(ledger.UNRESOLVED, unresolved_after_s, batch):
        check = await check_payment(chain, ExpectedTransfer.of(entry), transaction=entry.transaction, now=now)
        if check.verdict is Verdict.PAID:
            # Money moved but the answer never left: the payer may redeem it once.
            to_state = ledger.SETTLED_UNSERVED
            fields = {"reconciled_by": FROM_CHAIN, "served": False, "transaction": check.transaction}
        elif check.final:
            # Canceled, spent by another transfer, or expired unused: nothing was
            # paid to us and nothing ever will be.
            to_state, fields = ledger.FAILED, {"reconciled_by": FROM_CHAIN, "settle_reason": check.failure_reason}
        else:
            # Unused but still valid (a transaction may yet be mined), or the chain
            # cannot tell: stays in doubt, asked again next time.
            counts["unresolved"] += 1
            continue
        moved = await store.transition(entry.payment_id, entry.claim_token, ledger.UNRESOLVED, to_state, **fields)
        if moved is None:
            continue
        counts[to_state] += 1
        log.info("recovered payment payer=%s state=%s", entry.payer, to_state)
        if entry.tracking_id is not None:
            settlement = {
                "success": to_state == ledger.SETTLED_UNSERVED,
                "status": to_state,
                "transaction": fields.get("transaction") or None,
                "network": entry.network,
                "error_reason": fields.get("settle_reason"),
                "payer": entry.payer,
                "facilitator": entry.facilitator,
                "reconciled": True,
                "source": FROM_CHAIN,
            }
            tracker.record(
                entry.tracking_id,
                Step.FINALIZE,
                {"settlement": settlement, "metadata": {"recovered": {"state": to_state, "at": now()}}},
            )

    # Verified but never settled nor released (the caller vanished): nothing was
    # sent to a facilitator's settle, so the claim can safely go back.
    for entry in await store.stale((ledger.VERIFIED,), verified_after_s, batch):
        if entry.payment_id in in_flight:
            continue
        moved = await store.transition(entry.payment_id, entry.claim_token, (ledger.VERIFIED,), ledger.RELEASED)
        if moved is None:
            continue
        counts[ledger.RELEASED] += 1
        if entry.tracking_id is not None:
            # The request that made the claim never finished; its record says why.
            released = {"success": False, "released": True, "reason": RELEASE_STALE_CLAIM, "ledger_state": ledger.RELEASED}
            tracker.record(
                entry.tracking_id,
                Step.RELEASE,
                {"settlement": released, "metadata": {"recovered": {"state": ledger.RELEASED, "at": now()}}},
            )
    return RecoveryReport(**counts)
