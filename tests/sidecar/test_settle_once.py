"""Money rule 2: a payment settles at most once and serves at most one response —
across concurrent requests, a restart between verify and settle, and replicas."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from tests.support.calls import URL, authorize_request, release_request, settle_request
from tests.support.payments import sign_for


async def _pay(sidecar, header: str) -> bool:
    authorized = await sidecar.payments.Authorize(authorize_request(header))
    if authorized.WhichOneof("outcome") != "verified":
        return False
    return (await sidecar.payments.Settle(settle_request(authorized))).success


async def test_fifty_concurrent_requests_with_one_payment_settle_once(sidecar, chain, facilitators):
    header = await sign_for(URL)
    served = await asyncio.gather(*(_pay(sidecar, header) for _ in range(50)))
    assert served.count(True) == 1
    assert chain.transfers_applied == 1
    assert facilitators[0].stats.settle_calls == 1


async def test_restart_between_verify_and_settle_does_not_settle_twice(make_sidecar, chain):
    header = await sign_for(URL)
    first = await make_sidecar()
    authorized = await first.payments.Authorize(authorize_request(header))
    assert authorized.WhichOneof("outcome") == "verified"
    await first.stop()  # the claim is given back at shutdown, nothing settled

    second = await make_sidecar()
    try:
        # The stale Settle for the old claim is refused: it was released...
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await second.payments.Settle(settle_request(authorized))
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert caught.value.details().startswith("claim_closed:")
        # ...and the payment can still be used exactly once.
        assert await _pay(second, header)
        assert not await _pay(second, header)
    finally:
        await second.stop()
    assert chain.transfers_applied == 1


async def test_two_sidecars_on_one_database_settle_a_payment_once(make_sidecar, chain):
    header = await sign_for(URL)
    a, b = await make_sidecar(), await make_sidecar()
    try:
        results = await asyncio.gather(*(_pay(s, header) for s in (a, b, a, b, a, b)))
    finally:
        await a.stop()
        await b.stop()
    assert results.count(True) == 1
    assert chain.transfers_applied == 1


async def test_any_replica_can_settle_with_the_payment_header_and_the_claim_token(make_sidecar, chain):
    header = await sign_for(URL)
    a, b = await make_sidecar(), await make_sidecar()
    try:
        authorized = await a.payments.Authorize(authorize_request(header))
        request = settle_request(authorized)
        # Another replica needs the header (it has no payload in memory)...
        with pytest.raises(grpc.aio.AioRpcError) as headerless:
            await b.payments.Settle(request)
        # ...and the claim token, like the replica that verified.
        request.payment_signature, request.claim_token = header, ""
        with pytest.raises(grpc.aio.AioRpcError) as tokenless:
            await b.payments.Settle(request)
        request.claim_token = authorized.verified.claim_token
        settled = await b.payments.Settle(request)
        # The replica that verified still holds the payload: its Settle finds the claim settled.
        with pytest.raises(grpc.aio.AioRpcError) as replay:
            await a.payments.Settle(settle_request(authorized))
    finally:
        await a.stop()
        await b.stop()
    assert headerless.value.code() == grpc.StatusCode.NOT_FOUND
    assert tokenless.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert tokenless.value.details().startswith("not_claim_holder:")
    assert settled.success
    assert replay.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert chain.transfers_applied == 1


async def test_payment_for_same_authorization_in_another_wrapper_is_refused(sidecar, chain):
    """Re-wrapping one signed authorization (e.g. another `resource`) gives another
    payload hash, but the (payer, nonce) is the same: it must not settle twice."""
    import base64
    import json

    header = await sign_for(URL)
    wire = json.loads(base64.b64decode(header))
    wire["resource"]["description"] = "same authorization, different wrapper"
    rewrapped = base64.b64encode(json.dumps(wire).encode()).decode()
    results = await asyncio.gather(_pay(sidecar, header), _pay(sidecar, rewrapped))
    assert results.count(True) == 1
    assert chain.transfers_applied == 1


async def test_client_gone_after_settle_redeems_once(sidecar, chain, facilitators):
    header = await sign_for(URL)
    authorized = await sidecar.payments.Authorize(authorize_request(header))
    assert (await sidecar.payments.Settle(settle_request(authorized))).success
    # The answer could not be written to the client: the payment becomes redeemable.
    released = await sidecar.payments.Release(release_request(authorized, "response_not_delivered"))
    assert released.state == "settled_unserved"

    redeem = await sidecar.payments.Authorize(authorize_request(header))
    assert redeem.verified.redeem is True
    assert (await sidecar.payments.Settle(settle_request(redeem))).success
    third = await sidecar.payments.Authorize(authorize_request(header))
    assert third.WhichOneof("outcome") == "rejected"
    assert third.rejected.reason == "payment_already_used"
    assert chain.transfers_applied == 1
    assert facilitators[0].stats.settle_calls == 1
