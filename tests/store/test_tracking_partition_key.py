"""The tracking writer's later steps update a row by its id and the START time
it keeps, so PostgreSQL looks in that row's partition only; without that time
(the record was started by another replica) the row is still found."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg

from sidecar.store.tracking import Step, TrackingWriter
from sidecar.store.tracking_rows import RowWrite, StartTimes
from sidecar.store.tracking_sql import arguments, statement

MAKE = "SELECT resource_call_records_create_partitions('day', $1, $2)"


def _scanned(plan: dict) -> set[str]:
    """The relations a plan (EXPLAIN ANALYZE, JSON) read at least once."""
    found = set()
    if plan.get("Actual Loops", 0) > 0 and "Relation Name" in plan and plan.get("Node Type") != "ModifyTable":
        found.add(plan["Relation Name"])
    for child in plan.get("Plans", ()):
        found |= _scanned(child)
    return found


async def _scanned_by_update(pool, record_id: uuid.UUID, fields: dict) -> set[str]:
    sql, order = statement(False, frozenset(fields))
    async with pool.acquire() as conn:
        transaction = conn.transaction()
        await transaction.start()
        try:
            plan = await conn.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", *arguments([(record_id, fields)], order))
        finally:
            await transaction.rollback()
    return _scanned(plan[0]["Plan"])


async def test_an_update_with_the_start_time_reads_one_partition(pool):
    now = datetime.now(UTC)
    await pool.execute(MAKE, now - timedelta(days=5), now)
    record_id, started = uuid.uuid4(), now - timedelta(days=2)
    await pool.execute(
        """INSERT INTO resource_call_records (id, "timestamp", request) VALUES ($1, $2, '{}')""", record_id, started
    )
    partition = await pool.fetchval("SELECT tableoid::regclass::text FROM resource_call_records WHERE id = $1", record_id)

    keyed = await _scanned_by_update(pool, record_id, {"response_status": 200, "timestamp": started})
    unkeyed = await _scanned_by_update(pool, record_id, {"response_status": 200})

    assert keyed == {partition}
    assert len(unkeyed) >= 9  # every partition: five days back, today, three ahead, the default one
    assert await pool.fetchval('SELECT "timestamp" FROM resource_call_records WHERE id = $1', record_id) == started


def test_a_later_step_carries_the_start_time_until_finalize():
    times = StartTimes()
    record_id = uuid.uuid4()
    first = RowWrite()
    first.add(record_id, Step.START, {"request": {}})
    times.note(record_id, Step.START, first)

    later = RowWrite()
    later.add(record_id, Step.VERIFICATION, {"payment_verified": True})
    times.note(record_id, Step.VERIFICATION, later)
    assert later.fields["timestamp"] == first.fields["timestamp"]

    last = RowWrite()
    last.add(record_id, Step.FINALIZE, {"response_status": 200})
    times.note(record_id, Step.FINALIZE, last)
    assert last.fields["timestamp"] == first.fields["timestamp"] and len(times) == 0


def test_start_times_keep_the_newest_records_only():
    times = StartTimes(capacity=2)
    ids = [uuid.uuid4() for _ in range(3)]
    for record_id in ids:
        write = RowWrite()
        write.add(record_id, Step.START, {"request": {}})
        times.note(record_id, Step.START, write)
    later = {record_id: RowWrite() for record_id in ids}
    for record_id, write in later.items():
        times.note(record_id, Step.SETTLEMENT, write)
    assert [("timestamp" in later[record_id].fields) for record_id in ids] == [False, True, True]


async def test_steps_of_a_record_started_by_another_writer_land(pool, tmp_path):
    first = TrackingWriter(pool, spool_dir=tmp_path / "a", hold_s=0)
    second = TrackingWriter(pool, spool_dir=tmp_path / "b", hold_s=0)
    await first.start()
    await second.start()
    record_id, started = uuid.uuid4(), datetime.now(UTC) - timedelta(hours=1)
    first.record(record_id, Step.START, {"request": {}, "timestamp": started})
    await first.flush()
    first.record(record_id, Step.VERIFICATION, {"payment_verified": True})
    await first.flush()
    second.record(record_id, Step.SETTLEMENT, {"settlement": {"success": True}})  # adopted by another replica
    second.record(record_id, Step.FINALIZE, {"response_status": 200})
    await first.close()
    await second.close()

    row = await pool.fetchrow("SELECT * FROM resource_call_records WHERE id = $1", record_id)
    assert (row["timestamp"], row["payment_verified"], row["settlement"], row["response_status"]) == (
        started, True, {"success": True}, 200
    )
    assert second.missing_rows == 0


async def _only_row(pool, record_id: uuid.UUID) -> asyncpg.Record:
    rows = await pool.fetch("SELECT * FROM resource_call_records WHERE id = $1", record_id)
    assert len(rows) == 1, "one row per record"
    return rows[0]


async def test_a_start_again_on_another_replica_continues_the_row(pool, tmp_path):
    """A retried Authorize starts its call's record again, here on another
    replica a moment later: the row keeps the time the call began (the partition
    it lives in) and takes the retry's steps; no second row."""
    first = TrackingWriter(pool, spool_dir=tmp_path / "a", hold_s=0)
    again = TrackingWriter(pool, spool_dir=tmp_path / "b", hold_s=0)
    await first.start()
    await again.start()
    record_id, began = uuid.uuid4(), datetime.now(UTC) - timedelta(seconds=30)
    first.record(record_id, Step.START, {"path": "/first", "request": {}, "timestamp": began})
    first.record(record_id, Step.FINALIZE, {"response_status": 503})
    await first.close()
    again.record(record_id, Step.START, {"path": "/again", "request": {}})
    await again.flush()
    again.record(record_id, Step.FINALIZE, {"response_status": 200})
    await again.close()

    row = await _only_row(pool, record_id)
    assert (row["timestamp"], row["path"], row["response_status"]) == (began, "/again", 200)
    assert again.missing_rows == 0


async def test_a_later_step_keyed_by_a_time_not_the_rows_still_lands(pool, tmp_path):
    writer = TrackingWriter(pool, spool_dir=tmp_path, hold_s=0)
    await writer.start()
    record_id = uuid.uuid4()
    writer.record(record_id, Step.START, {"request": {}})
    await writer.flush()
    moved = datetime.now(UTC) - timedelta(minutes=5)  # the row began elsewhere, earlier
    await pool.execute('UPDATE resource_call_records SET "timestamp" = $2 WHERE id = $1', record_id, moved)
    writer.record(record_id, Step.FINALIZE, {"response_status": 200})
    await writer.close()
    row = await _only_row(pool, record_id)
    assert (row["timestamp"], row["response_status"]) == (moved, 200) and writer.missing_rows == 0


def test_spooled_starts_of_one_record_keep_the_first_time():
    record_id = uuid.uuid4()
    first, retried = RowWrite(), RowWrite()
    first.add(record_id, Step.START, {"path": "/first"})
    retried.add(record_id, Step.START, {"path": "/again", "timestamp": datetime.now(UTC) + timedelta(seconds=5)})
    began = first.fields["timestamp"]
    first.absorb(retried)
    assert (first.fields["timestamp"], first.fields["path"]) == (began, "/again")
