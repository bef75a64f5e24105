"""The one place connection pools are built, and what counts as "database down"."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg

from ..payments.errors import LedgerUnavailable

T = TypeVar("T")

# Errors that say the server is unreachable, restarting, overloaded, read-only
# (failover) or the session broke: the same write may succeed later.
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # refused, reset, DNS, and TimeoutError
    asyncpg.InterfaceError,  # pool closed, connection closed under us
    asyncpg.exceptions.InternalClientError,  # protocol state left behind by a broken connection
    asyncpg.PostgresConnectionError,  # class 08
    asyncpg.exceptions.OperatorInterventionError,  # class 57: shutdown, starting up, cancelled
    asyncpg.exceptions.InsufficientResourcesError,  # class 53: too many connections, disk full
    asyncpg.exceptions.ReadOnlySQLTransactionError,  # connected to a standby after failover
    asyncpg.exceptions.TransactionRollbackError,  # serialization failure, deadlock
)


async def _init_connection(conn: asyncpg.Connection) -> None:
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(type_name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Nothing to reset on release: our statements leave no session state behind
    (settings are SET LOCAL, no LISTEN, no session advisory locks outside the
    migration runner's own connection). Skipping asyncpg's reset query saves a
    round trip on every release, which is on the paid request path."""


async def create_pool(dsn: str, *, min_size: int = 2, max_size: int = 10) -> asyncpg.Pool:
    """A pool whose connections read and write json/jsonb as Python objects."""
    return await asyncpg.create_pool(
        dsn, min_size=min_size, max_size=max_size, init=_init_connection, reset=_keep_session
    )


async def on_the_money_path(db_pool: asyncpg.Pool, call: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    """Run `call` on a pooled connection; the database being down is LedgerUnavailable,
    which the payment flows answer without serving (never a traceback)."""
    try:
        async with db_pool.acquire() as conn:
            return await call(conn)
    except UNAVAILABLE_ERRORS as exc:
        raise LedgerUnavailable(str(exc)) from exc
