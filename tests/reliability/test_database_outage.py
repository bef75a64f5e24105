"""PostgreSQL stops during a load of paid requests through the gateway and comes
back. While it is away the money path refuses (no ledger claim, no content: the
sidecar answers UNAVAILABLE `ledger_unavailable`, the gateway 503) and the
tracking records go to the spool; once it is back they are replayed and every
request has its record. Nothing is served unpaid, nothing is settled twice, and
a payment charged just as the database went away is redeemable once."""

from __future__ import annotations

import asyncio
import base64
import collections
import json
import uuid

import grpc
import pytest

from sidecar.store.migrate import apply_migrations
from tests.store.stoppable_postgres import StoppablePostgres
from tests.support.calls import authorize_request
from tests.support.payments import sign_for
from tests.support.postgres import create_database
from tests.support.stack import sidecar_settings, start_sidecar

from .gateway import running_gateway
from .observe import eventually, fetch, transfers_by_nonce

WORKERS = 6
PAYMENTS = 180
PHASE_MIN = 15  # requests per class each phase must see


@pytest.fixture
async def stoppable(tmp_path):
    server = StoppablePostgres(tmp_path / "pgdata")
    database = await create_database(server.url())
    await apply_migrations(database)
    yield server, database
    server.cleanup()


def _nonce(header: str) -> str:
    return json.loads(base64.b64decode(header))["payload"]["authorization"]["nonce"].lower()


class Load:
    """Paid requests from WORKERS clients, each with a fresh payment."""

    def __init__(self, base: str, session, headers: list[str]) -> None:
        self.url = base + "/v1/records?_limit=1"
        self.session = session
        self.headers = iter(headers)
        self.results: list[tuple[str, str, int, str]] = []  # phase, request id, status, payment header
        self.phase = "before"
        self.stop = asyncio.Event()

    def count(self, phase: str, status: int) -> int:
        return sum(1 for p, _, s, _ in self.results if p == phase and s == status)

    async def worker(self) -> None:
        while not self.stop.is_set():
            header = next(self.headers, None)
            if header is None:
                return
            phase, request_id = self.phase, uuid.uuid4().hex
            headers = {"PAYMENT-SIGNATURE": header, "X-Request-ID": request_id}
            async with self.session.get(self.url, headers=headers) as answer:
                body = await answer.read()
                if answer.status == 503:
                    assert json.loads(body)["error"]["code"] == "payment_service_unavailable"
                self.results.append((phase, request_id, answer.status, header))


async def test_database_outage_refuses_payments_and_loses_no_record(stoppable, facilitator, chain, tmp_path, caplog):
    server, database_url = stoppable
    settings = sidecar_settings(
        database_url,
        tmp_path / "spool",
        [facilitator.url],
        chain_rpc_urls={"eip155:84532": facilitator.url + "/rpc"},
        settle_timeout_s=1.0,
        reconcile_window_s=0.0,
        settle_retries=0,
    )
    sidecar = await start_sidecar(settings)
    try:
        async with running_gateway(sidecar.target) as (base, session):
            headers = [await sign_for(base + "/v1/records", payer_index=i % 6) for i in range(PAYMENTS)]
            load = Load(base, session, headers)
            workers = [asyncio.ensure_future(load.worker()) for _ in range(WORKERS)]

            await eventually(lambda: load.count("before", 200) >= PHASE_MIN, "paid requests served before the outage")
            load.phase = "outage"
            await asyncio.to_thread(server.stop)
            load.phase = "down"
            await eventually(lambda: load.count("down", 503) >= PHASE_MIN, "payments refused while the database is down")

            # The money path names the ledger; a challenge needs no database.
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await sidecar.payments.Authorize(authorize_request(headers[-1], url=base + "/v1/records"))
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            assert refused.value.details().startswith("ledger_unavailable")
            challenge = await sidecar.payments.Authorize(authorize_request(url=base + "/v1/records"))
            assert challenge.payment_required.status == 402
            await sidecar.sidecar.writer.flush()
            assert sidecar.sidecar.writer.spool_records > 0

            load.phase = "restart"
            await asyncio.to_thread(server.start)
            load.phase = "after"
            await eventually(lambda: load.count("after", 200) >= PHASE_MIN, "paid requests served after the outage")
            load.stop.set()
            await asyncio.gather(*workers)

            writer = sidecar.sidecar.writer
            await eventually(lambda: writer.spool_records == 0 and writer.database_up, "the spool to be replayed")
            await writer.flush()

            # Charged as the database went away, not served: recovery asks the chain.
            await sidecar.sidecar.recover()  # thresholds are small: one pass resolves them
            stuck = await fetch(database_url, "SELECT state FROM payment_ledger WHERE state IN ('settling', 'unknown')")
            assert stuck == []
            redeemable = await fetch(database_url, "SELECT nonce FROM payment_ledger WHERE state = 'settled_unserved'")
            for row in redeemable:
                (header,) = [h for h in headers if _nonce(h) == row["nonce"]]
                async with session.get(load.url, headers={"PAYMENT-SIGNATURE": header}) as answer:
                    assert answer.status == 200  # served once, without a new transfer
    finally:
        await sidecar.stop()

    statuses = collections.Counter((phase, status) for phase, _, status, _ in load.results)
    # While the database was down nothing was served.
    assert {status for (phase, status) in statuses if phase == "down"} == {503}, statuses
    # Every 200 is a payment the chain shows, and no payment moved twice.
    moved = transfers_by_nonce(chain)
    assert set(moved.values()) == {1}
    served = [_nonce(h) for _, _, status, h in load.results if status == 200]
    assert all(moved[nonce] == 1 for nonce in served)
    assert len(moved) == len(served) + len(redeemable)
    assert facilitator.stats.settle_calls == chain.transfers_applied
    # No record lost: each request id has its record, complete with its answer.
    rows = {row["request_id"]: row for row in await fetch(
        database_url, "SELECT request_id, response_status FROM resource_call_records"
    )}
    missing = [rid for _, rid, _, _ in load.results if rid not in rows]
    assert missing == []
    for _, rid, status, _ in load.results:
        if status == 503:
            assert rows[rid]["response_status"] in (503, 0), rows[rid]
    # A database going away is an outage, answered UNAVAILABLE, never an unexpected error.
    unexpected = [r.getMessage() for r in caplog.records if r.name == "sidecar.api.errors"]
    assert unexpected == []
    print(f"database outage: {dict(statuses)} redeemed={len(redeemable)} records={len(rows)}")
