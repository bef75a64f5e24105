"""In a pool of sidecars a call may begin on one replica (Authorize: its row) and
end on another (Settle: the later steps). The second replica's steps can reach
the database before the first replica has written the row: they wait for it,
and still land in the order they were recorded."""

from __future__ import annotations

import time
import uuid

from sidecar.store.tracking import Step, TrackingWriter
from tests.reliability.observe import eventually


async def test_steps_recorded_before_their_row_is_written_wait_for_it_in_order(pool, tmp_path):
    verifying = TrackingWriter(pool, spool_dir=tmp_path / "a")  # holds the call under way back (0.25 s)
    settling = TrackingWriter(pool, spool_dir=tmp_path / "b")
    await verifying.start()
    await settling.start()
    record_id = uuid.uuid4()
    verifying.record(record_id, Step.START, {"request": {"method": "GET"}, "request_id": "r-1"})
    verifying.record(record_id, Step.VERIFICATION, {"payment_verified": True})
    # The Settle reached the other replica, faster than the first one writes.
    settling.record(record_id, Step.SETTLEMENT, {"settlement": {"success": True}})
    settling.record(record_id, Step.FINALIZE, {"response_status": 200})
    await settling.flush()
    # The answer never reached the client: a later step of the same record.
    settling.record(record_id, Step.RELEASE, {"settlement": {"success": True, "ledger_state": "settled_unserved"}})

    async def landed():
        return await pool.fetchrow(
            "SELECT * FROM resource_call_records WHERE id = $1 AND response_status = 200", record_id
        )

    row = await eventually(landed, "the steps of the settling replica to land")
    assert (row["request_id"], row["payment_verified"], row["response_status"]) == ("r-1", True, 200)
    assert row["settlement"] == {"success": True, "ledger_state": "settled_unserved"}  # the later step last
    await verifying.close()
    await settling.close()
    assert settling.missing_rows == 0


async def test_a_step_whose_row_never_comes_is_counted_missing_after_the_wait(pool, tmp_path):
    writer = TrackingWriter(pool, spool_dir=tmp_path, row_wait_s=0.5)
    await writer.start()
    began = time.monotonic()
    writer.record(uuid.uuid4(), Step.FINALIZE, {"response_status": 200})
    await writer.flush()
    assert writer.missing_rows == 0  # still waiting for the row

    await eventually(lambda: writer.missing_rows, "the step to be counted missing")
    assert time.monotonic() - began >= 0.5
    assert writer.missing_rows == 1
    await writer.close()
