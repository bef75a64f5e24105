"""The collector's SQL (migrations/0008): its claims and settles, the channels due
for a claim or watched for withdrawals, and the advisory locks that let one
replica at a time collect (and one at a time read the channels on chain).

The locks are session locks on a connection held for the run: a replica that
dies drops its connection, and with it the lock."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections.abc import AsyncIterator

import asyncpg

from ..payments.channels.state import Channel, Mirror
from ..payments.collection.records import AtRisk, ChannelAtRisk, ClaimRow, Collection
from .channels import channel_of

log = logging.getLogger(__name__)

TRY_LOCK = "SELECT pg_try_advisory_lock($1)"
UNLOCK = "SELECT pg_advisory_unlock($1)"

DUE = """
SELECT * FROM payment_channels
WHERE charged_cumulative > total_claimed AND voucher_signature IS NOT NULL
  AND (claim_excluded_at IS NULL OR claim_excluded_at < now() - make_interval(secs => $2))
ORDER BY (withdraw_requested_at > 0) DESC, charged_cumulative - total_claimed DESC, channel_id
LIMIT $1
"""

WATCHED = """
SELECT * FROM payment_channels
WHERE charged_cumulative > total_claimed
   OR withdraw_requested_at > 0
   OR last_request_at > now() - make_interval(secs => $1)
   OR (last_request_at IS NULL AND synced_at > now() - make_interval(secs => $1))
ORDER BY channel_id
LIMIT $2
"""

# totalClaimed never goes down on chain: a read older than ours never lowers it.
OBSERVE = """
UPDATE payment_channels
SET balance = $2, total_claimed = greatest(total_claimed, $3), withdraw_requested_at = $4, refund_nonce = $5,
    synced_at = now(), updated_at = now()
WHERE channel_id = $1
RETURNING *
"""

TOUCH = """
UPDATE payment_channels SET synced_at = now() WHERE channel_id = ANY($1::text[])
"""

CLAIMED = """
UPDATE payment_channels AS c
SET total_claimed = greatest(c.total_claimed, r.total), claim_excluded_reason = NULL, claim_excluded_at = NULL,
    updated_at = now()
FROM unnest($1::text[], $2::numeric[]) AS r(channel_id, total)
WHERE c.channel_id = r.channel_id
"""

EXCLUDE = """
UPDATE payment_channels SET claim_excluded_reason = $2, claim_excluded_at = now(), updated_at = now()
WHERE channel_id = $1
"""

RECORD = """
INSERT INTO channel_collections (id, kind, network, receiver, token, channels, amount, state, transaction, facilitator)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
"""

DECIDE = """
UPDATE channel_collections
SET state = $2, transaction = $3, facilitator = $4, reason = $5, decided_by = $6, amount = $7,
    decided_at = CASE WHEN $2 IN ('pending', 'in_doubt') THEN NULL ELSE now() END
WHERE id = $1
"""

OPEN = """
SELECT * FROM channel_collections WHERE state IN ('pending', 'in_doubt') ORDER BY created_at LIMIT $1
"""

AT_RISK = """
SELECT coalesce(sum(charged_cumulative - total_claimed), 0) AS total,
       count(*) AS channels,
       count(*) FILTER (WHERE withdraw_requested_at > 0) AS withdrawing
FROM payment_channels
WHERE charged_cumulative > total_claimed
"""

TOP_AT_RISK = """
SELECT channel_id, payer, charged_cumulative - total_claimed AS unclaimed, withdraw_requested_at
FROM payment_channels
WHERE charged_cumulative > total_claimed
ORDER BY unclaimed DESC, channel_id
LIMIT $1
"""

UNSETTLED_ACCOUNTS = """
SELECT DISTINCT c.network, c.receiver, c.token
FROM channel_collections AS c
WHERE c.kind = 'claim' AND c.state = 'done'
  AND c.decided_at > coalesce(
      (SELECT max(s.decided_at) FROM channel_collections AS s
       WHERE s.kind = 'settle' AND s.state = 'done'
         AND (s.network, s.receiver, s.token) = (c.network, c.receiver, c.token)),
      '-infinity')
"""

COLLECTIONS_SUMMARY = """
SELECT (SELECT max(decided_at) FROM channel_collections WHERE kind = 'claim' AND state = 'done') AS last_claim_at,
       (SELECT count(*) FROM channel_collections
        WHERE state IN ('failed', 'lapsed') AND created_at > now() - interval '24 hours') AS failures_24h,
       (SELECT count(*) FROM channel_collections WHERE state IN ('pending', 'in_doubt')) AS open_intents
