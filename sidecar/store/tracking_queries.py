"""Reading and pruning tracking records: list with filters and a keyset cursor,
one record, stats for a time range, and retention (whole partitions dropped,
the rest deleted in batches)."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import asyncpg

from .partitions import drop_before
from .schema import TABLE

MAX_LIMIT = 100
DEFAULT_LIMIT = 50

SortBy = Literal["timestamp", "response_time"]

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
_VERIFIED = {True: "payment_verified", False: "payment_verified IS NOT TRUE"}
_SETTLED = {True: "settlement ->> 'success' = 'true'", False: "settlement ->> 'success' IS DISTINCT FROM 'true'"}

GET_RECORD = f"SELECT * FROM {TABLE} WHERE id = $1"

STATS_TOTALS = """
SELECT count(*) AS total_requests,
       count(*) FILTER (WHERE payment_required) AS payment_required_requests,
       count(*) FILTER (WHERE payment_verified) AS verified_payments,
       count(*) FILTER (WHERE settlement ->> 'success' = 'true') AS successful_settlements,
       count(*) FILTER (WHERE settlement ? 'success'
                          AND settlement ->> 'success' IS DISTINCT FROM 'true') AS failed_settlements,
       coalesce(avg(response_time_ms), 0)::float8 AS avg_response_time_ms,
       coalesce(percentile_cont(0.95) WITHIN GROUP (ORDER BY response_time_ms), 0)::float8
           AS p95_response_time_ms
FROM {table} WHERE {where}
"""

STATS_BREAKDOWN = """
SELECT 'path' AS kind, coalesce(path, '') AS key, count(*) AS n
FROM {table} WHERE {where} GROUP BY 2
UNION ALL
SELECT 'network', payment ->> 'network', count(*)
FROM {table} WHERE {where} AND payment ->> 'network' IS NOT NULL GROUP BY 2
UNION ALL
SELECT 'scheme', payment ->> 'scheme', count(*)
FROM {table} WHERE {where} AND payment ->> 'scheme' IS NOT NULL GROUP BY 2
"""

# Amounts are atomic units: summed as numeric and returned as text, never floats.
# An amount that is not a plain integer string is left out rather than failing the stats.
STATS_VOLUME = """
SELECT payment ->> 'network' AS network, coalesce(payment ->> 'asset', '') AS asset,
       sum((payment ->> 'amount')::numeric)::text AS volume
FROM {table}
WHERE {where} AND settlement ->> 'success' = 'true' AND payment ->> 'network' IS NOT NULL
  AND payment ->> 'amount' ~ '^[0-9]{{1,78}}$'
GROUP BY 1, 2
"""

# Oldest first through the timestamp index; the outer condition on "timestamp"
# keeps the DELETE to the partitions before the cutoff.
PRUNE = f"""
DELETE FROM {TABLE}
WHERE "timestamp" < $1
  AND (id, "timestamp") IN (SELECT id, "timestamp" FROM {TABLE} WHERE "timestamp" < $1 ORDER BY "timestamp" LIMIT $2)
"""


@dataclass(frozen=True)
class RecordPage:
    records: list[dict[str, Any]]
    total: int
    has_more: bool
    next_cursor: str | None


@dataclass(frozen=True)
class Stats:
    total_requests: int = 0
    payment_required_requests: int = 0
    verified_payments: int = 0
    successful_settlements: int = 0
    failed_settlements: int = 0
    avg_response_time_ms: float = 0.0
    p95_response_time_ms: float = 0.0
    by_path: dict[str, int] = field(default_factory=dict)
    by_network: dict[str, int] = field(default_factory=dict)
    by_scheme: dict[str, int] = field(default_factory=dict)
    volume_by_network: dict[str, str] = field(default_factory=dict)  # atomic units, decimal strings
    volume_by_network_asset: dict[str, str] = field(default_factory=dict)  # key "network:asset"


class _Where:
    """AND-ed conditions with their $n parameters, numbered as they are added."""

    def __init__(self) -> None:
        self.conditions: list[str] = []
        self.args: list[Any] = []

    def add(self, condition: str, *values: Any) -> None:
        numbers = range(len(self.args) + 1, len(self.args) + 1 + len(values))
        self.conditions.append(condition.format(*(f"${n}" for n in numbers)))
        self.args.extend(values)

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
    """The (sort key, id) a cursor points after; ValueError for anything else."""
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
        raise ValueError(f"invalid cursor: use the next_cursor of the previous page ({exc})") from exc
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
    across pages even when sort keys tie."""
    if sort_by not in _SORT_KEYS:
        raise ValueError(f"sort_by must be one of {', '.join(_SORT_KEYS)}")
    limit = min(max(int(limit), 1), MAX_LIMIT)
    where = _Where()
    for condition, value in ((_PATH, path), (_NETWORK, network), (_SCHEME, scheme), (_PAYER, payer)):
        if value:
            if "\x00" in value:  # PostgreSQL text cannot hold NUL: no row could match
                raise ValueError("filters may not contain NUL characters")
            where.add(condition, value)
    if verified is not None:
        where.add(_VERIFIED[verified])
    if settled is not None:
        where.add(_SETTLED[settled])
    _time_range(where, start, end)
    count_sql = f"SELECT count(*) FROM {TABLE} WHERE {where.sql()}"
    count_args = list(where.args)

    key = _SORT_KEYS[sort_by]
    direction = "ASC" if ascending else "DESC"
    if cursor:
        after_key, after_id = decode_cursor(cursor, sort_by, ascending)
        where.add(f"({key}, id) {'>' if ascending else '<'} ({{}}, {{}})", after_key, after_id)
    page_sql = (
        f"SELECT *, {key} AS sort_key FROM {TABLE} WHERE {where.sql()} "
        f"ORDER BY {key} {direction}, id {direction} LIMIT {limit + 1}"
    )
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        total = await conn.fetchval(count_sql, *count_args)
        rows = await conn.fetch(page_sql, *where.args)
    has_more = len(rows) > limit
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
    where = _Where()
    _time_range(where, start, end)
    params = {"table": TABLE, "where": where.sql()}
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        totals = await conn.fetchrow(STATS_TOTALS.format(**params), *where.args)
        breakdown = await conn.fetch(STATS_BREAKDOWN.format(**params), *where.args)
        volumes = await conn.fetch(STATS_VOLUME.format(**params), *where.args)
    by_kind: dict[str, dict[str, int]] = {"path": {}, "network": {}, "scheme": {}}
    for row in breakdown:
        by_kind[row["kind"]][row["key"]] = row["n"]
    by_network: dict[str, int] = {}
    by_network_asset: dict[str, str] = {}
    for row in volumes:
        by_network[row["network"]] = by_network.get(row["network"], 0) + int(row["volume"])
        by_network_asset[f"{row['network']}:{row['asset']}"] = row["volume"]
    return Stats(
        **dict(totals),
        by_path=by_kind["path"],
        by_network=by_kind["network"],
        by_scheme=by_kind["scheme"],
        volume_by_network={network: str(total) for network, total in by_network.items()},
        volume_by_network_asset=by_network_asset,
    )


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
