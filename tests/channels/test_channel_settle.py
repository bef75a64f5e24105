"""Settle and Release of channel requests (issue 17, item 5): the charge (the route's
amount, or less for dynamic pricing) is committed with the voucher before success
is answered; the receipt says what the binding says; Release changes nothing and
the same voucher can be sent again."""

from __future__ import annotations

import asyncpg
import grpc
import pytest
from x402.mechanisms.evm.batch_settlement import errors as codes

from tests.channels.support import PRICE, ChannelClient, receipt, release_request, settle_request
from tests.devnet.channels import channel_id


async def _channel_row(database_url: str, channel: str) -> asyncpg.Record:
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetchrow("SELECT * FROM payment_channels WHERE channel_id = $1", channel)
    finally:
        await conn.close()


async def test_a_voucher_is_charged_the_price_and_says_so_in_its_receipt(sidecar, database_url):
    client = ChannelClient(sidecar)
    await client.pay()
    paid = await client.pay()
    assert paid.settled.success
    settled = receipt(paid.settled.headers)
    assert (settled["transaction"], settled["amount"]) == ("", "")
    assert settled["payer"] == client.payer.address
    assert settled["extra"]["chargedAmount"] == str(PRICE)
    assert settled["extra"]["channelState"]["chargedCumulativeAmount"] == str(2 * PRICE)
    row = await _channel_row(database_url, channel_id(paid.payload))
    assert (row["charged_cumulative"], row["signed_max_claimable"]) == (2 * PRICE, 2 * PRICE)
    assert row["voucher_signature"] == paid.payload.payload["voucher"]["signature"]
    assert row["reserved_by"] is None


async def test_settle_may_charge_less_than_the_price(sidecar, database_url):
    client = ChannelClient(sidecar)
    await client.pay()
    cheap = await client.pay(charge="300")
    assert receipt(cheap.settled.headers)["extra"]["chargedAmount"] == "300"
    # The client's next voucher builds on what was charged: accepted.
    following = await client.pay()
    assert following.settled.success
    row = await _channel_row(database_url, channel_id(following.payload))
    assert row["charged_cumulative"] == PRICE + 300 + PRICE
    assert row["signed_max_claimable"] == PRICE + 300 + PRICE


@pytest.mark.parametrize("charge", ["1001", "-1", "1e3", ""])
async def test_a_charge_above_the_price_or_not_a_number_is_refused_and_changes_nothing(sidecar, database_url, charge):
    client = ChannelClient(sidecar)
    await client.pay()
    paid = await client.authorize(await client.next_payload())
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await sidecar.payments.Settle(settle_request(paid.authorized, charge=charge))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.details().startswith("invalid_charge:")
    assert (await _channel_row(database_url, channel_id(paid.payload)))["charged_cumulative"] == PRICE
    # The request still holds its channel: settled with a charge it may take.
    assert (await client.settle(paid)).settled.success


async def test_release_changes_nothing_and_the_same_voucher_pays_again(sidecar, database_url, facilitators):
    client = ChannelClient(sidecar)
    await client.pay()
    payload = await client.next_payload()
    first = await client.authorize(payload)
    released = await sidecar.payments.Release(release_request(first.authorized))
    assert released.state == "released"
    row = await _channel_row(database_url, channel_id(payload))
    assert (row["charged_cumulative"], row["reserved_by"]) == (PRICE, None)
    again = await client.settle(await client.authorize(payload))
    assert again.settled.success
    assert (await _channel_row(database_url, channel_id(payload)))["charged_cumulative"] == 2 * PRICE


async def test_settle_of_a_non_2xx_answer_releases_and_charges_nothing(sidecar, database_url):
    client = ChannelClient(sidecar)
    await client.pay()
    paid = await client.authorize(await client.next_payload())
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await sidecar.payments.Settle(settle_request(paid.authorized, status=500))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    row = await _channel_row(database_url, channel_id(paid.payload))
    assert (row["charged_cumulative"], row["reserved_by"]) == (PRICE, None)


