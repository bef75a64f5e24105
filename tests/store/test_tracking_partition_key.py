"""The tracking writer's later steps update a row by its id and the START time
it keeps, so PostgreSQL looks in that row's partition only; without that time
(the record was started by another replica) the row is still found."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

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
    missing = []
    first = TrackingWriter(pool, spool_dir=tmp_path / "a", hold_s=0)
    second = TrackingWriter(pool, spool_dir=tmp_path / "b", hold_s=0, on_missing=lambda *m: missing.append(m))
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
    assert missing == [] and second.missing_rows == 0
