"""Reading and pruning tracking records: list with filters and a keyset cursor,
one record, stats for a time range, and retention (whole partitions dropped,
the rest deleted in batches).

The table is partitioned by day (sidecar/store/partitions.py): every query that
can name a time range does, so PostgreSQL reads only the partitions of that range.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import math
import re
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from ..constants import Reason
from ..payments.errors import InvalidRequest
from ..payments.record_queries import DEFAULT_LIMIT, MAX_LIMIT, RecordPage, RecordQuery, SortBy, Stats
from .partitions import drop_before
from .schema import TABLE

# `total` is exact up to this many matching records; above, it is PostgreSQL's
# estimate (an exact count of millions of rows takes seconds). The estimate comes
# first: when it is far above the bound nothing is counted. (A partition not yet
# analysed is guessed at a few hundred rows, so small tables are still counted.)
EXACT_TOTAL_UP_TO = 1000
_COUNT_WHEN_EXPECTED_BELOW = 100 * EXACT_TOTAL_UP_TO
# A page by time looks in the day next to its anchor first, then the week, then
# everywhere: most pages are found in one or two daily partitions.
_WINDOWS = (timedelta(days=1), timedelta(days=7))

# Sort keys; both never NULL, so (key, id) row comparisons hold for every row.
_SORT_KEYS: dict[str, str] = {
    "timestamp": '"timestamp"',
    "response_time": "coalesce(response_time_ms, 0)",
}

_PATH = "path = {}"
_NETWORK = "payment ->> 'network' = {}"
_SCHEME = "payment ->> 'scheme' = {}"
_PAYER = "payment ->> 'payer' = {}"
_FROM = '"timestamp" >= {}'
_UNTIL = '"timestamp" < {}'
_NOT_AFTER = '"timestamp" <= {}'
_VERIFIED = {True: "payment_verified", False: "payment_verified IS NOT TRUE"}
_SETTLED = {True: "settlement ->> 'success' = 'true'", False: "settlement ->> 'success' IS DISTINCT FROM 'true'"}

GET_RECORD = f"SELECT * FROM {TABLE} WHERE id = $1"

# Stats read every record of the range once, grouped two ways in the same pass:
# by what the figures break down by (a few hundred groups at most) and by response
# time (for the average and the exact 95th percentile); the sums are made here.
# Amounts are atomic units, summed as numeric and returned as text, never floats;
# an amount that is not a plain integer string (1 to 78 digits; checked with
# translate(), half the cost of a regular expression) is left out rather than
# failing the stats.
STATS = """
SELECT GROUPING(response_time_ms) = 0 AS by_time, path, network, scheme, asset, settled,
       payment_required, payment_verified, response_time_ms, count(*) AS n, sum(amount)::text AS volume
FROM (SELECT coalesce(path, '') AS path, payment ->> 'network' AS network, payment ->> 'scheme' AS scheme,
             coalesce(payment ->> 'asset', '') AS asset,
             CASE WHEN settlement ->> 'success' = 'true' THEN 1 WHEN settlement ? 'success' THEN 2 ELSE 0 END AS settled,
             CASE WHEN settlement ->> 'success' = 'true' AND payment ->> 'amount' <> ''
                       AND length(payment ->> 'amount') <= 78
                       AND translate(payment ->> 'amount', '0123456789', '') = ''
                  THEN (payment ->> 'amount')::numeric END AS amount,
             payment_required, payment_verified, response_time_ms
      FROM {table} WHERE {where}) AS r
GROUP BY GROUPING SETS ((path, network, scheme, asset, settled, payment_required, payment_verified), (response_time_ms))
"""
_SUCCEEDED, _FAILED = 1, 2  # `settled` above: a settlement with success true / attempted and not true
# Hash aggregation for the grouping sets: PostgreSQL sorts instead when it fears
# its guess of the groups (far above the real few hundred) outgrows work_mem.
STATS_WORK_MEM = "SET LOCAL work_mem = '64MB'"
# PostgreSQL runs a grouping-sets query on one core; a range of at least two hours
# is cut in this many parts read side by side, on connections sharing one snapshot.
STATS_PARTS = 2
SHARE_SNAPSHOT = "SELECT pg_export_snapshot()"

# Oldest first through the timestamp index; the outer condition on "timestamp"
# keeps the DELETE to the partitions before the cutoff.
PRUNE = f"""
DELETE FROM {TABLE}
WHERE "timestamp" < $1
  AND (id, "timestamp") IN (SELECT id, "timestamp" FROM {TABLE} WHERE "timestamp" < $1 ORDER BY "timestamp" LIMIT $2)
