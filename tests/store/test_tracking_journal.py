"""The tracking journal: steps made durable survive a crash of the process, and
writing them again at the next start neither duplicates nor regresses a record,
nor lets a later step land before an earlier one.

A crash is a copy of the spool directory taken while the writer runs (what a
killed process leaves on disk); the writer then goes on or is stopped, and a new
writer starts on the copy."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from pathlib import Path

from sidecar.store.tracking import JOURNAL_DIRECTORY, Step, TrackingWriter

RECORDS = 60

# Writes fail as if the connection broke (SQLSTATE 08006): the writer takes the
# database for away and spools, as when the process dies before the write.
FAIL_WRITES = """
CREATE FUNCTION test_fail_writes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'connection lost' USING ERRCODE = '08006'; END $$;
CREATE TRIGGER test_fail_writes BEFORE INSERT OR UPDATE ON resource_call_records
  FOR EACH ROW EXECUTE FUNCTION test_fail_writes();
"""
ALLOW_WRITES = "DROP TRIGGER test_fail_writes ON resource_call_records; DROP FUNCTION test_fail_writes();"


def answered(n: int) -> list[list[tuple[Step, dict]]]:
    """The steps of call n, grouped by the answer each group precedes. Every
    third call is settled, then its answer cannot be delivered (a release that
    replaces the settlement, the status and a metadata key)."""
    authorize = [
        (Step.START, {"path": f"/v1/{n}", "request": {"method": "GET"}, "metadata": {"request_id": f"r{n}"}}),
        (Step.REQUEST, {"request": {"method": "GET", "query": f"n={n}"}}),
        (Step.VERIFICATION, {"payment_verified": True, "payment": {"amount": str(n)}, "metadata": {"verify": n}}),
    ]
    settle = [
        (Step.SETTLEMENT, {"settlement": {"success": True, "transaction": f"0x{n:x}"}, "response_status": 200,
                           "metadata": {"last": "settle"}}),
        (Step.FINALIZE, {"response_status": 200, "response_time_ms": n}),
    ]
    if n % 3 == 0:
        release = [
            (Step.RELEASE, {"settlement": {"success": False, "released": True}, "response_status": 599,
                            "metadata": {"last": "release"}}),
            (Step.FINALIZE, {"response_status": 599, "response_time_ms": n}),
        ]
        return [authorize, settle, release]
    return [authorize, settle]


def expected_row(n: int) -> dict:
    released = n % 3 == 0
    return {
        "path": f"/v1/{n}",
        "request": {"method": "GET", "query": f"n={n}"},
        "payment_verified": True,
        "payment": {"amount": str(n)},
        "settlement": {"success": False, "released": True} if released else {"success": True, "transaction": f"0x{n:x}"},
        "response_status": 599 if released else 200,
        "response_time_ms": n,
        "metadata": {"request_id": f"r{n}", "verify": n, "last": "release" if released else "settle"},
    }


async def rows(pool) -> dict[uuid.UUID, dict]:
    found = await pool.fetch("SELECT * FROM resource_call_records")
    assert len(found) == len({row["id"] for row in found})
    return {row["id"]: dict(row) for row in found}


def journal_segments(spool: Path) -> list[Path]:
    return sorted((spool / JOURNAL_DIRECTORY).glob("*.jsonl"))


async def record_answered_calls(writer: TrackingWriter, ids: dict[uuid.UUID, int], groups: slice) -> None:
    """Each call records its steps and waits for them to be durable before its
    answer, as the payment servicer does; the calls run concurrently."""

    async def call(record_id: uuid.UUID, n: int) -> None:
        for group in answered(n)[groups]:
            for step, fields in group:
                writer.record(record_id, step, fields)
            await writer.durable()

    await asyncio.gather(*(call(record_id, n) for record_id, n in ids.items()))


async def test_writing_the_journal_again_leaves_landed_records_as_they_are(pool, tmp_path):
    ids = {uuid.uuid4(): n for n in range(RECORDS)}
    writer = TrackingWriter(pool, spool_dir=tmp_path / "live", flush_interval_s=0.01)
    await writer.start()
    await record_answered_calls(writer, ids, slice(None))
    shutil.copytree(tmp_path / "live", tmp_path / "crash")
    await writer.close()
    landed = await rows(pool)
    assert {row["id"]: {k: row[k] for k in expected_row(0)} for row in landed.values()} == {
        record_id: expected_row(n) for record_id, n in ids.items()
    }
    assert journal_segments(tmp_path / "crash")

    # A start after the crash writes the journal again; one that dies before
    # deleting the segment writes it a second time.
    for attempt in ("first", "second"):
        spool = tmp_path / attempt
        shutil.copytree(tmp_path / "crash", spool)
        restarted = TrackingWriter(pool, spool_dir=spool)
        await restarted.start()
        assert journal_segments(spool) == []
        await restarted.close()
        assert await rows(pool) == landed
        assert restarted.missing_rows == 0


async def test_a_crash_between_writes_ends_with_every_step_in_order(pool, tmp_path):
    """The database has the first steps of each record, the journal has them
    all: the restart completes every record, later steps over earlier ones."""
    ids = {uuid.uuid4(): n for n in range(RECORDS)}
    # Nothing lands but by flush(): the database holds exactly what the test says.
    writer = TrackingWriter(pool, spool_dir=tmp_path / "live", flush_interval_s=3600, hold_s=3600)
    await writer.start()
    await record_answered_calls(writer, ids, slice(0, 1))
    await writer.flush()
    await record_answered_calls(writer, ids, slice(1, None))
    shutil.copytree(tmp_path / "live", tmp_path / "crash")
    # The process dies here: nothing it still held reaches the database.
    await pool.execute(FAIL_WRITES)
    try:
        await writer.close()
    finally:
        await pool.execute(ALLOW_WRITES)
    assert {row["settlement"] for row in (await rows(pool)).values()} == {None}

    restarted = TrackingWriter(pool, spool_dir=tmp_path / "crash")
    await restarted.start()
    await restarted.close()
    found = await rows(pool)
    assert {record_id: {k: row[k] for k in expected_row(0)} for record_id, row in found.items()} == {
        record_id: expected_row(n) for record_id, n in ids.items()
    }
    assert restarted.missing_rows == 0


async def test_calls_waiting_at_once_share_one_journal_write(pool, tmp_path):
    writer = TrackingWriter(pool, spool_dir=tmp_path)
    await writer.start()

    async def call() -> None:
        writer.record(uuid.uuid4(), Step.START, {"path": "/p"})
        await writer.durable()

    await asyncio.gather(*(call() for _ in range(200)))
    (segment,) = journal_segments(tmp_path)
    assert len(segment.read_bytes().splitlines()) == 1
    await writer.close()
    assert journal_segments(tmp_path) == []


async def test_a_torn_journal_line_is_skipped_and_the_rest_written(pool, tmp_path):
    """A line cut short was never synced, so no answer waited for it."""
    writer = TrackingWriter(pool, spool_dir=tmp_path / "live", flush_interval_s=3600, hold_s=3600)
    await writer.start()
    kept = uuid.uuid4()
    writer.record(kept, Step.START, {"path": "/kept"})
    await writer.durable()
    shutil.copytree(tmp_path / "live", tmp_path / "crash")
    await writer.close()
    await pool.execute("DELETE FROM resource_call_records")
    (segment,) = journal_segments(tmp_path / "crash")
    with segment.open("a") as handle:
        handle.write('[["half a li')

    restarted = TrackingWriter(pool, spool_dir=tmp_path / "crash")
    await restarted.start()
    await restarted.close()
    assert await pool.fetchval("SELECT path FROM resource_call_records WHERE id = $1", kept) == "/kept"
    assert journal_segments(tmp_path / "crash") == []


async def test_under_steady_traffic_the_journal_lets_go_of_what_has_landed(pool, tmp_path):
    """Segments are sealed about every second and deleted once their steps are in
    the database: a restart writes again only the last moments, not all of a
    segment."""
    writer = TrackingWriter(pool, spool_dir=tmp_path, flush_interval_s=0.01)
    await writer.start()
    first = uuid.uuid4()
    writer.record(first, Step.START, {"path": "/first"})
    await writer.durable()
    (segment,) = journal_segments(tmp_path)
    try:
        async with asyncio.timeout(15):
            while segment.exists():  # one call every 10 ms meanwhile
                record_id = uuid.uuid4()
                for step in (Step.START, Step.FINALIZE):
                    writer.record(record_id, step, {"path": "/steady"})
                await writer.durable()
                await asyncio.sleep(0.01)
    finally:
        await writer.close()
    assert await pool.fetchval("SELECT path FROM resource_call_records WHERE id = $1", first) == "/first"
