"""Spans for the ledger's state changes: each claim and each transition (DESIGN §4
rule 2, §8), as a database client span of the request that made it.

One span per state change instead of the stock asyncpg instrumentation's one per
statement: a request's claim and settle transitions are what a reader of its
trace wants, and the statement-level spans (plus the transaction and pool
housekeeping around them) cost several times more on every request.
"""

from __future__ import annotations

import uuid
from typing import Any

from opentelemetry import trace
from opentelemetry.semconv.attributes.db_attributes import DB_OPERATION_NAME, DB_SYSTEM_NAME
from opentelemetry.trace import SpanKind

from ..payments.ledger import LedgerEntry
from ..payments.ports import LedgerStore

LEDGER_FROM = "x402.ledger.from"
LEDGER_TO = "x402.ledger.to"
LEDGER_CHANGED = "x402.ledger.changed"

_tracer = trace.get_tracer(__name__)
_DB = {DB_SYSTEM_NAME: "postgresql"}


class TracedLedger:
    """A LedgerStore that traces claims and transitions of the store it wraps."""

    def __init__(self, inner: LedgerStore) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        # Whatever the store offers beyond what is traced here (reads, and methods
        # added later) is the store's own: tracing must never be what breaks a call.
        return getattr(self._inner, name)

    async def claim(self, entry: LedgerEntry) -> LedgerEntry | None:
        attributes = {**_DB, DB_OPERATION_NAME: "claim", LEDGER_TO: entry.state}
        with _tracer.start_as_current_span("ledger claim", kind=SpanKind.CLIENT, attributes=attributes) as span:
            claimed = await self._inner.claim(entry)
            span.set_attribute(LEDGER_CHANGED, claimed is not None)
            return claimed

    async def claim_redeem(self, payment_id: str, payload_hash: str, claim_token: uuid.UUID) -> LedgerEntry | None:
        attributes = {**_DB, DB_OPERATION_NAME: "claim_redeem"}
        with _tracer.start_as_current_span("ledger redeem", kind=SpanKind.CLIENT, attributes=attributes) as span:
            claimed = await self._inner.claim_redeem(payment_id, payload_hash, claim_token)
            span.set_attribute(LEDGER_CHANGED, claimed is not None)
            return claimed

    async def transition(
        self, payment_id: str, claim_token: uuid.UUID, from_states: tuple[str, ...], to_state: str, **fields: Any
    ) -> LedgerEntry | None:
        attributes = {**_DB, DB_OPERATION_NAME: "transition", LEDGER_FROM: from_states, LEDGER_TO: to_state}
        with _tracer.start_as_current_span(f"ledger {to_state}", kind=SpanKind.CLIENT, attributes=attributes) as span:
            moved = await self._inner.transition(payment_id, claim_token, from_states, to_state, **fields)
            span.set_attribute(LEDGER_CHANGED, moved is not None)
            return moved