"""


class _Where:
    """AND-ed conditions with their $n parameters, numbered as they are added."""

    def __init__(self) -> None:
        self.conditions: list[str] = []
        self.args: list[Any] = []

    def add(self, condition: str, *values: Any) -> None:
        numbers = range(len(self.args) + 1, len(self.args) + 1 + len(values))
        self.conditions.append(condition.format(*(f"${n}" for n in numbers)))
        self.args.extend(values)

    def plus(self, condition: str | None, *values: Any) -> _Where:
        """A copy with one more condition (none when `condition` is None)."""
        copy = _Where()
        copy.conditions, copy.args = list(self.conditions), list(self.args)
        if condition is not None:
            copy.add(condition, *values)
        return copy

    def sql(self) -> str:
        return " AND ".join(self.conditions) or "TRUE"


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _time_range(where: _Where, start: datetime | None, end: datetime | None) -> None:
    if start is not None:
        where.add(_FROM, _aware(start))
    if end is not None:
        where.add(_UNTIL, _aware(end))


def encode_cursor(sort_by: str, ascending: bool, key: Any, record_id: uuid.UUID) -> str:
    value = key.isoformat() if isinstance(key, datetime) else key
    data = json.dumps({"s": sort_by, "a": ascending, "k": value, "id": str(record_id)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(data.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, sort_by: str, ascending: bool) -> tuple[Any, uuid.UUID]:
    """The (sort key, id) a cursor points after; InvalidRequest for anything else."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
        record_id = uuid.UUID(data["id"])
        key = data["k"]
        if data["s"] != sort_by or data["a"] != ascending:
            raise ValueError("cursor belongs to another sort order")
        if sort_by == "timestamp":
            key = _aware(datetime.fromisoformat(key))
        elif isinstance(key, bool) or not isinstance(key, int):
            raise ValueError("bad sort key")
    except (binascii.Error, UnicodeDecodeError, TypeError, KeyError, AttributeError, ValueError) as exc:
        # Not which Python error it was: that says nothing to the caller.
        raise InvalidRequest(
            Reason.INVALID_ARGUMENT, "invalid cursor: use the next_cursor of the previous page"
        ) from exc
    return key, record_id


