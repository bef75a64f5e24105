"""The tracking writer: every step lands, in order, off the request path; a
missing row is reported, never raised; bad values never stop other records."""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import UTC, datetime

import pytest

from sidecar.store.tracking import Step, TrackingWriter
from tests.support.net import wait_until

LIFECYCLE = (Step.START, Step.REQUEST, Step.VERIFICATION, Step.SETTLEMENT, Step.FINALIZE)

# Test-only: log every row write with the step marker the row holds after it, and
# make every statement slow so that many records are in flight at once.
WRITE_LOG = """
CREATE TABLE write_log (seq bigserial PRIMARY KEY, id uuid NOT NULL, op text NOT NULL, step int);
CREATE FUNCTION log_write() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO write_log (id, op, step) VALUES (NEW.id, TG_OP, NEW.response_status);
    RETURN NULL;
END $$;
CREATE TRIGGER log_write AFTER INSERT OR UPDATE ON resource_call_records
    FOR EACH ROW EXECUTE FUNCTION log_write();
CREATE FUNCTION slow_down() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_sleep(0.02);
    RETURN NULL;
END $$;
CREATE TRIGGER slow_down AFTER INSERT OR UPDATE ON resource_call_records
    FOR EACH STATEMENT EXECUTE FUNCTION slow_down();
"""


async def test_a_lifecycle_lands_in_one_row(pool, tmp_path):
    writer = TrackingWriter(pool, spool_dir=tmp_path)
    await writer.start()
    record_id = uuid.uuid4()
    at = datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    writer.record(record_id, Step.START, {
        "request_id": "req-1", "method": "GET", "path": "/v1/records", "timestamp": at,
        "payment_required": True, "request": {"method": "GET", "query": {"a": "1"}},
        "metadata": {"request_id": "req-1", "trace_id": "t1"},
    })
    writer.record(record_id, Step.REQUEST, {"x402_version": 2, "payment": {"network": "eip155:84532", "amount": "1000"}})
    await writer.flush()
    writer.record(record_id, Step.VERIFICATION, {"payment_verified": True, "metadata": {"attempts": [{"stage": "verify"}]}})
    await writer.flush()
    writer.record(record_id, Step.SETTLEMENT, {"settlement": {"success": True, "transaction": "0xabc"}})
    writer.record(record_id, Step.FINALIZE, {"response_status": 200, "response_time_ms": 12, "handler_executed": True,
                                             "metadata": {"trace_id": "t2"}})
    await writer.close()

    row = await pool.fetchrow("SELECT * FROM resource_call_records WHERE id = $1", record_id)
    assert row["timestamp"] == at
    assert (row["method"], row["path"], row["payment_required"], row["x402_version"]) == ("GET", "/v1/records", True, 2)
    assert row["request"] == {"method": "GET", "query": {"a": "1"}}
    assert row["payment"] == {"network": "eip155:84532", "amount": "1000"}
    assert (row["payment_verified"], row["verification_error"]) == (True, None)
    assert row["settlement"] == {"success": True, "transaction": "0xabc"}
    assert (row["response_status"], row["response_time_ms"], row["handler_executed"]) == (200, 12, True)
    # metadata merges across steps; every other column is replaced
    assert row["metadata"] == {"request_id": "req-1", "trace_id": "t2", "attempts": [{"stage": "verify"}]}
    assert writer.queue_depth == 0 and writer.spool_records == 0 and writer.database_up


async def test_update_of_a_missing_row_is_reported_not_raised(pool, tmp_path, caplog):
    writer = TrackingWriter(pool, spool_dir=tmp_path)
    await writer.start()
    gone, kept = uuid.uuid4(), uuid.uuid4()
    for record_id in (gone, kept):
        writer.record(record_id, Step.START, {"request": {}})
    await writer.flush()
    await pool.execute("DELETE FROM resource_call_records WHERE id = $1", gone)
    writer.record(gone, Step.FINALIZE, {"response_status": 200})
    writer.record(kept, Step.FINALIZE, {"response_status": 200})
    await writer.close()
    assert writer.missing_rows == 1
    assert [r.getMessage() for r in caplog.records if "no row to update" in r.getMessage()] == [
        f"tracking {gone} FINALIZE: no row to update"
    ]
    assert await pool.fetchval("SELECT response_status FROM resource_call_records WHERE id = $1", kept) == 200


