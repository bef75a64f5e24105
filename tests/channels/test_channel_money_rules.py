"""Money rules for channels (issue 17, item 6): a voucher counts once whatever the
concurrency, the replicas or the restarts; the requests of one channel are
serialised (a bounded wait, then channel_busy); a restart loses no committed
charge; nothing is charged above the last voucher the payer signed."""

from __future__ import annotations

import asyncio

import asyncpg
import grpc
import pytest
from x402.http.utils import encode_payment_signature_header
from x402.mechanisms.evm.batch_settlement import errors as codes

from tests.channels.support import (
    PRICE,
    ChannelClient,
    batch_offer,
    receipt,
    release_request,
    required_of,
    settle_request,
)
from tests.channels.test_channel_verification import voucher_payload
from tests.devnet.channels import ChannelPayer, channel_id


async def _charged(database_url: str, channel: str) -> tuple[int, int]:
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow(
            "SELECT charged_cumulative, signed_max_claimable FROM payment_channels WHERE channel_id = $1", channel
        )
    finally:
        await conn.close()
    return int(row[0]), int(row[1])


async def _pay_with(client: ChannelClient, sidecar, payload) -> bool:
    """Authorize and Settle one payload on `sidecar`: whether it was served."""
    other = ChannelClient(sidecar, client.payer)
    paid = await other.authorize(payload)
    if paid.outcome != "verified":
        return False
    paid.settled = await sidecar.payments.Settle(settle_request(paid.authorized))
    return paid.settled.success


async def test_twenty_concurrent_requests_with_one_voucher_are_charged_once(make_channel_sidecar, database_url):
    sidecar = await make_channel_sidecar(channel_busy_wait_s=2.0)
    try:
        client = ChannelClient(sidecar)
        await client.pay()
        payload = await client.next_payload()
        served = await asyncio.gather(*(_pay_with(client, sidecar, payload) for _ in range(20)))
    finally:
        await sidecar.stop()
    assert served.count(True) == 1
    assert await _charged(database_url, channel_id(payload)) == (2 * PRICE, 2 * PRICE)


async def test_two_replicas_never_count_one_voucher_twice(make_channel_sidecar, database_url):
    a, b = await make_channel_sidecar(), await make_channel_sidecar()
    try:
        client = ChannelClient(a)
        await client.pay()
        payload = await client.next_payload()
        served = await asyncio.gather(*(_pay_with(client, s, payload) for s in (a, b, a, b, a, b)))
        # The request a replica verified may be settled by another one (vouchers only).
        following = await ChannelClient(a, client.payer).authorize(voucher_payload(payload, 3 * PRICE))
        moved = await b.payments.Settle(settle_request(following.authorized))
    finally:
        await a.stop()
        await b.stop()
    assert served.count(True) == 1
    assert moved.success
    assert receipt(moved.headers)["extra"]["channelState"]["chargedCumulativeAmount"] == str(3 * PRICE)
    assert await _charged(database_url, channel_id(payload)) == (3 * PRICE, 3 * PRICE)


async def test_a_deposit_verified_by_one_replica_is_settled_by_another_with_its_header(
    make_channel_sidecar, database_url
):
    a, b = await make_channel_sidecar(), await make_channel_sidecar()
    try:
        client = ChannelClient(a)
        deposit = await client.authorize(await client.next_payload())
        assert deposit.outcome == "verified"
        settle = settle_request(deposit.authorized)
        settle.payment_signature = encode_payment_signature_header(deposit.payload)
        deposit.settled = await b.payments.Settle(settle)
    finally:
        await a.stop()
        await b.stop()
    assert deposit.settled.success, deposit.settled
    assert receipt(deposit.settled.headers)["transaction"]  # the deposit's transaction
    assert await _charged(database_url, channel_id(deposit.payload)) == (PRICE, PRICE)


async def test_a_deposit_without_its_header_is_not_settled_elsewhere_but_can_be_released(
    make_channel_sidecar, database_url
):
    a, b = await make_channel_sidecar(), await make_channel_sidecar(channel_busy_wait_s=0.2)
    try:
        client = ChannelClient(a)
        deposit = await client.authorize(await client.next_payload())
        stranger = ChannelClient(a, ChannelPayer(1))
        other = await stranger.authorize(await stranger.next_payload())  # another payer's deposit
        assert other.outcome == "verified"
        headerless = await _settle_error(b, settle_request(deposit.authorized))
        wrong = settle_request(deposit.authorized)
        wrong.payment_signature = encode_payment_signature_header(other.payload)
        mismatched = await _settle_error(b, wrong)
        released = await b.payments.Release(release_request(deposit.authorized))
        # Released: the same deposit may be sent again, and now it is charged.
        again = await client.pay()
    finally:
        await a.stop()
        await b.stop()
    assert headerless == mismatched == grpc.StatusCode.NOT_FOUND
    assert released.state == "released"
    assert again.settled is not None and again.settled.success
    assert await _charged(database_url, channel_id(deposit.payload)) == (PRICE, PRICE)


async def _settle_error(sidecar, request) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await sidecar.payments.Settle(request)
    return refused.value.code()


async def test_a_request_on_a_held_channel_waits_then_gets_channel_busy(sidecar, database_url):
    client = ChannelClient(sidecar)
    await client.pay()
    payload = await client.next_payload()
    holding = await client.authorize(payload)
    assert holding.outcome == "verified"
    waiting = await client.authorize(payload)  # the channel is held: a bounded wait (0.5 s), then busy
    assert (waiting.outcome, waiting.reason) == ("rejected", codes.ERR_CHANNEL_BUSY)
    assert waiting.authorized.rejected.status == 402
    assert (await client.settle(holding)).settled.success
    # The same voucher again, now that it was charged: a corrective 402, never a second charge.
    replay = await client.authorize(payload)
    assert (replay.outcome, replay.reason) == ("rejected", codes.ERR_CUMULATIVE_AMOUNT_MISMATCH)
    assert await _charged(database_url, channel_id(payload)) == (2 * PRICE, 2 * PRICE)


