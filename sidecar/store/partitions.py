"""The time partitions of the tracking table (DESIGN §11): created ahead of the
clock, dropped whole once retention has passed them.

The partition DDL lives in SQL functions (migrations/0005_partition_tracking.sql)
that run as the table's owner, so a sidecar logged in as a member of
paysidecar_writer keeps its partitions too. Rows no partition covers go to the
default partition, so a write never fails for lack of one: creating the
partition of their range later moves them into it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import asyncpg

logger = logging.getLogger(__name__)

Period = Literal["day", "month"]

# Partitions for now and the next `ahead_days` days, one per period.
CREATE_AHEAD = "SELECT resource_call_records_create_partitions($1, now(), now() + make_interval(days => $2))"
DROP_BEFORE = "SELECT resource_call_records_drop_partitions($1)"
# Dropping a partition locks the parent exclusively for a moment; waiting longer than
# this behind a long query would hold up every reader and writer queued behind the
# drop, so it gives up (LockNotAvailableError) and the next run tries again.
DROP_LOCK_TIMEOUT = "SET LOCAL lock_timeout = '3s'"
LIST = """
SELECT partition::text AS name, is_default, lower_bound, upper_bound
FROM resource_call_records_partitions
ORDER BY is_default, lower_bound NULLS FIRST
"""


@dataclass(frozen=True)
class Partition:
    name: str
    is_default: bool
    lower: datetime | None  # None: unbounded below (or the default partition)
    upper: datetime | None  # None: the default partition


async def list_partitions(pool: asyncpg.Pool) -> list[Partition]:
    """The range partitions oldest first, then the default one."""
    rows = await pool.fetch(LIST)
    return [Partition(r["name"], r["is_default"], r["lower_bound"], r["upper_bound"]) for r in rows]


async def create_ahead(pool: asyncpg.Pool, period: Period, ahead_days: int) -> int:
    """Create the missing partitions from the current period to `ahead_days` days
    from now; return how many were created."""
    return await pool.fetchval(CREATE_AHEAD, period, ahead_days)


async def keep_ahead(pool: asyncpg.Pool, period: Period, ahead_days: int) -> None:
    """create_ahead() for the sidecar's job: a failure is logged and the next run
    tries again (meanwhile the default partition takes the rows)."""
    try:
        made = await create_ahead(pool, period, ahead_days)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        logger.warning("tracking partitions: could not create (%s: %s); retrying later", type(exc).__name__, exc)
        return
    if made:
        logger.info("tracking partitions: created %d (one per %s, %d days ahead)", made, period, ahead_days)


async def drop_before(pool: asyncpg.Pool, cutoff: datetime) -> int:
    """Drop every partition wholly older than `cutoff`; return the rows they held."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(DROP_LOCK_TIMEOUT)
        return await conn.fetchval(DROP_BEFORE, cutoff)
