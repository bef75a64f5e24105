"""PostgreSQL stops during a load of paid requests through the gateway and comes
back. While it is away the money path refuses (no ledger claim, no content: the
sidecar answers UNAVAILABLE `ledger_unavailable`, the gateway 503) and the
tracking records go to the spool; once it is back they are replayed and every
request has its record. Nothing is served unpaid, nothing is settled twice, and
a payment charged just as the database went away is redeemable once."""

from __future__ import annotations

import asyncio
import collections
import json
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from sidecar.store.migrate import apply_migrations
from tests.support.calls import URL, authorize_request, settle_request
from tests.support.payments import sign_for
from tests.support.postgres import create_database
from tests.support.stack import sidecar_settings, start_sidecar

from .gateway import running_gateway
from .observe import eventually, execute, fetch, nonce_of, transfers_by_nonce
from .postgres_outage import OutagePostgres

WORKERS = 6
PAYMENTS = 120
PHASE_MIN = 15  # answers of each kind each phase must see


@pytest.fixture
async def stoppable():
    # Outside pytest's base temp: pytest resets that to mode 0700 at each session
    # start, which would lock out the `pgserver` user PostgreSQL runs as under root.
    home = Path(tempfile.mkdtemp(prefix="paysidecar-outage-"))
    server = OutagePostgres(home / "pgdata")
    database = await create_database(server.url())
    await apply_migrations(database)
    yield server, database
    server.cleanup()
    shutil.rmtree(home, ignore_errors=True)


@dataclass(frozen=True)
class Answer:
    began: str  # phase when the request was sent
    ended: str  # phase when its answer arrived
    request_id: str
    status: int
    header: str


class Load:
    """Paid requests from WORKERS clients. A client refused with 503 retries the
    same payment later, as x402 clients do; a fresh payment otherwise."""

    def __init__(self, base: str, session, headers: list[str]) -> None:
        self.url = base + "/v1/records?_limit=1"
        self.session = session
        self.queue = collections.deque(headers)
        self.answers: list[Answer] = []
        self.phase = "before"
        self.stop = asyncio.Event()

    def count(self, phase: str, status: int) -> int:
        return sum(1 for a in self.answers if a.began == a.ended == phase and a.status == status)

    async def worker(self) -> None:
        while not self.stop.is_set() and self.queue:
            header = self.queue.popleft()
            began, request_id = self.phase, uuid.uuid4().hex
            async with self.session.get(self.url, headers={"PAYMENT-SIGNATURE": header, "X-Request-ID": request_id}) as answer:
                body = await answer.read()
            if answer.status == 503:
                # No ledger before a settle: nothing charged; a settle the outage cut
                # short: in doubt. Either way, the same payment header is retried.
                assert json.loads(body)["error"]["code"] in ("payment_service_unavailable", "payment_in_doubt"), body
                self.queue.append(header)
                await asyncio.sleep(0.01)  # a refused client backs off a little
            self.answers.append(Answer(began, self.phase, request_id, answer.status, header))


