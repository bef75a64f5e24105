"""Channels opened and paid through a sidecar, the devnet chain read as the
contract keeps it, and the payer's hand on its withdrawal."""

from __future__ import annotations

from typing import Any

import aiohttp
from x402.mechanisms.evm.batch_settlement.constants import MIN_WITHDRAW_DELAY

from devnet.chain import Chain
from devnet.wallets import MERCHANT_ADDRESS
from paysidecar.v1 import channels_pb2, channels_pb2_grpc, status_pb2
from tests.channels.support import PRICE, ChannelClient
from tests.devnet.channels import DEPOSIT, ChannelPayer, channel_id

COLLECTOR_SETTINGS: dict[str, Any] = {
    "schemes": ["batch-settlement", "exact"],
    "channel_busy_wait_s": 0.5,
    "withdraw_delay_s": MIN_WITHDRAW_DELAY,
    "channel_claim_margin_s": 300,
    "collector_enabled": False,
    "channel_watch_interval_s": 280,  # rounds when a test asks (watch.round())
}


class OpenChannel:
    """One payer's channel with a sidecar: its client and its first payload."""

    def __init__(self, client: ChannelClient, first: Any) -> None:
        self.client = client
        self.first = first

    @property
    def channel_id(self) -> str:
        return channel_id(self.first.payload)

    @property
    def config(self) -> dict[str, Any]:
        return self.first.payload.payload["channelConfig"]

    @property
    def payer(self) -> str:
        return self.client.payer.address

    async def pay(self, times: int = 1) -> None:
        for _ in range(times):
            paid = await self.client.pay()
            assert paid.settled is not None and paid.settled.success, paid.authorized


async def open_channels(
    sidecar: Any, count: int, requests: int = 3, first_payer: int = 0, deposit: int = DEPOSIT
) -> list[OpenChannel]:
    """`count` payers, each opening a channel (its deposit pays the first request)
    and paying `requests` requests in all: `requests * PRICE` charged on each."""
    opened = []
    for index in range(first_payer, first_payer + count):
        client = ChannelClient(sidecar, ChannelPayer(index, deposit=deposit))
        first = await client.pay()
        assert first.settled is not None and first.settled.success, first.authorized
        channel = OpenChannel(client, first)
        await channel.pay(requests - 1)
        opened.append(channel)
    return opened


def collect_stub(handle: Any) -> channels_pb2_grpc.ChannelServiceStub:
    return channels_pb2_grpc.ChannelServiceStub(handle.channel)


async def collect(handle: Any, wait_seconds: int = 10) -> channels_pb2.CollectResponse:
    return await collect_stub(handle).Collect(channels_pb2.CollectRequest(wait_seconds=wait_seconds))


async def status(handle: Any) -> status_pb2.GetStatusResponse:
    return await handle.status.GetStatus(status_pb2.GetStatusRequest())


def claimed_on_chain(chain: Chain, channel: OpenChannel) -> int:
    return chain.channel(channel.channel_id).total_claimed


def merchant_balance(chain: Chain) -> int:
    return chain.balance_of(MERCHANT_ADDRESS)


async def payer_call(facilitator_url: str, action: str, body: dict[str, Any]) -> dict[str, Any]:
    """A payer's transaction through the devnet's chain controls."""
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{facilitator_url}/_devnet/channels/{action}", json=body) as response:
            answer = await response.json()
            assert response.status == 200, answer
            return answer


async def withdraw(facilitator_url: str, chain: Chain, channel: OpenChannel, *, finalize: bool) -> None:
    """The payer starts a withdrawal of all it may take; with `finalize`, the delay
    passes and it completes it."""
    state = chain.channel(channel.channel_id)
    amount = state.balance - state.total_claimed
    await payer_call(facilitator_url, "initiate-withdraw", {"channelConfig": channel.config, "amount": str(amount)})
    if finalize:
        chain.advance_time(MIN_WITHDRAW_DELAY)
        await payer_call(facilitator_url, "finalize-withdraw", {"channelConfig": channel.config})


__all__ = ["PRICE"]
