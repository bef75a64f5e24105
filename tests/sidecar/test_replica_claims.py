"""In a pool the gateway balances every call, so the replica that verified a
payment often is not the one its Settle or Release reaches. What the verifying
replica keeps in memory of the claim must then never stand in the way: the
ledger decides, and what another replica closed is forgotten."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from paysidecar.v1 import status_pb2
from tests.reliability.observe import eventually
from tests.support.calls import URL, authorize_request, release_request, settle_request
from tests.support.payments import sign_for


@contextlib.asynccontextmanager
async def _two_replicas(make_sidecar, **first_settings) -> AsyncIterator[tuple]:
    a, b = await make_sidecar(**first_settings), await make_sidecar()
    try:
        yield a, b
    finally:
        await a.stop()
        await b.stop()


def _with_header(request, header: str):
    request.payment_signature = header
    return request


async def _in_flight(sidecar) -> int:
    return (await sidecar.status.GetStatus(status_pb2.GetStatusRequest())).in_flight_payments


async def _claimed_again_elsewhere(a, b, header: str):
    """a verifies the payment; the handler fails and the Release reaches b; the payer
    sends the payment again and that Authorize lands on b too. a still remembers its
    own claim, closed since. b's new claim (the AuthorizeResponse)."""
    first = await a.payments.Authorize(authorize_request(header))
    await b.payments.Release(release_request(first, "handler_status_500", status=500))
    second = await b.payments.Authorize(authorize_request(header))
    assert second.WhichOneof("outcome") == "verified"
    return second


async def test_a_replica_settles_a_claim_made_elsewhere_after_its_own_was_released(make_sidecar, chain):
    header = await sign_for(URL)
    async with _two_replicas(make_sidecar) as (a, b):
        second = await _claimed_again_elsewhere(a, b, header)
        settled = await a.payments.Settle(_with_header(settle_request(second), header))

        assert settled.success
        assert await _in_flight(a) == 0
    assert chain.transfers_applied == 1


async def test_a_replica_releases_a_claim_made_elsewhere_after_its_own_was_released(make_sidecar, chain):
    header = await sign_for(URL)
    async with _two_replicas(make_sidecar) as (a, b):
        second = await _claimed_again_elsewhere(a, b, header)
        released = await a.payments.Release(release_request(second, "client_gone"))

        assert released.state == "released"
        assert await _in_flight(a) == 0
        # Released for good: the payment is used normally, once.
        third = await a.payments.Authorize(authorize_request(header))
        assert (await a.payments.Settle(settle_request(third))).success
    assert chain.transfers_applied == 1


async def test_a_claim_settled_by_another_replica_is_forgotten_by_the_one_that_verified(make_sidecar, chain):
    header = await sign_for(URL)
    async with _two_replicas(make_sidecar, recovery_interval_s=0.05) as (a, b):
        authorized = await a.payments.Authorize(authorize_request(header))
        assert (await b.payments.Settle(_with_header(settle_request(authorized), header))).success

        async def forgotten() -> bool:
            return await _in_flight(a) == 0

        await eventually(forgotten, "the verifying replica to forget the claim settled elsewhere")
    assert chain.transfers_applied == 1
