"""The payment-identifier rules in a pool of sidecars: an id binds its payment on
the database, so whichever replica adopts and settles a claim, every replica
answers the id alike; a replay's claim lives on the id's binding, not in the
ledger row, so the replica holding it must not take it for one closed elsewhere."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from paysidecar.v1 import status_pb2
from tests.sidecar.test_payment_identifier import PAYMENT_ID, authorize, offer, refusal
from tests.support.calls import URL, settle_request
from tests.support.payments import sign_with_identifier

OTHER_URL = URL + "?_limit=2"


@contextlib.asynccontextmanager
async def _two_replicas(make_sidecar) -> AsyncIterator[tuple]:
    a, b = await make_sidecar(), await make_sidecar()
    try:
        yield a, b
    finally:
        await a.stop()
        await b.stop()


async def _signed(sidecar, url: str = URL) -> str:
    """A fresh authorization paying the route's 402 at `url` with PAYMENT_ID."""
    return await sign_with_identifier(await offer(sidecar, url), PAYMENT_ID)


def _with_header(request, header: str):
    request.payment_signature = header
    return request


async def _in_flight(sidecar) -> int:
    return (await sidecar.status.GetStatus(status_pb2.GetStatusRequest())).in_flight_payments


async def test_a_payment_adopted_and_settled_by_another_replica_binds_its_id_on_every_replica(make_sidecar, chain):
    async with _two_replicas(make_sidecar) as (a, b):
        first_header = await _signed(a)
        first = await authorize(a, first_header)
        # While a holds the first payment, a retry reaching b waits for it.
        meanwhile = await authorize(b, await _signed(b))
        settled = await b.payments.Settle(_with_header(settle_request(first), first_header))

        retry_header = await _signed(b)
        retried = await authorize(b, retry_header)
        served = await a.payments.Settle(_with_header(settle_request(retried), retry_header))
        other_request = await authorize(a, await _signed(a, OTHER_URL), OTHER_URL)

    assert refusal(meanwhile)[:2] == (409, "payment_identifier_in_flight")
    assert settled.success
    assert retried.verified.redeem and retried.verified.payment_id == first.verified.payment_id
    assert served.success and served.transaction == settled.transaction
    assert refusal(other_request)[:2] == (409, "payment_identifier_conflict")
    assert chain.transfers_applied == 1


async def test_a_replay_held_here_is_not_forgotten_as_closed_elsewhere(make_sidecar, chain):
    async with _two_replicas(make_sidecar) as (a, b):
        first_header = await _signed(a)
        first = await authorize(a, first_header)
        assert (await a.payments.Settle(settle_request(first))).success
        replaying = await authorize(a, await _signed(a))

        forgotten = await a.sidecar.service.forget_closed()
        held = await _in_flight(a)
        # Still held here: its Settle needs no header.
        served = await a.payments.Settle(settle_request(replaying))

    assert replaying.verified.redeem
    assert (forgotten, held) == (0, 1)
    assert served.success
    assert chain.transfers_applied == 1


async def test_a_replay_settled_by_another_replica_is_forgotten_by_the_one_holding_it(make_sidecar, chain):
    async with _two_replicas(make_sidecar) as (a, b):
        first = await authorize(a, await _signed(a))
        assert (await a.payments.Settle(settle_request(first))).success
        replay_header = await _signed(a)
        replaying = await authorize(a, replay_header)
        served = await b.payments.Settle(_with_header(settle_request(replaying), replay_header))

        forgotten = await a.sidecar.service.forget_closed()
        held = await _in_flight(a)
        # The replay is over: the id serves the next retry again.
        again = await authorize(b, await _signed(b))

    assert served.success
    assert (forgotten, held) == (1, 0)
    assert again.verified.redeem
    assert chain.transfers_applied == 1