async def test_database_outage_refuses_payments_and_loses_no_record(stoppable, facilitator, chain, tmp_path, caplog):
    server, database_url = stoppable
    settings = sidecar_settings(
        database_url,
        tmp_path / "spool",
        [facilitator.url],
        chain_rpc_urls={"eip155:84532": facilitator.url + "/rpc"},
        settle_timeout_s=0.5,
        reconcile_window_s=0.0,
        settle_retries=0,
    )
    sidecar = await start_sidecar(settings)
    writer = sidecar.sidecar.writer
    try:
        async with running_gateway(sidecar.target) as (base, session):
            headers = [await sign_for(base + "/v1/records", payer_index=i % 6) for i in range(PAYMENTS)]
            load = Load(base, session, headers)
            workers = [asyncio.ensure_future(load.worker()) for _ in range(WORKERS)]

            await eventually(lambda: load.count("before", 200) >= PHASE_MIN, "paid requests served before the outage")
            load.phase = "stopping"
            await server.go_down()
            load.phase = "down"
            await eventually(lambda: load.count("down", 503) >= PHASE_MIN, "payments refused while the database is down")

            # The money path names the ledger; a challenge needs no database.
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await sidecar.payments.Authorize(authorize_request(headers[-1], url=base + "/v1/records"))
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            assert refused.value.details().startswith("ledger_unavailable")
            challenge = await sidecar.payments.Authorize(authorize_request(url=base + "/v1/records"))
            assert challenge.payment_required.status == 402
            await writer.flush()
            assert writer.spool_records > 0 and not writer.database_up

            load.phase = "starting"
            await server.come_back()
            load.phase = "after"
            await eventually(lambda: load.count("after", 200) >= PHASE_MIN, "paid requests served after the outage")
            load.stop.set()
            await asyncio.gather(*workers)
            await eventually(lambda: writer.spool_records == 0 and writer.database_up, "the spool to be replayed")
            await writer.flush()

            # Settles the outage interrupted are resolved from the chain, never guessed.
            async def resolved() -> bool:
                await sidecar.sidecar.recover()
                return not await fetch(database_url, "SELECT 1 FROM payment_ledger WHERE state IN ('settling', 'unknown')")

            await eventually(resolved, "recovery to resolve the interrupted settles")
            # Charged just as the database went away and not served: redeemed once.
            redeemable = await fetch(database_url, "SELECT nonce FROM payment_ledger WHERE state = 'settled_unserved'")
            for row in redeemable:
                (header,) = [h for h in headers if nonce_of(h) == row["nonce"]]
                async with session.get(load.url, headers={"PAYMENT-SIGNATURE": header}) as answer:
                    assert answer.status == 200
    finally:
        await sidecar.stop()

    answers = load.answers
    statuses = collections.Counter((a.began, a.ended, a.status) for a in answers)
    # Nothing was served while the database was down.
    assert not [a for a in answers if a.began == a.ended == "down" and a.status != 503], statuses
    # Every 200 is a payment the chain shows; no payment moved twice or was served twice.
    moved = transfers_by_nonce(chain)
    assert set(moved.values()) == {1}
    served = collections.Counter(nonce_of(a.header) for a in answers if a.status == 200)
    assert set(served.values()) == {1} and all(moved[nonce] == 1 for nonce in served)
    assert facilitator.stats.settle_calls == chain.transfers_applied
    # A payment whose claim the outage interrupted before any settle is locked
    # until the stale-claim recovery (10 min): its retries are refused with 402.
    locked = {nonce_of(a.header) for a in answers if a.status == 402} - set(served)
    # No record lost and none doubled: each request id has its one record (the
    # client's retry of an Authorize refused UNAVAILABLE continues the first's).
    recorded = collections.Counter(
        row["request_id"] for row in await fetch(database_url, "SELECT request_id FROM resource_call_records")
    )
    assert [a.request_id for a in answers if a.request_id not in recorded] == []
    assert [request_id for request_id, count in recorded.items() if count > 1] == []
    # A database going away is an outage, answered UNAVAILABLE, never an unexpected error.
    assert [r.getMessage() for r in caplog.records if r.name == "sidecar.api.errors"] == []
    print(
        f"database outage: requests={len(answers)} served={sum(served.values())} "
        f"refused_503={sum(1 for a in answers if a.status == 503)} redeemed_after={len(redeemable)} "
        f"locked_402={len(locked)} records_lost=0"
    )


async def test_a_paid_call_refused_by_a_database_outage_leaves_one_record(stoppable, facilitator, tmp_path):
    """The gateway's client re-sends an Authorize refused UNAVAILABLE once (its
    retry policy); the retry continues the call's record. Two calls that share an X-Request-ID
    (clients choose it) keep a record each."""
    server, database_url = stoppable
    sidecar = await start_sidecar(sidecar_settings(database_url, tmp_path / "spool", [facilitator.url]))
    writer = sidecar.sidecar.writer
    calls = ["one-call", "shared-request-id", "shared-request-id"]
    try:
        async with running_gateway(sidecar.target) as (base, session):
            headers = [await sign_for(base + "/v1/records", payer_index=n) for n in range(len(calls))]
            await server.go_down()
            try:
                for request_id, header in zip(calls, headers, strict=True):
                    paid = {"PAYMENT-SIGNATURE": header, "X-Request-ID": request_id}
                    async with session.get(base + "/v1/records?_limit=1", headers=paid) as answer:
                        assert answer.status == 503
            finally:
                await server.come_back()
            await eventually(lambda: writer.spool_records == 0 and writer.database_up, "the spool to be replayed")
            await writer.flush()
        # Every call's Authorize reached the sidecar twice.
        received = [len(await sidecar.events("request_received", request_id)) for request_id in set(calls)]
        assert sorted(received) == [2, 4]
    finally:
        await sidecar.stop()
    records = await fetch(database_url, "SELECT request_id, response_status, verification_error FROM resource_call_records")
    assert collections.Counter(row["request_id"] for row in records) == collections.Counter(calls)
    assert {(row["response_status"], row["verification_error"]) for row in records} == {(503, "ledger_unavailable")}


# The ledger write that starts a settle fails as if the connection broke (SQLSTATE 08006).
FAIL_SETTLING = """
CREATE FUNCTION test_fail_settling() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.state = 'settling' THEN RAISE EXCEPTION 'connection lost' USING ERRCODE = '08006'; END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER test_fail_settling BEFORE UPDATE ON payment_ledger
  FOR EACH ROW EXECUTE FUNCTION test_fail_settling();
"""


async def test_a_settle_refused_by_a_ledger_outage_can_be_retried(make_sidecar, database_url, chain):
    sidecar = await make_sidecar()
    authorized = await sidecar.payments.Authorize(authorize_request(await sign_for(URL)))
    await execute(database_url, FAIL_SETTLING)
    try:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await sidecar.payments.Settle(settle_request(authorized))
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await execute(database_url, "DROP TRIGGER test_fail_settling ON payment_ledger; DROP FUNCTION test_fail_settling();")
    # The database is back: the same Settle, re-sent, completes the payment.
    settled = await sidecar.payments.Settle(settle_request(authorized))
    assert settled.success
    assert chain.transfers_applied == 1
