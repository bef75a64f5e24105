"""A service in front of a pool of sidecars on one database. SidecarClient takes
several addresses (or one DNS name), spreads the calls over every replica with
gRPC's own round_robin, leaves out a replica that is not SERVING or cannot be
reached, and any replica settles what another one verified: the Settle carries
the payment header with the claim token."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import grpc
import pytest

from paysidecar.client import SidecarClient
from paysidecar.v1 import payment_pb2, payment_pb2_grpc, status_pb2
from sidecar.server import add_health_and_reflection
from tests.reliability.observe import eventually, tracking_records
from tests.support.calls import authorize_request, receipt
from tests.support.net import closed_port
from tests.support.payments import sign_for
from tests.support.stack import DevnetFacilitator, SidecarHandle, devnet, sidecar_settings, start_sidecar

from .conftest import WEATHER_ROUTE, serve_asgi
from .weather_asgi import weather_app

PAID_REQUESTS = 12


@dataclass
class Pool:
    chain: object
    facilitator: DevnetFacilitator
    replicas: list[SidecarHandle]

    @property
    def target(self) -> str:
        return ",".join(replica.target for replica in self.replicas)


@pytest.fixture
async def pool(database_url, tmp_path) -> AsyncIterator[Pool]:
    async with devnet(count=1) as (chain, (facilitator,)):
        replicas = []
        try:
            for n in range(2):
                settings = sidecar_settings(
                    database_url,
                    tmp_path / f"spool{n}",
                    [facilitator.url],
                    chain_rpc_urls={"eip155:84532": facilitator.url + "/rpc"},
                    routes=WEATHER_ROUTE,  # every replica has the one route config
                )
                replicas.append(await start_sidecar(settings))
            yield Pool(chain, facilitator, replicas)
        finally:
            for replica in replicas:
                await replica.stop()


async def _events(replica: SidecarHandle, name: str) -> list[status_pb2.TelemetryEvent]:
    answer = await replica.status.GetTelemetry(status_pb2.GetTelemetryRequest(limit=1000))
    return [event for event in answer.events if event.name == name]


async def _served_by(pool: Pool, name: str) -> dict[str, int]:
    """request id -> index of the replica that recorded the event `name` for it."""
    found = {}
    for index, replica in enumerate(pool.replicas):
        for event in await _events(replica, name):
            found[event.request_id] = index
    return found


async def test_a_service_balances_over_the_pool_and_any_replica_settles(pool, database_url):
    async with serve_asgi(weather_app(pool.target)) as url, aiohttp.ClientSession() as session:
        url += "/weather"
        for n in range(PAID_REQUESTS):
            headers = {"PAYMENT-SIGNATURE": await sign_for(url, payer_index=n % 8), "X-Request-ID": f"pool-{n}"}
            async with session.get(url, headers=headers) as response:
                assert response.status == 200, await response.text()
                assert receipt(response.headers)["success"] is True

    authorized, settled = await _served_by(pool, "request_received"), await _served_by(pool, "payment_settled")
    assert len(settled) == PAID_REQUESTS
    assert {*authorized.values(), *settled.values()} == {0, 1}  # both replicas took calls
    # (One call after the other, round_robin sends every Settle to the replica that did not verify.)
    assert any(authorized[rid] != settled[rid] for rid in settled)
    assert pool.chain.transfers_applied == PAID_REQUESTS

    # Each call has its one record, complete, whichever replica wrote which step.
    async def complete():
        records = await tracking_records(database_url)
        done = [r for r in records if r["response_status"] == 200 and (r["settlement"] or {}).get("success")]
        return len(done) == len(records) == PAID_REQUESTS

    await eventually(complete, "every record to be complete")


async def test_a_replica_shutting_down_is_left_out(pool):
    async with SidecarClient(pool.target, timeout_s=5.0) as client:
        await pool.replicas[1].sidecar.health.enter_graceful_shutdown()  # NOT_SERVING, still listening

        async def only_serving() -> bool:
            answers = [await client.health() for _ in range(10)]
            return answers == ["SERVING"] * 10

        await eventually(only_serving, "the client to leave the replica shutting down out")
        answers = await asyncio.gather(*(client.authorize(authorize_request()) for _ in range(10)))

    assert {answer.WhichOneof("outcome") for answer in answers} == {"payment_required"}
    # Every Authorize went to the replica still serving.
    assert [len(await _events(replica, "request_received")) for replica in pool.replicas] == [10, 0]


@pytest.mark.parametrize("shape", ["list", "dns"])
async def test_an_address_that_does_not_answer_is_skipped(pool, shape):
    live = pool.replicas[0].target
    port = live.rsplit(":", 1)[1]
    # A pool where one address refuses connections: a list naming it, or a name
    # that may resolve to one (localhost is often ::1 too; the sidecar listens on 127.0.0.1).
    target = f"127.0.0.1:{closed_port()},{live}" if shape == "list" else f"dns:///localhost:{port}"
    async with SidecarClient(target, timeout_s=5.0) as client:
        answers = [await client.authorize(authorize_request()) for _ in range(10)]
    assert {answer.WhichOneof("outcome") for answer in answers} == {"payment_required"}


class _Misbehaving(payment_pb2_grpc.PaymentServiceServicer):
    """A replica answering every Authorize and Settle with `code` (OK: a plain
    answer), keeping what it received: a real server misbehaving on purpose."""

    def __init__(self, code: grpc.StatusCode) -> None:
        self.code = code
        self.received: list = []

    async def _answer(self, request, context, answer):
        self.received.append(request)
        if self.code != grpc.StatusCode.OK:
            await context.abort(self.code, "on purpose")
        return answer

    async def Authorize(self, request, context):
        return await self._answer(request, context, payment_pb2.AuthorizeResponse(tracking_id="t"))

    async def Settle(self, request, context):
        return await self._answer(request, context, payment_pb2.SettleResponse(success=True))


@contextlib.asynccontextmanager
async def _misbehaving(code: grpc.StatusCode) -> AsyncIterator[tuple[_Misbehaving, str]]:
    server = grpc.aio.server()
    replica = _Misbehaving(code)
    payment_pb2_grpc.add_PaymentServiceServicer_to_server(replica, server)
    await add_health_and_reflection(server)  # SERVING: balanced over like any replica
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield replica, f"127.0.0.1:{port}"
    finally:
        await server.stop(None)


async def _connected_to_both(client: SidecarClient, *replicas: _Misbehaving) -> None:
    """Call until each replica got a call (round_robin picks only connected ones),
    then forget those calls."""

    async def both() -> bool:
        with contextlib.suppress(grpc.aio.AioRpcError):
            await client.authorize(authorize_request())
        return all(replica.received for replica in replicas)

    await eventually(both, "the client to be connected to both replicas")
    for replica in replicas:
        replica.received.clear()


async def _settle(client: SidecarClient, n: int):
    ids = dict(payment_id=f"p{n}", claim_token="c", tracking_id="t", request_id=f"r{n}")
    return await client.settle(**ids, response_status=200, response_time_ms=1)


async def test_a_call_that_got_no_answer_is_sent_again_unchanged_to_another_replica():
    async with (
        _misbehaving(grpc.StatusCode.UNAVAILABLE) as (down, down_target),
        _misbehaving(grpc.StatusCode.OK) as (up, up_target),
        SidecarClient(f"{down_target},{up_target}", timeout_s=5.0) as client,
    ):
        await _connected_to_both(client, down, up)
        for n in range(6):
            await client.authorize(authorize_request())
            assert (await _settle(client, n)).success

    assert len(up.received) == 12 and down.received  # every call answered, some re-sent
    # The same message again: for Authorize the same call_key, so the same record.
    assert all(request in up.received for request in down.received)
    assert all(request.call_key for request in down.received if isinstance(request, payment_pb2.AuthorizeRequest))


@pytest.mark.parametrize(
    "code", [grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.INTERNAL, grpc.StatusCode.FAILED_PRECONDITION]
)
async def test_a_call_that_got_any_other_failure_is_not_sent_again(code):
    failures = 0
    async with (
        _misbehaving(code) as (failing, failing_target),
        _misbehaving(grpc.StatusCode.OK) as (up, up_target),
        SidecarClient(f"{failing_target},{up_target}", timeout_s=5.0) as client,
    ):
        await _connected_to_both(client, failing, up)
        for n in range(6):
            try:
                await _settle(client, n)
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == code
                failures += 1

    # The first attempt may still be running (or have settled): never a second one.
    assert failures == len(failing.received) > 0
    assert len(up.received) == 6 - failures
