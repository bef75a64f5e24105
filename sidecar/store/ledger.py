"""payment_ledger SQL: the unique claim that makes a payment settle once and serve
once across concurrent requests, restarts and replicas (money rule 2)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg

from ..payments.ledger import RECLAIMABLE, REDEEMING, SETTLED_UNSERVED, VERIFIED, LedgerEntry
from .db import on_the_money_path

T = TypeVar("T")

CLAIM = """
INSERT INTO payment_ledger (
    payment_id, state, claim_token, route_key, resource, scheme, network, asset, pay_to, amount, payer, nonce,
    valid_before, x402_version, facilitator, requirements, payload_hash, requirements_hash, tracking_id
)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)
ON CONFLICT DO NOTHING
RETURNING *
"""

# A released or failed payment moved no money: the same payload may be claimed again.
RECLAIM = """
UPDATE payment_ledger
SET state = $10, claim_token = $2, route_key = $3, resource = $4, facilitator = $5,
    requirements = $6, requirements_hash = $8, tracking_id = $9, settle_reason = NULL,
    updated_at = now()
WHERE payment_id = $1 AND payload_hash = $7 AND state = ANY($11::text[])
RETURNING *
"""

REDEEM = """
UPDATE payment_ledger SET state = $4, claim_token = $3, updated_at = now()
WHERE payment_id = $1 AND payload_hash = $2 AND state = $5
RETURNING *
"""

GET = "SELECT * FROM payment_ledger WHERE payment_id = $1"

ASYNC_COMMIT = "SET LOCAL synchronous_commit = off"

STALE = """
SELECT * FROM payment_ledger
WHERE state = ANY($1::text[]) AND updated_at < now() - make_interval(secs => $2)
ORDER BY updated_at LIMIT $3
"""

# Columns a state transition may set, besides state and updated_at, in the
# order of their parameters in TRANSITION.
SETTABLE = ("transaction", "settle_reason", "reconciled_by", "served", "served_at", "settle_attempts")

# One statement for every transition: $5 names the columns this one sets; the
# others keep their values (a column set to NULL is set, not kept).
TRANSITION = """
UPDATE payment_ledger
SET state = $4, updated_at = now(),
    transaction     = CASE WHEN 'transaction'     = ANY($5::text[]) THEN $6::text        ELSE transaction END,
    settle_reason   = CASE WHEN 'settle_reason'   = ANY($5::text[]) THEN $7::text        ELSE settle_reason END,
    reconciled_by   = CASE WHEN 'reconciled_by'   = ANY($5::text[]) THEN $8::text        ELSE reconciled_by END,
    served          = CASE WHEN 'served'          = ANY($5::text[]) THEN $9::boolean     ELSE served END,
    served_at       = CASE WHEN 'served_at'       = ANY($5::text[]) THEN $10::timestamptz ELSE served_at END,
    settle_attempts = CASE WHEN 'settle_attempts' = ANY($5::text[]) THEN $11::integer     ELSE settle_attempts END
WHERE payment_id = $1 AND claim_token = $2 AND state = ANY($3::text[])
RETURNING *
"""


def ledger_entry(row: asyncpg.Record) -> LedgerEntry:
    requirements = row["requirements"]
    if isinstance(requirements, str):
        requirements = json.loads(requirements)
    return LedgerEntry(
        payment_id=row["payment_id"],
        state=row["state"],
        claim_token=row["claim_token"],
        route_key=row["route_key"],
        resource=row["resource"] or "",
        scheme=row["scheme"],
        network=row["network"],
        asset=row["asset"],
        pay_to=row["pay_to"],
        amount=int(row["amount"]),
        payer=row["payer"] or "",
        nonce=row["nonce"] or "",
        valid_before=int(row["valid_before"] or 0),
        x402_version=row["x402_version"],
        facilitator=row["facilitator"] or "",
        requirements=requirements,
        payload_hash=row["payload_hash"],
        requirements_hash=row["requirements_hash"],
        tracking_id=row["tracking_id"],
        transaction=row["transaction"] or "",
        settle_reason=row["settle_reason"] or "",
        reconciled_by=row["reconciled_by"] or "",
        served=row["served"],
        settle_attempts=row["settle_attempts"],
    )


async def claim_row(conn: asyncpg.Connection, entry: LedgerEntry) -> asyncpg.Record | None:
    """Claim `entry`'s payment, inside the caller's transaction: a new row, or a
    released or failed one of the same payload claimed again; None if held."""
    # The claim need not wait for its WAL flush: it is visible to every other
    # session at commit either way, and if a crash loses it, no money moved —
    # the move to `settling` (a durable commit) always comes before any settle is sent.
    await conn.execute(ASYNC_COMMIT)
    row = await conn.fetchrow(
        CLAIM,
        entry.payment_id,
        VERIFIED,
        entry.claim_token,
        entry.route_key,
        entry.resource,
        entry.scheme,
        entry.network,
        entry.asset,
        entry.pay_to,
        entry.amount,
        entry.payer,
        entry.nonce,
        entry.valid_before,
        entry.x402_version,
        entry.facilitator,
        entry.requirements,
        entry.payload_hash,
        entry.requirements_hash,
        entry.tracking_id,
    )
    if row is not None:
        return row
    return await conn.fetchrow(
        RECLAIM,
        entry.payment_id,
        entry.claim_token,
        entry.route_key,
        entry.resource,
        entry.facilitator,
        entry.requirements,
        entry.payload_hash,
        entry.requirements_hash,
        entry.tracking_id,
        VERIFIED,
        list(RECLAIMABLE),
    )


class PgLedger:
    def __init__(self, db_pool: asyncpg.Pool) -> None:
        self._db_pool = db_pool

    async def _run(self, call: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        return await on_the_money_path(self._db_pool, call)

    async def get(self, payment_id: str) -> LedgerEntry | None:
        row = await self._run(lambda c: c.fetchrow(GET, payment_id))
        return ledger_entry(row) if row else None

    async def claim(self, entry: LedgerEntry) -> LedgerEntry | None:
        async def claim_in_transaction(conn: asyncpg.Connection) -> asyncpg.Record | None:
            async with conn.transaction():
                return await claim_row(conn, entry)

        row = await self._run(claim_in_transaction)
        return ledger_entry(row) if row else None

    async def transition(
        self, payment_id: str, claim_token: uuid.UUID, from_states: tuple[str, ...], to_state: str, **fields: Any
    ) -> LedgerEntry | None:
        unknown = set(fields).difference(SETTABLE)
        if unknown:
            raise TypeError(f"not settable on the ledger: {sorted(unknown)}")
        sets = list(fields)
        values = [fields.get(name) for name in SETTABLE]
        row = await self._run(
            lambda c: c.fetchrow(TRANSITION, payment_id, claim_token, list(from_states), to_state, sets, *values)
        )
        return ledger_entry(row) if row else None

    async def claim_redeem(self, payment_id: str, payload_hash: str, claim_token: uuid.UUID) -> LedgerEntry | None:
        row = await self._run(
            lambda c: c.fetchrow(REDEEM, payment_id, payload_hash, claim_token, REDEEMING, SETTLED_UNSERVED)
        )
        return ledger_entry(row) if row else None

    async def stale(self, states: tuple[str, ...], older_than_s: float, limit: int) -> list[LedgerEntry]:
        rows = await self._run(lambda c: c.fetch(STALE, list(states), older_than_s, limit))
        return [ledger_entry(row) for row in rows]
