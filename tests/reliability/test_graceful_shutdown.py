"""SIGTERM to a real sidecar while requests are in flight: the Settle already
running is drained to its end, a claim still waiting for its Settle is released,
every tracking step reaches the database, and the process exits 0."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from paysidecar.v1 import payment_pb2_grpc
from tests.support.calls import URL, authorize_request, settle_request
from tests.support.payments import sign_for

from .observe import eventually, ledger_states, tracking_record


async def test_sigterm_drains_settles_releases_claims_and_flushes_tracking(
    spawn_sidecar, facilitator, chain, database_url, tmp_path
):
    sidecar = await spawn_sidecar(shutdown_grace_s=10)
    waiting = await sidecar.payments.Authorize(authorize_request(await sign_for(URL)))
    settling = await sidecar.payments.Authorize(authorize_request(await sign_for(URL)))
    unpaid = await sidecar.payments.Authorize(authorize_request())
    assert (waiting.WhichOneof("outcome"), settling.WhichOneof("outcome")) == ("verified", "verified")
    ids = {"waiting": waiting.verified.payment_id, "settling": settling.verified.payment_id}

    facilitator.arm(stage="settle", mode="delay", delay_ms=1500, times=1)
    in_flight = asyncio.ensure_future(sidecar.payments.Settle(settle_request(settling)))

    async def settle_started() -> bool:
        return (await ledger_states(database_url, [ids["settling"]])).get(ids["settling"]) == "settling"

    await eventually(settle_started, "the Settle to reach the facilitator")
    assert not in_flight.done()
    sidecar.child.process.terminate()

    settled = await in_flight  # drained, not cut off
    assert settled.success
    assert await sidecar.exited() == 0
    assert chain.transfers_applied == 1

    # The Authorize-only claim went back: nothing was charged, the payer may retry.
    assert await ledger_states(database_url, ids.values()) == {ids["waiting"]: "released", ids["settling"]: "settled"}
    assert "released 1 unsettled claims at shutdown" in sidecar.log()

    answers = {"waiting": waiting, "settling": settling, "unpaid": unpaid}
    records = {name: await tracking_record(database_url, a.tracking_id) for name, a in answers.items()}
    assert records["waiting"]["settlement"]["released"] is True
    assert records["waiting"]["settlement"]["reason"] == "shutdown"
    assert records["waiting"]["settlement"]["ledger_state"] == "released"
    assert records["settling"]["settlement"]["success"] is True
    assert records["settling"]["response_status"] == 200
    assert records["unpaid"]["response_status"] == 402
    # Flushed to the database, not left in the spool or its journal.
    assert not [p for p in (tmp_path / "spool").rglob("*") if p.is_file() and p.stat().st_size]

    # Gone for good: nothing more is answered.
    async with grpc.aio.insecure_channel(sidecar.target) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as gone:
            await payment_pb2_grpc.PaymentServiceStub(channel).Settle(settle_request(waiting), timeout=2)
    assert gone.value.code() == grpc.StatusCode.UNAVAILABLE
