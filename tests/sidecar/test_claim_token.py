"""Release cannot undo a served payment: Settle and Release belong to the caller
that holds the claim (the claim token Authorize returned), and Release is only for
a claim that was not settled. Anything else is FAILED_PRECONDITION, no state change."""

from __future__ import annotations

import uuid

import grpc
import pytest

from paysidecar.v1 import payment_pb2
from tests.support.calls import URL, authorize_request, release_request, settle_request
from tests.support.net import ledger_state
from tests.support.payments import sign_for

NOT_DELIVERED = "response_not_delivered"


async def _refused(call, request) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call(request)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION, refused.value.details()
    return refused.value.details()


def _stranger(authorized: payment_pb2.AuthorizeResponse, reason: str, token: str = "") -> payment_pb2.ReleaseRequest:
    """A Release from someone who knows the payment id (the payer can compute it)."""
    return payment_pb2.ReleaseRequest(payment_id=authorized.verified.payment_id, reason=reason, claim_token=token)


@pytest.mark.parametrize("token", ["", str(uuid.uuid4()), "not-a-token"])
async def test_a_stranger_cannot_turn_a_served_payment_into_a_redeemable_one(
    make_sidecar, chain, facilitators, database_url, token
):
    header = await sign_for(URL)
    a, b = await make_sidecar(), await make_sidecar()
    try:
        authorized = await a.payments.Authorize(authorize_request(header))
        assert (await a.payments.Settle(settle_request(authorized))).success
        for replica in (a, b):
            for reason in (NOT_DELIVERED, "client_gone"):
                await _refused(replica.payments.Release, _stranger(authorized, reason, token))
        assert await ledger_state(database_url) == "settled"
        replay = await b.payments.Authorize(authorize_request(header))
    finally:
        await a.stop()
        await b.stop()
    assert (replay.WhichOneof("outcome"), replay.rejected.reason) == ("rejected", "payment_already_used")
    assert chain.transfers_applied == 1
    assert facilitators[0].stats.settle_calls == 1


async def test_release_after_settle_is_refused_even_for_the_holder(sidecar, database_url):
    authorized = await sidecar.payments.Authorize(authorize_request(await sign_for(URL)))
    assert (await sidecar.payments.Settle(settle_request(authorized))).success
    for reason in ("client_gone", "handler_error", "head_request", "handler_status_500"):
        await _refused(sidecar.payments.Release, release_request(authorized, reason))
    assert await ledger_state(database_url) == "settled"


async def test_a_wrong_token_leaves_the_claim_to_its_holder(make_sidecar, chain, facilitators, database_url):
    header = await sign_for(URL)
    a, b = await make_sidecar(), await make_sidecar()
    try:
        authorized = await a.payments.Authorize(authorize_request(header))
        wrong = str(uuid.uuid4())
        for replica in (a, b):
            await _refused(replica.payments.Release, _stranger(authorized, "client_gone", wrong))
            forged = settle_request(authorized)
            forged.claim_token, forged.payment_signature = wrong, header
            await _refused(replica.payments.Settle, forged)
        assert await ledger_state(database_url) == "verified"
        assert facilitators[0].stats.settle_calls == 0
        settled = await a.payments.Settle(settle_request(authorized))
    finally:
        await a.stop()
        await b.stop()
    assert settled.success
    assert chain.transfers_applied == 1


async def test_settle_after_release_is_refused_on_every_replica(make_sidecar, chain, facilitators, database_url):
    header = await sign_for(URL)
    a, b = await make_sidecar(), await make_sidecar()
    try:
        authorized = await a.payments.Authorize(authorize_request(header))
        # Released on another replica than the one holding the payload in memory.
        released = await b.payments.Release(release_request(authorized, "handler_status_500", 500))
        assert released.state == "released"
        adopting = settle_request(authorized)
        adopting.payment_signature = header
        for replica, request in ((a, settle_request(authorized)), (b, adopting)):
            await _refused(replica.payments.Settle, request)
        await _refused(a.payments.Release, release_request(authorized, "client_gone"))
    finally:
        await a.stop()
        await b.stop()
    assert await ledger_state(database_url) == "released"
    assert facilitators[0].stats.settle_calls == 0
    assert chain.transfers_applied == 0


async def test_only_the_holder_reports_a_settled_answer_undelivered_and_only_once(sidecar, chain, facilitators):
    header = await sign_for(URL)
    first = await sidecar.payments.Authorize(authorize_request(header))
    assert (await sidecar.payments.Settle(settle_request(first))).success
    assert (await sidecar.payments.Release(release_request(first, NOT_DELIVERED))).state == "settled_unserved"
    await _refused(sidecar.payments.Release, release_request(first, NOT_DELIVERED))

    redeem = await sidecar.payments.Authorize(authorize_request(header))
    assert redeem.verified.redeem and redeem.verified.claim_token != first.verified.claim_token
    assert (await sidecar.payments.Settle(settle_request(redeem))).success
    # The first claim's token no longer names the claim that served the redeem.
    await _refused(sidecar.payments.Release, release_request(first, NOT_DELIVERED))
    await _refused(sidecar.payments.Release, release_request(redeem, "client_gone"))

    again = await sidecar.payments.Authorize(authorize_request(header))
    assert (again.WhichOneof("outcome"), again.rejected.reason) == ("rejected", "payment_already_used")
    assert chain.transfers_applied == 1
    assert facilitators[0].stats.settle_calls == 1
