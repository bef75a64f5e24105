"""GetStatus: what an operator needs to see, including the tracking writes that
went wrong without failing any request (they would otherwise reach only the log)."""

from __future__ import annotations

import uuid

from paysidecar.v1 import status_pb2
from sidecar.store.tracking import Step
from tests.support.calls import URL, authorize_request
from tests.support.payments import sign_for


async def test_status_counts_tracking_writes_that_failed_quietly(make_sidecar):
    # No wait for a row another replica may still write: counted missing at once.
    sidecar = await make_sidecar(tracking_row_wait_s=0)
    writer = sidecar.sidecar.writer
    try:
        # A step for a record that has no row, and a row the database refuses (jsonb
        # takes no lone surrogate): neither fails a request, both are counted.
        writer.record(uuid.uuid4(), Step.FINALIZE, {"response_status": 200})
        writer.record(uuid.uuid4(), Step.START, {"request": {"q": "\ud800"}})
        await writer.flush()

        status = await sidecar.status.GetStatus(status_pb2.GetStatusRequest())
    finally:
        await sidecar.stop()

    assert (status.tracking_missing_rows, status.tracking_rejected_rows) == (1, 1)
    assert status.tracking_journal_failures == 0
    assert status.database == "up" and status.tracking_queue_depth == 0


async def test_status_shows_the_facilitators_and_the_claims_in_flight(sidecar, facilitators):
    authorized = await sidecar.payments.Authorize(authorize_request(await sign_for(URL)))
    assert authorized.WhichOneof("outcome") == "verified"

    status = await sidecar.status.GetStatus(status_pb2.GetStatusRequest())

    assert status.in_flight_payments == 1
    (facilitator,) = status.facilitators
    assert facilitator.url == facilitators[0].url
    assert facilitator.breaker_state == "closed" and facilitator.attempts == 1