async def list_records(
    pool: asyncpg.Pool,
    *,
    path: str | None = None,
    network: str | None = None,
    scheme: str | None = None,
    payer: str | None = None,
    verified: bool | None = None,
    settled: bool | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    sort_by: SortBy = "timestamp",
    ascending: bool = False,
    limit: int = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> RecordPage:
    """One page of records, newest (or slowest) first unless ascending. Pages
    follow a keyset cursor on (sort key, id), so each row shows up exactly once
    across pages even when sort keys tie. `total` counts every record the
    filters match (not only those after the cursor): exactly up to
    EXACT_TOTAL_UP_TO, PostgreSQL's estimate above."""
    if sort_by not in _SORT_KEYS:
        raise ValueError(f"sort_by must be one of {', '.join(_SORT_KEYS)}")
    limit = min(max(int(limit), 1), MAX_LIMIT)
    start, end = (_aware(start) if start else None), (_aware(end) if end else None)
    where = _Where()
    for condition, value in ((_PATH, path), (_NETWORK, network), (_SCHEME, scheme), (_PAYER, payer)):
        if value:
            if "\x00" in value:  # PostgreSQL text cannot hold NUL: no row could match
                raise InvalidRequest(Reason.INVALID_ARGUMENT, "filters may not contain NUL characters")
            where.add(condition, value)
    if verified is not None:
        where.add(_VERIFIED[verified])
    if settled is not None:
        where.add(_SETTLED[settled])
    _time_range(where, start, end)
    matching = where.plus(None)

    key = _SORT_KEYS[sort_by]
    direction = "ASC" if ascending else "DESC"
    after = None
    if cursor:
        after, after_id = decode_cursor(cursor, sort_by, ascending)
        where.add(f"({key}, id) {'>' if ascending else '<'} ({{}}, {{}})", after, after_id)
        if sort_by == "timestamp":  # the same bound alone, which PostgreSQL prunes partitions by
            where.add(_FROM if ascending else _NOT_AFTER, after)
    windows = _windows(start, end, after, ascending) if sort_by == "timestamp" else [None]
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        for bound in windows:
            window = where.plus(None if bound is None else _UNTIL if ascending else _FROM, bound)
            rows = await conn.fetch(
                f"SELECT *, {key} AS sort_key FROM {TABLE} WHERE {window.sql()} "
                f"ORDER BY {key} {direction}, id {direction} LIMIT {limit + 1}",
                *window.args,
            )
            if len(rows) > limit:
                break
        has_more = len(rows) > limit
        total = len(rows) if cursor is None and not has_more else await _total(conn, matching)
    rows = rows[:limit]
    next_cursor = None
    if has_more:
        last = rows[-1]
        next_cursor = encode_cursor(sort_by, ascending, last["sort_key"], last["id"])
    records = []
    for row in rows:
        record = dict(row)
        del record["sort_key"]
        records.append(record)
    return RecordPage(records=records, total=total, has_more=has_more, next_cursor=next_cursor)


def _windows(
    start: datetime | None, end: datetime | None, after: datetime | None, ascending: bool
) -> list[datetime | None]:
    """The bounds a page by time tries in turn, lower bounds newest first and
    upper bounds oldest first, ending with None (the whole range): a day, then a
    week away from the anchor, which is the cursor or the range's near end (now
    when newest first with no end; no windows when oldest first with no start).
    A window that would reach past the range's far end is the range itself."""
    if ascending:
        anchors, far, step = [t for t in (start, after) if t is not None], end, 1
        anchor = max(anchors) if anchors else None
    else:
        anchors, far, step = [t for t in (end, after) if t is not None], start, -1
        anchor = min(anchors) if anchors else datetime.now(UTC)
    bounds: list[datetime | None] = []
    for span in _WINDOWS if anchor is not None else ():
        try:
            bound = anchor + step * span
        except OverflowError:  # within a week of datetime's own limits
            break
        if far is not None and (bound >= far if ascending else bound <= far):
            break
        bounds.append(bound)
    return [*bounds, None]


async def _total(conn: asyncpg.Connection, where: _Where) -> int:
    """Records matching `where`: counted up to EXACT_TOTAL_UP_TO + 1, or
    PostgreSQL's estimate when that expects far more (counting those would read
    rows for nothing) or the count reaches the bound."""
    plan = await conn.fetchval(f"EXPLAIN (FORMAT JSON) SELECT 1 FROM {TABLE} WHERE {where.sql()}", *where.args)
    estimate = int(plan[0]["Plan"]["Plan Rows"])
    if estimate > _COUNT_WHEN_EXPECTED_BELOW:
        return estimate
    counted = await conn.fetchval(
        f"SELECT count(*) FROM (SELECT 1 FROM {TABLE} WHERE {where.sql()} LIMIT {EXACT_TOTAL_UP_TO + 1}) AS s",
        *where.args,
    )
    return counted if counted <= EXACT_TOTAL_UP_TO else max(estimate, counted)


def _record_id(record_id: uuid.UUID | str) -> uuid.UUID:
    if isinstance(record_id, uuid.UUID):
        return record_id
    try:
        return uuid.UUID(record_id)
    except (TypeError, ValueError, AttributeError) as exc:
        raise ValueError("record id must be a UUID") from exc


async def get_record(pool: asyncpg.Pool, record_id: uuid.UUID | str) -> dict[str, Any] | None:
    row = await pool.fetchrow(GET_RECORD, _record_id(record_id))
    return dict(row) if row is not None else None


async def get_stats(pool: asyncpg.Pool, start: datetime | None = None, end: datetime | None = None) -> Stats:
    """Figures for records with start <= timestamp < end (either bound optional)."""
    start, end = (_aware(start) if start else None), (_aware(end) if end else None)
    parts = [(start, end)]
    if start is not None and end is not None and end - start >= timedelta(hours=2):
        step = (end - start) / STATS_PARTS
        parts = [(start + i * step, end if i == STATS_PARTS - 1 else start + (i + 1) * step) for i in range(STATS_PARTS)]
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        await conn.execute(STATS_WORK_MEM)
        if len(parts) == 1:
            groups = await _stats_groups(conn, start, end)
        else:
            snapshot = await conn.fetchval(SHARE_SNAPSHOT)
            others = [asyncio.create_task(_stats_groups_in(pool, snapshot, *part)) for part in parts[1:]]
            try:
                groups = list(await _stats_groups(conn, *parts[0]))
                for other in others:
                    groups += await other
            finally:  # on a failure, no part keeps running on its own
                for other in others:
                    other.cancel()
                await asyncio.gather(*others, return_exceptions=True)
    return _stats(groups)


async def _stats_groups(conn: asyncpg.Connection, start: datetime | None, end: datetime | None) -> list[asyncpg.Record]:
    where = _Where()
    _time_range(where, start, end)
    return await conn.fetch(STATS.format(table=TABLE, where=where.sql()), *where.args)


async def _stats_groups_in(pool: asyncpg.Pool, snapshot: str, start: datetime, end: datetime) -> list[asyncpg.Record]:
    """_stats_groups on another connection, in the snapshot of the first one."""
    if not re.fullmatch(r"[0-9A-F-]+", snapshot):
        raise RuntimeError(f"unexpected snapshot id {snapshot!r}")
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        await conn.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
        await conn.execute(STATS_WORK_MEM)
        return await _stats_groups(conn, start, end)


def _stats(groups: list[asyncpg.Record]) -> Stats:
    """Sum the groups of STATS (from one or several parts of the range)."""
    counts: Counter[str] = Counter()
    by_path: Counter[str] = Counter()
    by_network: Counter[str] = Counter()
    by_scheme: Counter[str] = Counter()
    volume_by_network: Counter[str] = Counter()
    volume_by_network_asset: Counter[str] = Counter()
    times: Counter[int] = Counter()
    for group in groups:
        n = group["n"]
        if group["by_time"]:
            if group["response_time_ms"] is not None:
                times[group["response_time_ms"]] += n
            continue
        counts["total"] += n
        counts["required"] += n if group["payment_required"] else 0
        counts["verified"] += n if group["payment_verified"] else 0
        counts["succeeded"] += n if group["settled"] == _SUCCEEDED else 0
        counts["failed"] += n if group["settled"] == _FAILED else 0
        by_path[group["path"]] += n
        if group["scheme"] is not None:
            by_scheme[group["scheme"]] += n
        network = group["network"]
        if network is None:
            continue
        by_network[network] += n
        if group["volume"] is not None:
            volume = int(group["volume"])
            volume_by_network[network] += volume
            volume_by_network_asset[f"{network}:{group['asset']}"] += volume
    timed = sum(times.values())
    return Stats(
        total_requests=counts["total"],
        payment_required_requests=counts["required"],
        verified_payments=counts["verified"],
        successful_settlements=counts["succeeded"],
        failed_settlements=counts["failed"],
        avg_response_time_ms=sum(ms * n for ms, n in times.items()) / timed if timed else 0.0,
        p95_response_time_ms=_percentile(times, 0.95),
        by_path=dict(by_path),
        by_network=dict(by_network),
        by_scheme=dict(by_scheme),
        volume_by_network={network: str(total) for network, total in volume_by_network.items()},
        volume_by_network_asset={key: str(total) for key, total in volume_by_network_asset.items()},
    )


def _percentile(counts: Counter[int], fraction: float) -> float:
    """PostgreSQL's percentile_cont over the values `counts` holds (value -> how
    many times): the values at ranks floor and ceil of fraction * (n - 1),
    interpolated linearly; 0 when there are none."""
    n = sum(counts.values())
    if n == 0:
        return 0.0
    ordered = sorted(counts.items())

    def at(rank: int) -> int:
        seen = 0
        for value, count in ordered:
            seen += count
            if seen > rank:
                return value
        raise AssertionError("rank beyond the values")

    position = fraction * (n - 1)
    low_rank = math.floor(position)
    low, high = at(low_rank), at(min(low_rank + 1, n - 1))
    return low + (high - low) * (position - low_rank)


async def prune(pool: asyncpg.Pool, older_than: datetime, batch_size: int = 5000) -> int:
    """Delete records older than `older_than`: the partitions wholly before it are
    dropped, the rows before it in the partition it falls in (and in the default
    partition) deleted batch_size rows per transaction (short locks, bounded WAL
    bursts). Returns how many records went."""
    cutoff = _aware(older_than)
    deleted = await drop_before(pool, cutoff)
    while True:
        status = await pool.execute(PRUNE, cutoff, batch_size)
        count = int(status.split()[-1])
        deleted += count
        if count < batch_size:
            return deleted


class PgTrackingRecords:
    """The TrackingRecords port (payments/ports.py) over the queries above."""

    def __init__(self, db_pool: asyncpg.Pool) -> None:
        self._db_pool = db_pool

    async def page(self, query: RecordQuery) -> RecordPage:
        return await list_records(
            self._db_pool,
            path=query.path,
            network=query.network,
            scheme=query.scheme,
            payer=query.payer,
            verified=query.verified,
            settled=query.settled,
            start=query.start,
            end=query.end,
            sort_by=query.sort_by,
            ascending=query.ascending,
            limit=query.limit,
            cursor=query.cursor,
        )

    async def get(self, record_id: uuid.UUID) -> dict[str, Any] | None:
        return await get_record(self._db_pool, record_id)

    async def stats(self, start: datetime | None, end: datetime | None) -> Stats:
        return await get_stats(self._db_pool, start, end)

    async def prune(self, older_than: datetime) -> int:
        return await prune(self._db_pool, older_than)
