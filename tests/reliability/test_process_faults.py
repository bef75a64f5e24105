"""SIGKILL of a real sidecar process at each point of the paid flow, then a restart.

Three paid requests are caught at once by the kill, one at each point:
  after_verify    Authorize answered (claim `verified`), Settle not called yet;
  settle_flight   Settle sent, the facilitator moved the money and hangs (`settling`);
  answer_pending  the facilitator answered success, the ledger write that marks
                  the payment settled has not landed, nothing went back to the caller.

After the restart the startup recovery must resolve every row from the chain,
never by guessing; no payment settles twice, no Settle ever says success for a
payment the chain does not show, a charged-but-undelivered payment is redeemable
exactly once, and the tracking record of each killed request is kept and marked.

What the killed requests' tracking records end as (steps recorded within the
last flush interval before a SIGKILL are lost with the process; the test lets
them land first):
  after_verify    payment_verified; settlement {success: false, released: true,
                  reason: stale_claim, ledger_state: released}; response_status 0
  settle_flight   settlement {success: true, status: settled_unserved,
                  reconciled: true, source: chain}; response_status 0
  answer_pending  the same settled_unserved settlement, written over the
                  facilitator's success (its transaction hash is not kept: the
                  ledger never stored it); response_status 200, the handler's
all three with metadata.recovered {state, at}.
"""

from __future__ import annotations

import asyncio

import asyncpg
import grpc
import pytest

from devnet.chain import Chain
from tests.support.calls import URL, authorize_request, settle_request
from tests.support.payments import sign_for

from .observe import eventually, fetch, ledger_states, nonce_of, tracking_record, transfers_by_nonce

# Blocks the ledger write `-> settled` while the test holds this advisory lock: the
# window between the facilitator's success and the answer leaving the sidecar.
HOLD_LOCK = 4021
HOLD_SETTLED = f"""
CREATE FUNCTION test_hold_settled() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.state = 'settled' THEN PERFORM pg_advisory_xact_lock_shared({HOLD_LOCK}); END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER test_hold_settled BEFORE UPDATE ON payment_ledger
  FOR EACH ROW EXECUTE FUNCTION test_hold_settled();
"""
DROP_HOLD = "DROP TRIGGER test_hold_settled ON payment_ledger; DROP FUNCTION test_hold_settled();"
WAITING_ON_HOLD = """
SELECT pid FROM pg_stat_activity
WHERE datname = current_database() AND wait_event_type = 'Lock' AND wait_event = 'advisory'
"""

# The first run waits long enough for the kill to land mid-settle; the restart
# runs recovery with small thresholds so the test needs no long waits.
FIRST_RUN = dict(settle_timeout_s=60, settle_retries=0, reconcile_window_s=0, recovery_interval_s=3600)
RESTART = dict(settle_timeout_s=0.2, settle_retries=0, reconcile_window_s=0, recovery_interval_s=0.1)


async def _settle_fails_with_kill(call: asyncio.Task) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value.code()


async def _pay(sidecar, header: str, chain: Chain) -> tuple[bool, bool]:
    """Authorize + Settle; (served, redeemed). A success must be on the chain."""
    authorized = await sidecar.payments.Authorize(authorize_request(header))
    if authorized.WhichOneof("outcome") != "verified":
        return False, False
    settled = await sidecar.payments.Settle(settle_request(authorized))
    if settled.success:
        assert transfers_by_nonce(chain)[nonce_of(header)] == 1, "Settle said success for a payment not on chain"
    return settled.success, authorized.verified.redeem