# With no hold, the records that do not wait between steps get updates too.
@pytest.mark.parametrize("hold_s", [0.0, 1.0])
async def test_steps_land_in_order_with_a_thousand_records_in_flight(pool, tmp_path, hold_s):
    await pool.execute(WRITE_LOG)
    writer = TrackingWriter(pool, spool_dir=tmp_path, batch_size=200, flush_interval_s=0.01, hold_s=hold_s)
    await writer.start()
    rng = random.Random(402)
    # Records that wait for durability between steps get one row write per step;
    # the others coalesce whatever steps meet in the same cycle.
    one_write_per_step = set()

    async def request(record_id: uuid.UUID, wait_each_step: bool) -> list[Step]:
        steps = list(LIFECYCLE)
        if rng.random() < 0.3:
            steps[3] = Step.RELEASE
        for step in steps:
            writer.record(record_id, step, {"response_status": int(step), "metadata": {f"s{int(step)}": True}})
            if wait_each_step:
                await writer.flush()
            else:
                for _ in range(rng.randrange(4)):
                    await asyncio.sleep(0)
        return steps

    ids = [uuid.uuid4() for _ in range(1000)]
    plans = {}
    for record_id in ids:
        wait_each_step = rng.random() < 0.5
        if wait_each_step:
            one_write_per_step.add(record_id)
        plans[record_id] = asyncio.ensure_future(request(record_id, wait_each_step))
    await asyncio.wait_for(asyncio.gather(*plans.values()), 60)
    await writer.close()

    log: dict[uuid.UUID, list[tuple[str, int]]] = {}
    for row in await pool.fetch("SELECT id, op, step FROM write_log ORDER BY seq"):
        log.setdefault(row["id"], []).append((row["op"], row["step"]))
    assert set(log) == set(ids)
    for record_id, writes in log.items():
        steps = [int(s) for s in plans[record_id].result()]
        assert writes[0][0] == "INSERT", record_id
        markers = [step for _, step in writes]
        assert markers == sorted(set(markers)), f"{record_id}: steps landed as {markers}"
        assert markers[-1] == steps[-1]
        if record_id in one_write_per_step:
            assert markers == steps
    rows = await pool.fetch("SELECT id, metadata FROM resource_call_records")
    assert len(rows) == len(ids)
    for row in rows:
        assert row["metadata"] == {f"s{int(s)}": True for s in plans[row["id"]].result()}


async def test_unusable_fields_are_dropped_and_the_rest_is_written(pool, tmp_path):
    writer = TrackingWriter(pool, spool_dir=tmp_path)
    await writer.start()
    record_id = uuid.uuid4()
    writer.record(record_id, Step.START, {"path": "/p", "no_such_column": 1, "response_status": "200",
                                          "method": "VERY-LONG-METHOD", "payment": {"amount": object()}})
    writer.record(record_id, "not a step", {"path": "/other"})  # type: ignore[arg-type]
    await writer.close()
    row = await pool.fetchrow("SELECT path, response_status, method, payment, request FROM resource_call_records")
    assert dict(row) == {"path": "/p", "response_status": 0, "method": "VERY-LONG-", "payment": None, "request": {}}


async def test_a_row_the_database_refuses_does_not_hold_back_the_others(pool, tmp_path):
    writer = TrackingWriter(pool, spool_dir=tmp_path)
    await writer.start()
    good = [uuid.uuid4() for _ in range(20)]
    bad = uuid.uuid4()
    for record_id in good[:10]:
        writer.record(record_id, Step.START, {"path": "/ok"})
    writer.record(bad, Step.START, {"path": "/bad", "request": {"q": "\ud800"}})  # a lone surrogate: jsonb refuses it
    for record_id in good[10:]:
        writer.record(record_id, Step.START, {"path": "/ok"})
    await writer.close()
    assert set(await pool.fetchval("SELECT array_agg(id) FROM resource_call_records")) == set(good)
    assert writer.rejected_rows == 1
    assert writer.spool_records == 0


async def test_a_nul_character_is_kept_as_a_replacement_not_lost(pool, tmp_path):
    """PostgreSQL text and jsonb cannot hold U+0000; a client's %00 must not cost the record."""
    writer = TrackingWriter(pool, spool_dir=tmp_path)
    await writer.start()
    record_id = uuid.uuid4()
    writer.record(record_id, Step.START, {"path": "/a\x00b", "request": {"query": "city=\x00", "k\x00": 1}})
    await writer.close()
    row = await pool.fetchrow("SELECT path, request FROM resource_call_records WHERE id = $1", record_id)
    assert row["path"] == "/a\ufffdb"
    assert row["request"] == {"query": "city=\ufffd", "k\ufffd": 1}
    assert writer.rejected_rows == 0


async def test_recording_never_waits_for_the_database(pool, tmp_path):
    await pool.execute(WRITE_LOG)
    writer = TrackingWriter(pool, spool_dir=tmp_path)
    await writer.start()
    loop = asyncio.get_running_loop()
    started = loop.time()
    for _ in range(5000):
        writer.record(uuid.uuid4(), Step.START, {"path": "/p"})
    assert writer.queue_depth == 5000
    # Far below one slow statement (20 ms each) per record: nothing waited on SQL.
    assert loop.time() - started < 1.0
    await writer.close()
    assert await pool.fetchval("SELECT count(*) FROM resource_call_records") == 5000


