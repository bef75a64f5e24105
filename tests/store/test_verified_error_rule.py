"""payment_verified = true implies verification_error IS NULL: a CHECK in the
database, a hygiene UPDATE for rows written before it, and the writer itself."""

from __future__ import annotations

import shutil
import uuid

import asyncpg
import pytest

from sidecar.store.migrate import DEFAULT_DIRECTORY, apply_migrations
from sidecar.store.tracking import Step, TrackingWriter

INSERT = "INSERT INTO resource_call_records (id, request, payment_verified, verification_error) VALUES ($1, '{}', $2, $3)"


async def test_check_rejects_a_verified_row_with_an_error(database_url):
    conn = await asyncpg.connect(database_url)
    try:
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(INSERT, uuid.uuid4(), True, "invalid_signature")
        await conn.execute(INSERT, uuid.uuid4(), False, "invalid_signature")
    finally:
        await conn.close()


async def test_hygiene_update_fixes_rows_written_before_the_check(empty_database_url, tmp_path):
    check_file = next(DEFAULT_DIRECTORY.glob("*_verified_error_check.sql"))
    before_check = tmp_path / "before"
    before_check.mkdir()
    for path in sorted(DEFAULT_DIRECTORY.glob("*.sql")):
        if path.name < check_file.name:
            shutil.copy(path, before_check)
    await apply_migrations(empty_database_url, before_check)

    bad, unverified = uuid.uuid4(), uuid.uuid4()
    conn = await asyncpg.connect(empty_database_url)
    try:
        await conn.execute(INSERT, bad, True, "stale error")
        await conn.execute(INSERT, unverified, False, "invalid_signature")
        assert (await apply_migrations(empty_database_url))[0] == check_file.name
        rows = dict(await conn.fetch("SELECT id, verification_error FROM resource_call_records"))
    finally:
        await conn.close()
    assert rows == {bad: None, unverified: "invalid_signature"}


async def test_writer_never_writes_a_verified_payment_with_an_error(pool, tmp_path):
    writer = TrackingWriter(pool, spool_dir=tmp_path)
    await writer.start()
    verified, refused = uuid.uuid4(), uuid.uuid4()
    for record_id in (verified, refused):
        writer.record(record_id, Step.START, {"path": "/v1/records", "request": {}})
    writer.record(verified, Step.VERIFICATION, {"payment_verified": True, "verification_error": "leftover"})
    writer.record(refused, Step.VERIFICATION, {"verification_error": "invalid_signature"})
    await writer.close()
    rows = {r["id"]: (r["payment_verified"], r["verification_error"]) for r in await pool.fetch(
        "SELECT id, payment_verified, verification_error FROM resource_call_records")}
    assert rows == {verified: (True, None), refused: (False, "invalid_signature")}
    assert writer.rejected_rows == 0
