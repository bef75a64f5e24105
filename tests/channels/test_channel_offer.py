"""What a route offers (issue 17, item 2): exact, batch-settlement or both, in the
order of its schemes; the batch offer names the receiver authorizer (ours or the
facilitator's, from /supported), the withdraw delay and the token's EIP-712 domain."""

from __future__ import annotations

from x402.mechanisms.evm.batch_settlement.constants import MIN_WITHDRAW_DELAY

from devnet.chain import USDC_ADDRESS
from devnet.wallets import DEV_KEYS, RECEIVER_AUTHORIZER_ADDRESS, account
from tests.channels.support import BATCH, ChannelClient, authorize_request, batch_offer, required_of
from tests.devnet.channels import batch_requirements
from tests.support.calls import URL
from tests.support.payments import sign_for

OWN_AUTHORIZER_KEY = DEV_KEYS[9]


async def _required(sidecar, **route_fields):
    answer = await sidecar.payments.Authorize(authorize_request(**route_fields))
    assert answer.WhichOneof("outcome") == "payment_required"
    return required_of(answer.payment_required)


async def test_a_route_offering_both_lists_both_in_its_order(sidecar):
    required = await _required(sidecar)
    assert [offer.scheme for offer in required.accepts] == [BATCH, "exact"]
    offer = batch_offer(required)
    assert (offer.amount, offer.asset, offer.network) == ("1000", USDC_ADDRESS, "eip155:84532")
    assert offer.extra == {
        "receiverAuthorizer": RECEIVER_AUTHORIZER_ADDRESS,
        "withdrawDelay": 86400,
        "name": "USDC",
        "version": "2",
        "minDeposit": "10000",
    }

    exact_first = await _required(sidecar, schemes=["exact", BATCH])
    assert [offer.scheme for offer in exact_first.accepts] == ["exact", BATCH]
    assert [offer.scheme for offer in (await _required(sidecar, schemes=["exact"])).accepts] == ["exact"]


async def test_the_receiver_authorizer_is_the_facilitators_asked_once(make_channel_sidecar, facilitators):
    sidecar = await make_channel_sidecar()
    try:
        for _ in range(3):
            assert batch_offer(await _required(sidecar)).extra["receiverAuthorizer"] == RECEIVER_AUTHORIZER_ADDRESS
    finally:
        await sidecar.stop()
    assert facilitators[0].stats.supported_calls == 1


async def test_a_receiver_authorizer_key_of_the_sidecars_own_is_offered(make_channel_sidecar, facilitators):
    sidecar = await make_channel_sidecar(receiver_authorizer_key=OWN_AUTHORIZER_KEY, withdraw_delay_s=MIN_WITHDRAW_DELAY)
    try:
        extra = batch_offer(await _required(sidecar)).extra
    finally:
        await sidecar.stop()
    assert extra["receiverAuthorizer"] == account(OWN_AUTHORIZER_KEY).address
    assert extra["withdrawDelay"] == MIN_WITHDRAW_DELAY
    assert facilitators[0].stats.supported_calls == 0


async def test_without_a_receiver_authorizer_channels_are_neither_offered_nor_taken(make_channel_sidecar, facilitators):
    facilitators[0].arm(stage="supported", mode="status", status=500)  # armed until cleared
    sidecar = await make_channel_sidecar()
    try:
        required = await _required(sidecar)
        client = ChannelClient(sidecar)
        client.offer = batch_requirements(withdraw_delay=86400)  # what another replica offered
        refused = await client.authorize(await client.next_payload())
    finally:
        await sidecar.stop()
    assert [offer.scheme for offer in required.accepts] == ["exact"]
    assert refused.outcome == "rejected"
    assert (refused.authorized.rejected.status, refused.reason) == (503, "facilitator_unavailable")


async def test_a_batch_only_route_refuses_an_exact_payment(sidecar):
    header = await sign_for(URL)
    answer = await sidecar.payments.Authorize(authorize_request(header, schemes=[BATCH]))
    assert answer.WhichOneof("outcome") == "rejected"
    assert answer.rejected.reason == "scheme_mismatch"
    assert [offer.scheme for offer in required_of(answer.rejected).accepts] == [BATCH]


async def test_an_exact_only_route_refuses_a_channel_payment(sidecar):
    client = ChannelClient(sidecar)
    await client.requirements()
    client.route_fields = {"schemes": ["exact"]}
    refused = await client.authorize(await client.next_payload())
    assert (refused.outcome, refused.reason) == ("rejected", "scheme_mismatch")
