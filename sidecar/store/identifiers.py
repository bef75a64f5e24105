"""payment_identifiers SQL: a payer's payment-identifier id bound to one request
and one payment (payments/idempotency.py), claimed together with that payment's
ledger row so that concurrent payments with one id settle once."""

from __future__ import annotations

import uuid

import asyncpg

from ..payments.idempotency import Binding, IdentifiedRequest
from ..payments.ledger import RECLAIMABLE, LedgerEntry
from .db import on_the_money_path
from .ledger import claim_row, ledger_entry

_COLUMNS = """
payer, identifier, fingerprint, payment_id, replay_tracking_id,
extract(epoch FROM now() - bound_at)::float8 AS age_s
"""

GET = f"SELECT {_COLUMNS} FROM payment_identifiers WHERE payer = $1 AND identifier = $2"

BIND = """
INSERT INTO payment_identifiers (payer, identifier, fingerprint, payment_id)
VALUES ($1, $2, $3, $4)
ON CONFLICT DO NOTHING
RETURNING payer
"""

# An id whose payment moved no money (released, failed) binds nothing: the
# payment claimed now takes it, with its own request and a new window. So does
# the same payment claimed again (its row was reclaimable a moment ago).
REBIND = """
UPDATE payment_identifiers AS i
SET fingerprint = $3, payment_id = $4, bound_at = now(),
    replay_token = NULL, replay_at = NULL, replay_tracking_id = NULL
FROM payment_ledger AS l
WHERE i.payer = $1 AND i.identifier = $2 AND l.payment_id = i.payment_id
  AND (i.payment_id = $4 OR l.state = ANY($5::text[]))
RETURNING i.payer
"""

# One replay at a time; a replay whose caller vanished holds the id no longer
# than the timeout.
TAKE_REPLAY = """
UPDATE payment_identifiers
SET replay_token = $4, replay_at = now(), replay_tracking_id = $5
WHERE payer = $1 AND identifier = $2 AND payment_id = $3
  AND (replay_token IS NULL OR replay_at < now() - make_interval(secs => $6))
RETURNING payer
"""

REPLAY_HELD = f"SELECT {_COLUMNS} FROM payment_identifiers WHERE payment_id = $1 AND replay_token = $2"

END_REPLAY = """
UPDATE payment_identifiers SET replay_token = NULL, replay_at = NULL, replay_tracking_id = NULL
WHERE payment_id = $1 AND replay_token = $2
RETURNING payer
"""


class _Held(Exception):
    """The id is bound to a payment still holding it: the claim is undone."""


def _binding(row: asyncpg.Record) -> Binding:
    return Binding(
        payer=row["payer"],
        identifier=row["identifier"],
        fingerprint=row["fingerprint"],
        payment_id=row["payment_id"],
        age_s=row["age_s"],
        replay_tracking_id=row["replay_tracking_id"],
    )


class PgIdentifiers:
    def __init__(self, db_pool: asyncpg.Pool) -> None:
        self._db_pool = db_pool

    async def get(self, payer: str, identifier: str) -> Binding | None:
        row = await on_the_money_path(self._db_pool, lambda c: c.fetchrow(GET, payer, identifier))
        return _binding(row) if row else None

    async def claim(self, entry: LedgerEntry, request: IdentifiedRequest) -> LedgerEntry | None:
        bind = (request.payer, request.identifier, request.fingerprint, entry.payment_id)

        async def claim_and_bind(conn: asyncpg.Connection) -> asyncpg.Record | None:
            try:
                async with conn.transaction():
                    row = await claim_row(conn, entry)
                    if row is None:
                        return None
                    bound = await conn.fetchval(BIND, *bind)
                    if bound is None and await conn.fetchval(REBIND, *bind, list(RECLAIMABLE)) is None:
                        raise _Held
                    return row
            except _Held:
                return None

        row = await on_the_money_path(self._db_pool, claim_and_bind)
        return ledger_entry(row) if row else None

    async def take_replay(
        self, binding: Binding, claim_token: uuid.UUID, tracking_id: uuid.UUID, timeout_s: float
    ) -> bool:
        args = (binding.payer, binding.identifier, binding.payment_id, claim_token, tracking_id, timeout_s)
        return await on_the_money_path(self._db_pool, lambda c: c.fetchval(TAKE_REPLAY, *args)) is not None

    async def replay_held(self, payment_id: str, claim_token: uuid.UUID) -> Binding | None:
        row = await on_the_money_path(self._db_pool, lambda c: c.fetchrow(REPLAY_HELD, payment_id, claim_token))
        return _binding(row) if row else None

    async def end_replay(self, payment_id: str, claim_token: uuid.UUID) -> bool:
        ended = await on_the_money_path(self._db_pool, lambda c: c.fetchval(END_REPLAY, payment_id, claim_token))
        return ended is not None
