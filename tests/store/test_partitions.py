"""The tracking table partitioned by time: the migration converts a table in place
with its rows, the sidecar keeps partitions ahead, rows no partition covers are
never refused, and retention drops whole partitions."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from sidecar.store.migrate import apply_migrations
from sidecar.store.partitions import create_ahead, drop_before, keep_ahead, list_partitions
from sidecar.store.tracking_queries import get_record, get_stats, list_records, prune
from tests.support.net import wait_until
from tests.support.stack import sidecar_settings, start_sidecar

INSERT = """
INSERT INTO resource_call_records (id, "timestamp", path, payment_verified, payment, settlement, request)
VALUES ($1, $2, $3, $4, $5, $6, '{}')
"""
WHERE_IS = "SELECT tableoid::regclass::text FROM resource_call_records WHERE id = $1"
MAKE = "SELECT resource_call_records_create_partitions($1, $2, $3)"


def midnight(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


async def insert_at(conn, *moments: datetime) -> list[uuid.UUID]:
    ids = [uuid.uuid4() for _ in moments]
    await conn.executemany(INSERT, [
        (record_id, moment, f"/v1/{i % 3}", i % 2 == 0, {"network": "eip155:8453", "scheme": "exact", "amount": "7"},
         {"success": i % 2 == 0}) for i, (record_id, moment) in enumerate(zip(ids, moments, strict=True))
    ])
    return ids


def contiguous(partitions) -> bool:
    ranges = [p for p in partitions if not p.is_default]
    return all(a.upper == b.lower for a, b in zip(ranges, ranges[1:]))


async def test_migration_keeps_the_rows_of_an_unpartitioned_table(database_before_partitioning, pool_factory):
    now = datetime.now(UTC)
    moments = [now - timedelta(days=100), now - timedelta(hours=3), now, now + timedelta(days=2, hours=1)]
    old = await pool_factory(database_before_partitioning)
    ids = await insert_at(old, *moments)
    before = {r["id"]: dict(r) for r in await old.fetch("SELECT * FROM resource_call_records")}
    listed_before = await list_records(old, path="/v1/0")
    stats_before = await get_stats(old, now - timedelta(days=1), now + timedelta(days=3))
    await old.close()

    await apply_migrations(database_before_partitioning)

    pool = await pool_factory(database_before_partitioning)
    after = {r["id"]: dict(r) for r in await pool.fetch("SELECT * FROM resource_call_records")}
    assert after == before
    legacy, *rest = [p for p in await list_partitions(pool) if not p.is_default]
    # The old table is the first partition: everything before the UTC midnight after its newest row.
    assert legacy.name == "resource_call_records_legacy" and legacy.lower is None
    assert legacy.upper == midnight(moments[-1]) + timedelta(days=1)
    assert {await pool.fetchval(WHERE_IS, record_id) for record_id in ids} == {legacy.name}
    assert rest and rest[0].lower == legacy.upper and contiguous(await list_partitions(pool))
    assert await list_records(pool, path="/v1/0") == listed_before
    assert await get_stats(pool, now - timedelta(days=1), now + timedelta(days=3)) == stats_before
    assert (await get_record(pool, ids[1]))["timestamp"] == moments[1]


async def test_an_empty_table_is_replaced_by_daily_partitions_from_today(pool):
    partitions = await list_partitions(pool)
    ranges = [p for p in partitions if not p.is_default]
    assert [p.name for p in partitions if p.is_default] == ["resource_call_records_default"]
    assert ranges[0].lower == midnight(datetime.now(UTC)) and len(ranges) >= 4  # today and three days ahead
    assert all(p.upper - p.lower == timedelta(days=1) for p in ranges) and contiguous(partitions)
    assert ranges[0].name == "resource_call_records_p" + ranges[0].lower.strftime("%Y%m%d")


async def test_partitions_are_made_ahead_once(pool):
    assert await create_ahead(pool, "day", 3) == 0  # the migration made these already
    assert await create_ahead(pool, "day", 6) == 3
    assert await create_ahead(pool, "day", 6) == 0
    await create_ahead(pool, "month", 70)
    partitions = await list_partitions(pool)
    last = partitions[-2]  # the default partition comes last
    assert contiguous(partitions) and last.upper >= datetime.now(UTC) + timedelta(days=70)
    assert (last.lower.day, last.upper.day, last.upper.hour) == (1, 1, 0)  # a whole UTC month
    with pytest.raises(asyncpg.InvalidParameterValueError, match="day or month"):
        await create_ahead(pool, "hour", 1)


async def test_a_row_no_partition_covers_goes_to_the_default_then_into_its_partition(pool):
    far = datetime.now(UTC) + timedelta(days=40)
    async with pool.acquire() as conn:
        (record_id,) = await insert_at(conn, far)
    assert await pool.fetchval(WHERE_IS, record_id) == "resource_call_records_default"
    await create_ahead(pool, "day", 41)
    assert await pool.fetchval(WHERE_IS, record_id) == "resource_call_records_p" + far.strftime("%Y%m%d")
    assert await pool.fetchval("SELECT count(*) FROM resource_call_records_default") == 0
    assert (await get_record(pool, record_id))["timestamp"] == far


async def test_keeping_partitions_ahead_survives_a_failure(pool, caplog):
    async with pool.acquire() as conn:
        await conn.execute("ALTER FUNCTION resource_call_records_create_partitions RENAME TO broken")
        try:
            await keep_ahead(pool, "day", 30)
        finally:
            await conn.execute("ALTER FUNCTION broken RENAME TO resource_call_records_create_partitions")
    assert "could not create" in caplog.text
    await keep_ahead(pool, "day", 30)
    assert (await list_partitions(pool))[-2].upper >= datetime.now(UTC) + timedelta(days=30)


async def test_prune_drops_old_partitions_whole_and_deletes_the_rest_in_batches(pool):
    now = datetime.now(UTC)
    await pool.execute(MAKE, "day", now - timedelta(days=10), now)
    moments = [now - timedelta(days=days, hours=hours) for days in range(10) for hours in (1, 7, 13)]
    async with pool.acquire() as conn:
        ids = dict(zip(await insert_at(conn, *moments), moments, strict=True))
    cutoff = now - timedelta(days=5, hours=3)  # inside a day: that partition is pruned row by row
    old = {record_id for record_id, moment in ids.items() if moment < cutoff}
    kept_before = [p for p in await list_partitions(pool) if p.is_default or p.upper > cutoff]

    assert await prune(pool, cutoff, batch_size=2) == len(old)

    left = {r["id"] for r in await pool.fetch("SELECT id FROM resource_call_records")}
    assert left == set(ids) - old
    assert await list_partitions(pool) == kept_before  # only partitions wholly before the cutoff went
    assert await prune(pool, cutoff) == 0


async def test_dropping_reports_the_rows_of_the_dropped_partitions(pool):
    now = datetime.now(UTC)
    await pool.execute(MAKE, "day", now - timedelta(days=3), now)
    async with pool.acquire() as conn:
        await insert_at(conn, *(now - timedelta(days=3) + timedelta(minutes=m) for m in range(5)))
    assert await drop_before(pool, midnight(now) - timedelta(days=1)) == 5
    assert min(p.lower for p in await list_partitions(pool) if not p.is_default) == midnight(now) - timedelta(days=1)


async def test_the_writer_role_keeps_partitions_and_both_roles_reach_them(database_url, pool):
    writer = await asyncpg.create_pool(database_url, min_size=1, max_size=1,
                                       server_settings={"role": "paysidecar_writer"})
    reader = await asyncpg.connect(database_url, server_settings={"role": "paysidecar_reader"})
    try:
        assert await create_ahead(writer, "day", 12) > 0
        newest = (await list_partitions(writer))[-2]
        assert await writer.fetchval("SELECT current_user") == "paysidecar_writer"
        await writer.execute(INSERT, uuid.uuid4(), newest.lower, "/w", False, None, None)
        for partition in (newest.name, "resource_call_records_default"):
            assert await reader.fetchval(f"SELECT count(*) FROM {partition}") >= 0
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await reader.execute(f"DELETE FROM {partition}")
            await writer.execute(f"UPDATE {partition} SET response_status = 200")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await reader.fetchval(MAKE, "day", datetime.now(UTC), datetime.now(UTC) + timedelta(days=20))
        await pool.execute(MAKE, "day", datetime.now(UTC) - timedelta(days=3), datetime.now(UTC))
        assert await drop_before(writer, datetime.now(UTC) - timedelta(days=1)) == 0
    finally:
        await writer.close()
        await reader.close()


async def test_partition_functions_ignore_a_callers_temporary_table(database_url):
    conn = await asyncpg.connect(database_url, server_settings={"role": "paysidecar_writer"})
    try:
        # Unqualified names in the functions must not resolve to the caller's own table.
        await conn.execute("CREATE TEMP TABLE resource_call_records_default (\"timestamp\" timestamptz)")
        await conn.execute("INSERT INTO resource_call_records_default VALUES (now() + interval '60 days')")
        assert await conn.fetchval(MAKE, "day", datetime.now(UTC), datetime.now(UTC) + timedelta(days=61)) > 0
        assert await conn.fetchval("SELECT count(*) FROM pg_temp.resource_call_records_default") == 1
    finally:
        await conn.close()


async def test_dropping_behind_a_long_reader_gives_up_instead_of_queueing_everyone(pool, monkeypatch):
    from sidecar.store import partitions

    monkeypatch.setattr(partitions, "DROP_LOCK_TIMEOUT", "SET LOCAL lock_timeout = '200ms'")
    now = datetime.now(UTC)
    await pool.execute(MAKE, "day", now - timedelta(days=3), now)
    async with pool.acquire() as reader, reader.transaction():
        await reader.fetch("SELECT id FROM resource_call_records LIMIT 1")  # holds its lock until the end
        with pytest.raises(asyncpg.LockNotAvailableError):
            await drop_before(pool, midnight(now))
    assert await drop_before(pool, midnight(now)) == 0  # the next run drops them
    assert min(p.lower for p in await list_partitions(pool) if not p.is_default) == midnight(now)


async def test_the_sidecar_makes_partitions_at_start_and_keeps_them_ahead(database_url, pool, tmp_path):
    settings = sidecar_settings(
        database_url, tmp_path, ["http://127.0.0.1:9"], tracking_partition_ahead_days=10,
        tracking_partition_interval_s=0.05,
    )

    async def ten_days_ahead() -> bool:
        return (await list_partitions(pool))[-2].upper >= datetime.now(UTC) + timedelta(days=10)

    sidecar = await start_sidecar(settings)
    try:
        assert await ten_days_ahead()  # made at start
        await pool.execute(f"DROP TABLE {(await list_partitions(pool))[-2].name}")
        await wait_until(ten_days_ahead)  # made again by the job
    finally:
        await sidecar.stop()