async def test_sigkill_at_each_point_of_the_paid_flow(spawn_sidecar, facilitator, chain, database_url):
    headers = {point: await sign_for(URL) for point in ("after_verify", "settle_flight", "answer_pending")}
    conn = await asyncpg.connect(database_url)
    await conn.execute(HOLD_SETTLED)
    await conn.execute("SELECT pg_advisory_lock($1)", HOLD_LOCK)
    try:
        first = await spawn_sidecar(**FIRST_RUN)
        authorized = {p: await first.payments.Authorize(authorize_request(h)) for p, h in headers.items()}
        assert {a.WhichOneof("outcome") for a in authorized.values()} == {"verified"}
        pids = {p: a.verified.payment_id for p, a in authorized.items()}

        facilitator.arm(stage="settle", mode="hang", after_transfer=True, times=1)
        in_flight = asyncio.ensure_future(first.payments.Settle(settle_request(authorized["settle_flight"])))
        await eventually(lambda: chain.transfers_applied == 1, "the hung settle to move the money")

        pending = asyncio.ensure_future(first.payments.Settle(settle_request(authorized["answer_pending"])))
        orphan = await eventually(lambda: conn.fetchval(WAITING_ON_HOLD), "the settled write to wait on the hold")
        assert chain.transfers_applied == 2

        # Let the tracking steps recorded so far land (a SIGKILL loses at most one
        # flush interval of steps), so the records' state at the kill is known.
        async def recorded() -> bool:
            records = [await tracking_record(database_url, a.tracking_id) for a in authorized.values()]
            settled = records[2] and (records[2]["settlement"] or {}).get("success")
            return all(r and r["payment_verified"] for r in records) and bool(settled)

        await eventually(recorded, "the verification and settlement steps to reach the database")
        await first.kill()
        assert await _settle_fails_with_kill(in_flight) == grpc.StatusCode.UNAVAILABLE
        assert await _settle_fails_with_kill(pending) == grpc.StatusCode.UNAVAILABLE
        await first.closed()

        # The host is gone with the process: so is its database session.
        await conn.execute("SELECT pg_terminate_backend($1)", orphan)
    finally:
        await conn.execute("SELECT pg_advisory_unlock_all()")
        await conn.execute(DROP_HOLD)
        await conn.close()

    assert await ledger_states(database_url, pids.values()) == {
        pids["after_verify"]: "verified",
        pids["settle_flight"]: "settling",
        pids["answer_pending"]: "settling",
    }
    # A claim with no Settle is given back after a timeout (10 min at least, so a
    # live replica's slow handler keeps it); let that time pass.
    await fetch(
        database_url,
        "UPDATE payment_ledger SET updated_at = now() - interval '1 hour' WHERE payment_id = $1",
        pids["after_verify"],
    )

    second = await spawn_sidecar(**RESTART)
    expected = {
        pids["after_verify"]: "released",
        pids["settle_flight"]: "settled_unserved",
        pids["answer_pending"]: "settled_unserved",
    }
    async def resolved() -> bool:
        return await ledger_states(database_url, pids.values()) == expected

    await eventually(resolved, "recovery to resolve every row")
    rows = {r["payment_id"]: r for r in await fetch(database_url, "SELECT * FROM payment_ledger")}
    for point in ("settle_flight", "answer_pending"):
        assert rows[pids[point]]["reconciled_by"] == "chain"  # asked, not guessed
        assert rows[pids[point]]["served"] is False

    # Each killed request keeps its record, marked with what recovery found.
    async def marked() -> dict | None:
        records = {p: await tracking_record(database_url, a.tracking_id) for p, a in authorized.items()}
        return records if all("recovered" in r["metadata"] for r in records.values()) else None

    records = await eventually(marked, "recovery to mark the tracking records")
    assert records["after_verify"]["payment_verified"] is True
    assert records["after_verify"]["settlement"] == {
        "success": False,
        "released": True,
        "reason": "stale_claim",
        "ledger_state": "released",
    }
    for point in ("settle_flight", "answer_pending"):
        settlement = records[point]["settlement"]
        assert (settlement["success"], settlement["status"]) == (True, "settled_unserved")
        assert (settlement["reconciled"], settlement["source"]) == (True, "chain")
    assert records["after_verify"]["response_status"] == 0  # the handler never reported
    # The handler's 200 reached the sidecar with Settle, the content never left it.
    assert records["answer_pending"]["response_status"] == 200

    # The old claims were resolved by recovery: no Settle can succeed on them.
    with pytest.raises(grpc.aio.AioRpcError) as stale:
        await second.payments.Settle(settle_request(authorized["settle_flight"]))
    assert stale.value.code() == grpc.StatusCode.FAILED_PRECONDITION

    # Charged but never served: redeemed once with the same header, no new transfer.
    for point in ("settle_flight", "answer_pending"):
        assert await _pay(second, headers[point], chain) == (True, True)
        assert await _pay(second, headers[point], chain) == (False, False)
    # Never charged: the released payment is used normally, once.
    assert await _pay(second, headers["after_verify"], chain) == (True, False)
    assert await _pay(second, headers["after_verify"], chain) == (False, False)

    assert chain.transfers_applied == 3
    assert set(transfers_by_nonce(chain).values()) == {1}
    assert facilitator.stats.settle_calls == 3
    await second.stop()

