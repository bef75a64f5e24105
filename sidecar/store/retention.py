"""The periodic job that deletes tracking records past the retention period."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

import asyncpg

from ..payments.retention import prune_cutoff
from .tracking_queries import prune

logger = logging.getLogger(__name__)


async def run_retention(
    pool: asyncpg.Pool, retention_days: int, interval_s: float, stop: asyncio.Event, *, min_retention_days: int
) -> None:
    """Prune now and then every interval_s until `stop` is set. A failed run
    (database away) is logged and retried at the next interval."""
    while not stop.is_set():
        # The rule Prune follows holds here too (settings check it at start).
        cutoff = prune_cutoff(
            None, datetime.now(UTC), retention_days=retention_days, min_retention_days=min_retention_days
        )
        try:
            deleted = await prune(pool, cutoff)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            logger.warning("tracking retention: prune failed (%s: %s); retrying in %.0fs", type(exc).__name__, exc, interval_s)
        else:
            if deleted:
                logger.info("tracking retention: deleted %d records older than %s", deleted, cutoff.isoformat())
        try:
            await asyncio.wait_for(stop.wait(), interval_s)
        except TimeoutError:
            pass