async def test_a_waiting_request_proceeds_once_the_channel_is_free(make_channel_sidecar, database_url):
    sidecar = await make_channel_sidecar(channel_busy_wait_s=5.0)
    try:
        client = ChannelClient(sidecar)
        opened = await client.pay()
        holding = await client.authorize(await client.next_payload())
        # The next request brings the voucher after the held one: it waits for it.
        waiting = asyncio.ensure_future(client.authorize(voucher_payload(opened.payload, 3 * PRICE)))
        await asyncio.sleep(0)
        assert not waiting.done()
        assert (await client.settle(holding)).settled.success
        following = await waiting
        assert following.outcome == "verified", following.authorized
        assert (await client.settle(following)).settled.success
    finally:
        await sidecar.stop()
    assert await _charged(database_url, channel_id(opened.payload)) == (3 * PRICE, 3 * PRICE)


async def test_a_hold_whose_time_ran_out_frees_the_channel_and_its_late_settle_charges_nothing(
    make_channel_sidecar, database_url
):
    sidecar = await make_channel_sidecar(channel_hold_s=0.2, channel_busy_wait_s=2.0)
    try:
        client = ChannelClient(sidecar)
        await client.pay()
        payload = await client.next_payload()
        abandoned = await client.authorize(payload)  # its caller vanished
        retried = await client.authorize(payload)  # waits for the hold to run out
        assert retried.outcome == "verified"
        assert (await client.settle(retried)).settled.success
        late = await client.settle(abandoned)
    finally:
        await sidecar.stop()
    assert not late.settled.success
    assert late.settled.answer.status == 402
    assert await _charged(database_url, channel_id(payload)) == (2 * PRICE, 2 * PRICE)


async def test_a_restart_loses_no_committed_charge(make_channel_sidecar, database_url):
    first = await make_channel_sidecar()
    client = ChannelClient(first)
    for _ in range(3):
        assert (await client.pay()).settled.success
    await first.stop()

    second = await make_channel_sidecar()
    try:
        client.sidecar = second
        stale = await client.authorize(voucher_payload((await client.pay()).payload, 3 * PRICE))
        state = batch_offer(required_of(stale.authorized.rejected)).extra["channelState"]
    finally:
        await second.stop()
    # The fourth request was charged on top of the three the first sidecar committed...
    assert await _charged(database_url, channel_id(stale.payload)) == (4 * PRICE, 4 * PRICE)
    # ...and a voucher built on three is a mismatch that says so.
    assert (stale.outcome, stale.reason) == ("rejected", codes.ERR_CUMULATIVE_AMOUNT_MISMATCH)
    assert state["chargedCumulativeAmount"] == str(4 * PRICE)


async def test_a_shutdown_gives_back_the_channels_it_holds(make_channel_sidecar, database_url):
    first = await make_channel_sidecar()
    client = ChannelClient(first)
    await client.pay()
    payload = await client.next_payload()
    assert (await client.authorize(payload)).outcome == "verified"
    await first.stop()  # before the request's Settle
    second = await make_channel_sidecar(channel_busy_wait_s=0)
    try:
        client.sidecar = second
        again = await client.pay()
    finally:
        await second.stop()
    assert again.settled.success  # not busy: the hold was given back, nothing charged for it
    assert await _charged(database_url, channel_id(payload)) == (2 * PRICE, 2 * PRICE)


async def test_with_our_state_lost_the_baseline_is_what_the_chain_says_was_claimed(sidecar, database_url):
    client = ChannelClient(sidecar)
    for _ in range(3):
        await client.pay()
    payload = (await client.pay()).payload
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("DELETE FROM payment_channels")
    finally:
        await conn.close()
    # The client goes on from 4 prices; we have nothing, and nothing was claimed on chain.
    refused = await client.authorize(await client.next_payload())
    offer = batch_offer(required_of(refused.authorized.rejected))
    assert (refused.outcome, refused.reason) == ("rejected", codes.ERR_CUMULATIVE_AMOUNT_MISMATCH)
    assert offer.extra["channelState"]["chargedCumulativeAmount"] == "0"
    assert "voucherState" not in offer.extra  # no voucher of ours to show: the client starts from the chain
    # A voucher from the chain's baseline is taken (our unclaimed charges are forfeit).
    restarted = ChannelClient(sidecar, client.payer)
    paid = await restarted.authorize(voucher_payload(payload, PRICE))
    assert (await restarted.settle(paid)).settled.success
    assert await _charged(database_url, channel_id(payload)) == (PRICE, PRICE)


async def test_nothing_is_ever_charged_above_the_last_signed_voucher(sidecar, database_url):
    client = ChannelClient(sidecar)
    for charge in (None, "0", "999", None, "1"):
        assert (await client.pay(charge=charge)).settled.success
    conn = await asyncpg.connect(database_url)
    try:
        above = await conn.fetchval(
            "SELECT count(*) FROM payment_channels WHERE charged_cumulative > signed_max_claimable"
        )
        charged = await conn.fetchval("SELECT charged_cumulative FROM payment_channels")
    finally:
        await conn.close()
    assert above == 0
    assert charged == PRICE + 0 + 999 + PRICE + 1