"""


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory lock key per collector lock name."""
    digest = hashlib.sha256(f"paysidecar.collector.{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _collection(row: asyncpg.Record) -> Collection:
    return Collection(
        id=row["id"],
        kind=row["kind"],
        network=row["network"],
        receiver=row["receiver"],
        token=row["token"],
        rows=tuple(ClaimRow.of_json(item) for item in row["channels"]),
        amount=int(row["amount"]),
        state=row["state"],
        transaction=row["transaction"],
        facilitator=row["facilitator"],
        reason=row["reason"],
        decided_by=row["decided_by"],
        created_at=row["created_at"],
    )


class PgCollections:
    """The CollectionStore port (payments/ports.py) on PostgreSQL."""

    def __init__(self, db_pool: asyncpg.Pool) -> None:
        self._db_pool = db_pool

    @contextlib.asynccontextmanager
    async def lock(self, name: str) -> AsyncIterator[bool]:
        key = lock_key(name)
        async with self._db_pool.acquire() as conn:
            held = await conn.fetchval(TRY_LOCK, key)
            try:
                yield bool(held)
            finally:
                if held:
                    try:
                        await conn.fetchval(UNLOCK, key)
                    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
                        # The session may still hold it: end the session, and the lock with it.
                        conn.terminate()

    async def due(self, limit: int, retry_s: float) -> list[Channel]:
        rows = await self._db_pool.fetch(DUE, limit, retry_s)
        return [channel_of(row) for row in rows]

    async def watched(self, active_s: float, limit: int) -> list[Channel]:
        rows = await self._db_pool.fetch(WATCHED, active_s, limit)
        return [channel_of(row) for row in rows]

    async def observe(self, channel_id: str, mirror: Mirror) -> Channel | None:
        row = await self._db_pool.fetchrow(
            OBSERVE, channel_id, mirror.balance, mirror.total_claimed, mirror.withdraw_requested_at, mirror.refund_nonce
        )
        return channel_of(row) if row else None

    async def touch(self, channel_ids: list[str]) -> None:
        if channel_ids:
            await self._db_pool.execute(TOUCH, channel_ids)

    async def claimed(self, rows: list[tuple[str, int]]) -> None:
        if rows:
            await self._db_pool.execute(CLAIMED, [row[0] for row in rows], [row[1] for row in rows])

    async def exclude(self, channel_id: str, reason: str) -> None:
        await self._db_pool.execute(EXCLUDE, channel_id, reason)

    async def record(self, collection: Collection) -> None:
        c = collection
        await self._db_pool.execute(
            RECORD,
            c.id,
            c.kind,
            c.network,
            c.receiver,
            c.token,
            [row.as_json() for row in c.rows],
            c.amount,
            c.state,
            c.transaction,
            c.facilitator,
        )

    async def decide(self, collection: Collection) -> None:
        c = collection
        await self._db_pool.execute(DECIDE, c.id, c.state, c.transaction, c.facilitator, c.reason, c.decided_by, c.amount)

    async def unsettled_accounts(self) -> list[tuple[str, str, str]]:
        rows = await self._db_pool.fetch(UNSETTLED_ACCOUNTS)
        return [(row["network"], row["receiver"], row["token"]) for row in rows]

    async def open(self, limit: int) -> list[Collection]:
        return [_collection(row) for row in await self._db_pool.fetch(OPEN, limit)]

    async def at_risk(self, top: int) -> AtRisk:
        async with self._db_pool.acquire() as conn:
            totals = await conn.fetchrow(AT_RISK)
            channels = await conn.fetch(TOP_AT_RISK, top) if top > 0 else []
            summary = await conn.fetchrow(COLLECTIONS_SUMMARY)
        return AtRisk(
            total=int(totals["total"]),
            channels=totals["channels"],
            withdrawing=totals["withdrawing"],
            top=tuple(
                ChannelAtRisk(row["channel_id"], row["payer"], int(row["unclaimed"]), row["withdraw_requested_at"])
                for row in channels
            ),
            last_claim_at=summary["last_claim_at"],
            failures_24h=summary["failures_24h"],
            open_intents=summary["open_intents"],
        )
