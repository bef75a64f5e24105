"""Withdrawals watched (issue 18, item 4): a withdrawal a payer starts in the middle
of its traffic is seen within the configured bound; what was charged is claimed
before it can complete; vouchers are taken only while they can still be claimed
in time, and refused after; the balances add up to the unit."""

from __future__ import annotations

import asyncio
import time

from x402.mechanisms.evm.batch_settlement.constants import MIN_WITHDRAW_DELAY

from devnet.wallets import INITIAL_PAYER_BALANCE
from paysidecar.v1 import channels_pb2


from tests.reliability.observe import eventually

from .support import PRICE, collect, collect_stub, merchant_balance, open_channels, payer_call

WATCH_S = 0.5
MARGIN_S = 300
DEPOSIT = 1_000 * PRICE  # more than the traffic spends


async def _row(handle, channel_id):
    answer = await collect_stub(handle).ListChannels(channels_pb2.ListChannelsRequest(limit=100))
    return next(channel for channel in answer.channels if channel.channel_id == channel_id)


async def test_a_withdrawal_started_mid_traffic_is_seen_in_time_and_later_vouchers_are_refused(
    make_sidecar, chain, facilitator
):
    sidecar = await make_sidecar(
        channel_watch_interval_s=WATCH_S,
        channel_claim_margin_s=MARGIN_S,
        collector_enabled=True,
        collect_interval_s=3600,
        collect_channel_threshold=0,
        collect_total_threshold=0,
    )
    (channel,) = await open_channels(sidecar, 1, requests=2, deposit=DEPOSIT)
    merchant_before = merchant_balance(chain)
    paid_requests: list[int] = []
    refused: list[str] = []

    async def traffic() -> None:
        while True:
            paid = await channel.client.pay()
            if paid.outcome != "verified":
                refused.append(paid.reason)
                return
            assert paid.settled.success
            paid_requests.append(1)

    running = asyncio.create_task(traffic())
    await eventually(lambda: len(paid_requests) >= 2, "traffic")  # traffic under way before the payer acts
    await payer_call(facilitator.url, "initiate-withdraw", {"channelConfig": channel.config, "amount": "1"})
    started = time.monotonic()

    row = await eventually(lambda: _seen(sidecar, channel.channel_id), "the withdrawal seen", timeout_s=WATCH_S + 5)
    seen_after = time.monotonic() - started
    assert row.withdraw_requested_at == chain.channel(channel.channel_id).withdraw_requested_at
    assert seen_after <= WATCH_S + 1.0, seen_after  # one watch interval, plus one round's reads

    # Still well before the withdrawal can complete: vouchers are taken, and claimed urgently.
    await eventually(lambda: chain.channel(channel.channel_id).total_claimed > 0, "an urgent claim")
    assert not refused
    # Chain time moves to within the claim margin of the withdrawal's completion.
    chain.advance_time(MIN_WITHDRAW_DELAY - MARGIN_S)
    await asyncio.wait_for(running, timeout=WATCH_S + 10)
    assert refused == ["channel_withdrawal_pending"]

    # Everything charged was claimed before the payer can complete: nothing lost.
    charged = int((await _row(sidecar, channel.channel_id)).charged)
    await eventually(lambda: chain.channel(channel.channel_id).total_claimed == charged, "every charge claimed")
    chain.advance_time(MARGIN_S)
    await payer_call(facilitator.url, "finalize-withdraw", {"channelConfig": channel.config})
    # The claims were the withdrawal runs'; the sweep to payTo is the next periodic (here: on-demand) run's.
    assert merchant_balance(chain) == merchant_before
    assert (await collect(sidecar)).settled_amount == str(charged)
    assert merchant_balance(chain) - merchant_before == charged
    # To the unit: the payer paid its deposit, took back 1, the merchant got every charge,
    # and the contract holds the rest of the deposit for the channel.
    payer = channel.payer
    assert chain.balance_of(payer) == INITIAL_PAYER_BALANCE - DEPOSIT + 1
    state = chain.channel(channel.channel_id)
    assert (state.balance, state.total_claimed) == (DEPOSIT - 1, charged)
    assert charged == (2 + len(paid_requests)) * PRICE


async def _seen(sidecar, channel_id):
    row = await _row(sidecar, channel_id)
    return row if row.withdraw_requested_at else None


async def test_the_watch_reads_only_the_channels_whose_contract_events_name_them(sidecar, chain, facilitator):
    channels = await open_channels(sidecar, 3, requests=1)
    watch = sidecar.sidecar.watch
    await watch.round()  # a round that reads every watched channel
    assert (watch.last_round_channels, watch.last_round_reads) == (3, 3)
    await watch.round()  # nothing happened on chain: nothing read, every copy current
    assert (watch.last_round_channels, watch.last_round_reads) == (3, 0)
    await payer_call(facilitator.url, "initiate-withdraw", {"channelConfig": channels[1].config, "amount": "1"})

    await watch.round()

    assert (watch.last_round_channels, watch.last_round_reads) == (3, 1)
    seen = {c.channel_id: c.withdraw_requested_at for c in [await _row(sidecar, c.channel_id) for c in channels]}
    assert seen == {
        channels[0].channel_id: 0,
        channels[1].channel_id: chain.channel(channels[1].channel_id).withdraw_requested_at,
        channels[2].channel_id: 0,
    }
