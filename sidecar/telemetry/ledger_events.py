"""The ledger's state changes as events of the request that made them (DESIGN §4
rule 2, §8): `ledger claim`, `ledger redeem`, `ledger <state>` for a transition,
each on the span current at the time (the gRPC server span of the call), with
the state reached (or asked for), how long it took, and `x402.ledger.changed:
false` when the row did not move (held by another claim, not in a state it may
leave).

A state change is a database round trip inside the process, not a hop: an event
costs a fraction of a span, and the stock asyncpg instrumentation's span per
statement (plus the transaction and pool housekeeping around them) would cost
several times more on every request.

The rows it sees also tell the request's x402 facts (route, scheme, network,
payer, amount): a Settle or Release names only the payment, so this is where its
span learns them.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable
from typing import Any

from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.util.types import AttributeValue

from paysidecar_common.trace_attributes import tag_request

from ..payments.ledger import LedgerEntry
from ..payments.ports import LedgerStore
from .payments import timed_event

LEDGER_STATE = "x402.ledger.state"
LEDGER_CHANGED = "x402.ledger.changed"


class TracedLedger:
    """A LedgerStore that records the claims and transitions of the store it wraps."""

    def __init__(self, inner: LedgerStore) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        # Whatever the store offers beyond what is recorded here (reads, and methods
        # added later) is the store's own: tracing must never be what breaks a call.
        return getattr(self._inner, name)

    async def claim(self, entry: LedgerEntry) -> LedgerEntry | None:
        return await _recorded("ledger claim", self._inner.claim(entry), {LEDGER_STATE: entry.state})

    async def claim_redeem(self, payment_id: str, payload_hash: str, claim_token: uuid.UUID) -> LedgerEntry | None:
        return await _recorded("ledger redeem", self._inner.claim_redeem(payment_id, payload_hash, claim_token), {})

    async def transition(
        self, payment_id: str, claim_token: uuid.UUID, from_states: tuple[str, ...], to_state: str, **fields: Any
    ) -> LedgerEntry | None:
        moved = self._inner.transition(payment_id, claim_token, from_states, to_state, **fields)
        return await _recorded(f"ledger {to_state}", moved, {LEDGER_STATE: to_state})


async def _recorded(
    name: str, change: Awaitable[LedgerEntry | None], attributes: dict[str, AttributeValue]
) -> LedgerEntry | None:
    """Await the change; then its event on the current span, and the request's facts
    from the row when it moved."""
    started = time.perf_counter()
    try:
        row = await change
    except Exception as exc:
        timed_event(name, started, {**attributes, LEDGER_CHANGED: False, ERROR_TYPE: type(exc).__name__})
        raise
    if row is None:
        timed_event(name, started, {**attributes, LEDGER_CHANGED: False})
        return row
    tag_request(route=row.route_key, scheme=row.scheme, network=row.network, payer=row.payer, amount=str(row.amount))
    timed_event(name, started, {LEDGER_STATE: row.state})
    return row