async def test_text_and_json_with_copy_separators_land_unchanged(pool, tmp_path):
    """Started rows go in by COPY (text format): its separators and escape
    character inside values must arrive as they were sent."""
    writer = TrackingWriter(pool, spool_dir=tmp_path)
    await writer.start()
    awkward = "a\tb\nc\rd\\e\\N \\. \"q\" é"
    # Several rows in one COPY, each column mixing escapes, empty strings and NULLs.
    sent = {
        uuid.uuid4(): {"path": awkward, "url": "", "method": None, "request": {awkward: [awkward, None, 1.5]}},
        uuid.uuid4(): {"path": None, "url": awkward, "method": "GET", "request": {}},
        uuid.uuid4(): {"path": "", "url": "plain", "method": "\\N\t\\.", "request": {"k": "\\"}},  # varchar(16)
    }
    for record_id, fields in sent.items():
        writer.record(record_id, Step.START, fields)
    await writer.close()
    rows = await pool.fetch("SELECT id, path, url, method, request FROM resource_call_records")
    assert {r["id"]: {k: r[k] for k in ("path", "url", "method", "request")} for r in rows} == sent


async def test_a_start_for_a_row_already_there_updates_it(pool, tmp_path):
    """COPY cannot insert a row that exists: the chunk is upserted instead, and
    the other rows of the chunk land too. The row keeps the time its call began
    (a retried Authorize starts the call's record again)."""
    writer = TrackingWriter(pool, spool_dir=tmp_path)
    await writer.start()
    again, others = uuid.uuid4(), [uuid.uuid4() for _ in range(5)]
    writer.record(again, Step.START, {"path": "/first", "metadata": {"a": 1}})
    await writer.flush()
    began = await pool.fetchval('SELECT "timestamp" FROM resource_call_records WHERE id = $1', again)
    writer.record(again, Step.START, {"path": "/second", "metadata": {"b": 2}})
    for record_id in others:
        writer.record(record_id, Step.START, {"path": "/other"})
    await writer.close()
    found = await pool.fetch('SELECT id, path, metadata, "timestamp" FROM resource_call_records')
    rows = {r["id"]: (r["path"], r["metadata"]) for r in found}
    assert rows == {again: ("/second", {"a": 1, "b": 2}), **{record_id: ("/other", None) for record_id in others}}
    assert {r["timestamp"] for r in found if r["id"] == again} == {began}
    assert writer.rejected_rows == 0


async def test_a_call_under_way_is_held_back_then_written_whole(pool, tmp_path):
    """A record whose call has not finished waits (up to hold_s) so that its row
    goes in by one insert, not an insert and an update per later step."""
    await pool.execute(WRITE_LOG)
    writer = TrackingWriter(pool, spool_dir=tmp_path, flush_interval_s=0.01, hold_s=3600)
    await writer.start()
    under_way, finished = uuid.uuid4(), uuid.uuid4()
    for step in LIFECYCLE[:2]:
        writer.record(under_way, step, {"response_status": int(step)})
    for step in LIFECYCLE:
        writer.record(finished, step, {"response_status": int(step)})
    await wait_until(lambda: _row_exists(pool, finished))
    # Written by the same cycle as `finished`, if it had not been held back.
    assert not await _row_exists(pool, under_way)
    assert writer.queue_depth == 2
    for step in LIFECYCLE[2:]:
        writer.record(under_way, step, {"response_status": int(step)})
    await wait_until(lambda: _row_exists(pool, under_way))
    writes = await pool.fetch("SELECT op, step FROM write_log WHERE id = $1", under_way)
    assert [tuple(w) for w in writes] == [("INSERT", int(Step.FINALIZE))]
    assert writer.queue_depth == 0
    await writer.close()


async def test_flush_and_a_zero_hold_write_a_call_under_way(pool, tmp_path):
    held = TrackingWriter(pool, spool_dir=tmp_path / "held", hold_s=3600)
    await held.start()
    first = uuid.uuid4()
    held.record(first, Step.START, {"path": "/under-way"})
    await held.flush()  # flush() holds nothing back
    assert await _row_exists(pool, first)
    await held.close()

    unheld = TrackingWriter(pool, spool_dir=tmp_path / "unheld", flush_interval_s=0.01, hold_s=0)
    await unheld.start()
    under_way, finished = uuid.uuid4(), uuid.uuid4()
    unheld.record(under_way, Step.START, {"path": "/under-way"})
    for step in LIFECYCLE:
        unheld.record(finished, step, {})
    await wait_until(lambda: _row_exists(pool, finished))
    assert await _row_exists(pool, under_way)
    await unheld.close()


async def _row_exists(pool, record_id: uuid.UUID) -> bool:
    return await pool.fetchval("SELECT count(*) FROM resource_call_records WHERE id = $1", record_id) == 1
