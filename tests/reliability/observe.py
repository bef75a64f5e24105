"""Reading what the system left behind: ledger rows, tracking records, chain
transfers; and waiting (bounded) for a condition to become true."""

from __future__ import annotations

import asyncio
import base64
import collections
import inspect
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

import asyncpg

from devnet.chain import Chain

T = TypeVar("T")

_JSON_COLUMNS = ("payment", "settlement", "request", "route_config", "metadata", "upto_session")


async def eventually(check: Callable[[], T | Awaitable[T]], what: str, timeout_s: float = 15.0) -> T:
    """Poll `check` (sync or async) until it returns something truthy; fail
    naming `what` after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what} (last: {value!r})")
        await asyncio.sleep(0.02)


async def fetch(database_url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


async def execute(database_url: str, sql: str) -> None:
    """Run SQL (several statements allowed) on its own connection."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def ledger_states(database_url: str, payment_ids: Iterable[str]) -> dict[str, str]:
    rows = await fetch(
        database_url, "SELECT payment_id, state FROM payment_ledger WHERE payment_id = ANY($1::text[])", list(payment_ids)
    )
    return {row["payment_id"]: row["state"] for row in rows}


async def ledger_row(database_url: str, payment_id: str) -> dict[str, Any]:
    (row,) = await fetch(database_url, "SELECT * FROM payment_ledger WHERE payment_id = $1", payment_id)
    return dict(row)


def _decoded(row: asyncpg.Record) -> dict[str, Any]:
    record = dict(row)
    for column in _JSON_COLUMNS:
        if isinstance(record.get(column), str):
            record[column] = json.loads(record[column])
    return record


async def tracking_record(database_url: str, tracking_id: str) -> dict[str, Any] | None:
    rows = await fetch(database_url, "SELECT * FROM resource_call_records WHERE id = $1", uuid.UUID(tracking_id))
    return _decoded(rows[0]) if rows else None


async def tracking_records(database_url: str) -> list[dict[str, Any]]:
    return [_decoded(row) for row in await fetch(database_url, "SELECT * FROM resource_call_records")]


def nonce_of(header: str) -> str:
    """The EIP-3009 nonce a payment header carries."""
    return json.loads(base64.b64decode(header))["payload"]["authorization"]["nonce"].lower()


def transfers_by_nonce(chain: Chain) -> collections.Counter[str]:
    """How many transfers the chain applied for each authorization nonce."""
    return collections.Counter(transfer.nonce.lower() for transfer in chain.transactions())