async def test_only_the_claim_tokens_holder_settles_or_releases(sidecar):
    client = ChannelClient(sidecar)
    await client.pay()
    paid = await client.authorize(await client.next_payload())
    stolen_settle, stolen_release = settle_request(paid.authorized), release_request(paid.authorized)
    stolen_settle.claim_token = "00000000-0000-0000-0000-000000000000"
    stolen_release.claim_token = ""
    for call, request in ((sidecar.payments.Settle, stolen_settle), (sidecar.payments.Release, stolen_release)):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call(request)
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert (await client.settle(paid)).settled.success
    # Settled: neither a second Settle nor a Release has anything left to act on.
    for call, request in (
        (sidecar.payments.Settle, settle_request(paid.authorized)),
        (sidecar.payments.Release, release_request(paid.authorized)),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as closed:
            await call(request)
        assert closed.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_a_deposits_refused_settle_charges_nothing_and_frees_the_channel(sidecar, facilitators, database_url):
    facilitators[0].arm(stage="settle", mode="invalid", times=1)
    client = ChannelClient(sidecar)
    paid = await client.pay()
    assert paid.outcome == "verified" and not paid.settled.success
    assert paid.settled.answer.status == 402
    assert receipt(paid.settled.answer.headers)["success"] is False
    row = await _channel_row(database_url, channel_id(paid.payload))
    assert (row["charged_cumulative"], row["reserved_by"]) == (0, None)
    assert paid.settled.reason == codes.ERR_INVALID_VOUCHER_SIGNATURE


async def test_a_deposit_whose_answer_was_lost_is_charged_once_the_chain_shows_it(sidecar, facilitators, chain, database_url):
    # The deposit runs, its answer is lost; the retry of the same payload is refused
    # (its authorization is used up): the chain shows the channel funded, so it is paid.
    facilitators[0].arm(stage="settle", mode="drop", after_transfer=True, times=1)
    client = ChannelClient(sidecar)
    paid = await client.pay()
    assert paid.settled.success, paid.settled
    assert facilitators[0].stats.settle_calls == 2
    deposit = int(paid.payload.payload["deposit"]["amount"])
    assert chain.channel(channel_id(paid.payload)).balance == deposit
    row = await _channel_row(database_url, channel_id(paid.payload))
    assert (row["charged_cumulative"], row["balance"]) == (PRICE, deposit)


async def test_a_deposit_the_chain_does_not_show_is_in_doubt_and_charges_nothing(sidecar, facilitators, chain, database_url):
    facilitators[0].arm(stage="settle", mode="drop", times=2)  # nothing ran, nobody answered
    client = ChannelClient(sidecar)
    paid = await client.pay()
    assert not paid.settled.success
    assert (paid.settled.answer.status, paid.settled.reason) == (503, "payment_in_doubt")
    assert chain.channel(channel_id(paid.payload)).balance == 0
    row = await _channel_row(database_url, channel_id(paid.payload))
    assert (row["charged_cumulative"], row["reserved_by"]) == (0, None)
    # The same payment, sent again, goes through.
    again = await client.settle(await client.authorize(paid.payload))
    assert again.settled.success


async def test_a_deposit_falls_back_to_the_next_facilitator_and_settles_where_it_was_verified(
    make_channel_sidecar, facilitators
):
    facilitators[0].arm(stage="verify", mode="status", status=502)
    sidecar = await make_channel_sidecar([facilitators[0].url, facilitators[1].url])
    try:
        paid = await ChannelClient(sidecar).pay()
    finally:
        await sidecar.stop()
    assert paid.settled.success
    assert (facilitators[0].stats.settle_calls, facilitators[1].stats.settle_calls) == (0, 1)
    assert facilitators[1].stats.verify_calls == 1


async def test_a_charge_whose_answer_was_not_delivered_is_taken_back(sidecar, database_url):
    client = ChannelClient(sidecar)
    await client.pay()
    payload = await client.next_payload()
    paid = await client.authorize(payload)
    settled = await sidecar.payments.Settle(settle_request(paid.authorized))
    assert settled.success
    # Sending the paid answer failed: the client never saw it nor its receipt.
    released = await sidecar.payments.Release(release_request(paid.authorized, "response_not_delivered"))
    assert released.state == "released"
    assert (await _channel_row(database_url, channel_id(payload)))["charged_cumulative"] == PRICE
    # Its next voucher is the same one, and it pays.
    again = await client.settle(await client.authorize(payload))
    assert again.settled.success
    assert (await _channel_row(database_url, channel_id(payload)))["charged_cumulative"] == 2 * PRICE


async def test_a_late_not_delivered_report_leaves_a_charge_the_channel_moved_on_from(sidecar, database_url):
    client = ChannelClient(sidecar)
    await client.pay()
    first = await client.pay()
    await client.pay()  # the channel moved on
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await sidecar.payments.Release(release_request(first.authorized, "response_not_delivered"))
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert (await _channel_row(database_url, channel_id(first.payload)))["charged_cumulative"] == 3 * PRICE
