"""No loss: while PostgreSQL is away the writer spools, and replays in order
when it is back — against a real server that is stopped and started again."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from sidecar.store.db import create_pool
from sidecar.store.migrate import apply_migrations
from sidecar.store.spool import SpoolInUse
from sidecar.store.tracking import Step, TrackingWriter
from tests.store.stoppable_postgres import StoppablePostgres
from tests.support.postgres import create_database

FIELDS: dict[Step, Callable[[int], dict]] = {
    Step.START: lambda n: {"path": f"/v1/datasets/{n % 3}/records", "request": {"n": n}, "metadata": {"start": n}},
    Step.REQUEST: lambda n: {"x402_version": 2, "payment": {"network": "eip155:84532", "amount": str(n)}},
    Step.VERIFICATION: lambda n: {"payment_verified": True, "metadata": {"verify": n}},
    Step.SETTLEMENT: lambda n: {"settlement": {"success": True, "transaction": f"0x{n:064x}"}},
    Step.FINALIZE: lambda n: {"response_status": 200, "response_time_ms": n, "metadata": {"final": n}},
}


def expected_row(n: int) -> dict:
    return {
        "path": f"/v1/datasets/{n % 3}/records",
        "request": {"n": n},
        "x402_version": 2,
        "payment": {"network": "eip155:84532", "amount": str(n)},
        "payment_verified": True,
        "settlement": {"success": True, "transaction": f"0x{n:064x}"},
        "response_status": 200,
        "response_time_ms": n,
        "metadata": {"start": n, "verify": n, "final": n},
    }


async def rows_by_id(pool) -> dict[uuid.UUID, dict]:
    columns = ", ".join(expected_row(0))
    rows = await pool.fetch(f"SELECT id, {columns} FROM resource_call_records")
    assert len(rows) == len({row["id"] for row in rows})
    return {row["id"]: {k: row[k] for k in expected_row(0)} for row in rows}


async def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


@pytest.fixture(scope="module")
def stoppable_server(tmp_path_factory):
    server = StoppablePostgres(tmp_path_factory.mktemp("stoppable") / "pgdata")
    yield server
    server.cleanup()


async def test_writes_survive_a_database_outage(stoppable_server, tmp_path):
    database = await create_database(stoppable_server.url())
    await apply_migrations(database)
    pool = await create_pool(database, min_size=1, max_size=4)
    writer = TrackingWriter(pool, spool_dir=tmp_path, recheck_interval_s=0.05)
    await writer.start()
    numbers = {uuid.uuid4(): n for n in range(300)}
    ids = list(numbers)
    try:
        # Before: the first 200 records start and send their payment.
        for record_id in ids[:200]:
            for step in (Step.START, Step.REQUEST):
                writer.record(record_id, step, FIELDS[step](numbers[record_id]))
        await writer.flush()
        assert writer.spool_records == 0

        stoppable_server.stop()
        # During: they verify and settle, and 100 more records start.
        for record_id in ids[:200]:
            for step in (Step.VERIFICATION, Step.SETTLEMENT):
                writer.record(record_id, step, FIELDS[step](numbers[record_id]))
        for record_id in ids[200:]:
            for step in (Step.START, Step.REQUEST, Step.VERIFICATION):
                writer.record(record_id, step, FIELDS[step](numbers[record_id]))
        await writer.flush()
        assert writer.spool_records > 0 and writer.spool_bytes > 0
        assert not writer.database_up
        # Still during: steps recorded now queue behind the spooled ones.
        for record_id in ids[200:]:
            writer.record(record_id, Step.SETTLEMENT, FIELDS[Step.SETTLEMENT](numbers[record_id]))
        await writer.flush()

        stoppable_server.start()
        await wait_for(lambda: writer.spool_records == 0 and writer.database_up)
        assert not list(tmp_path.glob("*.jsonl"))
        # After: everyone finishes.
        for record_id in ids:
            writer.record(record_id, Step.FINALIZE, FIELDS[Step.FINALIZE](numbers[record_id]))
        await writer.close()

        assert await rows_by_id(pool) == {record_id: expected_row(n) for record_id, n in numbers.items()}
        assert writer.missing_rows == 0
    finally:
        stoppable_server.start()
        await pool.close()


async def test_a_writer_started_while_the_database_is_down_spools_from_the_start(stoppable_server, tmp_path):
    database = await create_database(stoppable_server.url())
    await apply_migrations(database)
    stoppable_server.stop()
    try:
        writer = TrackingWriter(database, spool_dir=tmp_path, recheck_interval_s=0.05)
        await writer.start()
        assert not writer.database_up
        numbers = {uuid.uuid4(): n for n in range(50)}
        for record_id, n in numbers.items():
            for step in FIELDS:
                writer.record(record_id, step, FIELDS[step](n))
        await writer.flush()
        assert writer.spool_records == 50  # one coalesced row write per record
        stoppable_server.start()
        await wait_for(lambda: writer.spool_records == 0)
        await writer.close()
    finally:
        stoppable_server.start()
    pool = await create_pool(database, min_size=1, max_size=1)
    try:
        assert await rows_by_id(pool) == {record_id: expected_row(n) for record_id, n in numbers.items()}
    finally:
        await pool.close()


async def test_start_replays_what_an_earlier_process_spooled(pool, tmp_path):
    unreachable = f"postgresql://nobody@/none?host={tmp_path / 'no-server'}"
    (tmp_path / "no-server").mkdir()
    spool = tmp_path / "spool"
    at = datetime.now(UTC) - timedelta(minutes=5)
    numbers = {uuid.uuid4(): n for n in range(40)}

    first = TrackingWriter(unreachable, spool_dir=spool)
    await first.start()
    for record_id, n in numbers.items():
        writer_fields = dict(FIELDS[Step.START](n), timestamp=at + timedelta(microseconds=n))
        first.record(record_id, Step.START, writer_fields)
        first.record(record_id, Step.REQUEST, FIELDS[Step.REQUEST](n))
    await first.flush()
    for record_id, n in numbers.items():
        for step in (Step.VERIFICATION, Step.SETTLEMENT, Step.FINALIZE):
            first.record(record_id, step, FIELDS[step](n))
    await first.close()
    assert first.spool_records == 80

    second = TrackingWriter(pool, spool_dir=spool)
    await second.start()
    assert second.spool_records == 0
    await second.close()
    assert await rows_by_id(pool) == {record_id: expected_row(n) for record_id, n in numbers.items()}
    stamps = dict(await pool.fetch('SELECT id, "timestamp" FROM resource_call_records'))
    assert stamps == {record_id: at + timedelta(microseconds=n) for record_id, n in numbers.items()}


async def test_replaying_a_spool_twice_changes_nothing(pool, tmp_path):
    """A process that dies after applying a segment but before deleting it
    replays the segment again at the next start."""
    unreachable = f"postgresql://nobody@/none?host={tmp_path}"
    spool, saved = tmp_path / "spool", tmp_path / "saved"
    numbers = {uuid.uuid4(): n for n in range(30)}
    offline = TrackingWriter(unreachable, spool_dir=spool)
    await offline.start()
    for step in FIELDS:
        for record_id, n in numbers.items():
            offline.record(record_id, step, FIELDS[step](n))
        await offline.flush()  # one spool line per record and step
    await offline.close()
    shutil.copytree(spool, saved)

    for _ in range(2):
        replayer = TrackingWriter(pool, spool_dir=spool)
        await replayer.start()
        await replayer.close()
        assert await rows_by_id(pool) == {record_id: expected_row(n) for record_id, n in numbers.items()}
        shutil.rmtree(spool)
        shutil.copytree(saved, spool)


async def test_a_torn_last_line_is_skipped(pool, tmp_path):
    unreachable = f"postgresql://nobody@/none?host={tmp_path}"
    spool = tmp_path / "spool"
    record_id = uuid.uuid4()
    offline = TrackingWriter(unreachable, spool_dir=spool)
    await offline.start()
    offline.record(record_id, Step.START, FIELDS[Step.START](7))
    await offline.close()
    (segment,) = spool.glob("*.jsonl")
    with segment.open("a") as handle:
        handle.write('{"id": "half a li')

    replayer = TrackingWriter(pool, spool_dir=spool)
    await replayer.start()
    await replayer.close()
    assert await pool.fetchval("SELECT path FROM resource_call_records WHERE id = $1", record_id) == "/v1/datasets/1/records"
    assert replayer.spool_records == 0


async def test_a_spool_directory_has_one_owner(pool, tmp_path):
    first = TrackingWriter(pool, spool_dir=tmp_path)
    await first.start()
    try:
        with pytest.raises(SpoolInUse, match="in use"):
            await TrackingWriter(pool, spool_dir=tmp_path).start()
    finally:
        await first.close()
    second = TrackingWriter(pool, spool_dir=tmp_path)
    await second.start()
    await second.close()
