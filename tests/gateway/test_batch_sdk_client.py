"""The official SDK's batch-settlement client pays the gateway end to end on the
devnet (issue 17, item 8): a deposit, 100 vouchers with top-ups, a corrective 402
after the client loses its state (it recovers from our last voucher and pays on),
a cooperative refund; then the devnet's balances add up to the unit."""

from __future__ import annotations

import asyncio

import aiohttp
import asyncpg
from x402.http.utils import decode_payment_response_header
from x402.mechanisms.evm.batch_settlement.client.refund import RefundOptions
from x402.mechanisms.evm.batch_settlement.constants import BATCH_SETTLEMENT_ADDRESS

from devnet.wallets import INITIAL_PAYER_BALANCE, MERCHANT_ADDRESS
from tests.channels.support import PRICE, facilitator_settle
from tests.devnet.channels import settle_request

from .sdk_payer import SdkPayer, fetch

VOUCHERS = 100


async def test_the_sdk_client_pays_the_gateway_through_a_channel(channel_stack):
    stack = channel_stack
    chain, url = stack.chain, stack.gateway.url + "/v1/records?_limit=1"
    rpc = stack.facilitator.url + "/rpc"
    merchant_before = chain.balance_of(MERCHANT_ADDRESS)
    payer = SdkPayer(rpc)
    charged = 0
    async with aiohttp.ClientSession() as session:
        for _ in range(1 + VOUCHERS):
            status, headers = await payer.get(session, url)
            assert status == 200
            charged += int(decode_payment_response_header(headers["PAYMENT-RESPONSE"]).extra["chargedAmount"])
        deposits = stack.facilitator.stats.settle_calls
        assert deposits >= 2  # the first deposit and its top-ups, the rest vouchers
        assert stack.facilitator.stats.verify_calls == deposits  # vouchers never reached it

        # The client loses its state: its voucher from the chain's baseline gets a
        # corrective 402, it adopts our last voucher (after checking its signature)
        # and pays on.
        forgetful = SdkPayer(rpc)
        status, headers = await forgetful.get(session, url)
        assert forgetful.statuses == [402, 200]
        assert status == 200
        charged += PRICE

        # A cooperative refund: what we charged is claimed, the rest goes back.
        refund = await asyncio.to_thread(forgetful.scheme.refund, url, RefundOptions(fetch=fetch))
        assert refund.success and refund.transaction

    assert charged == (2 + VOUCHERS) * PRICE
    channel_balance = chain.balance_of(BATCH_SETTLEMENT_ADDRESS)
    assert chain.balance_of(payer.address) == INITIAL_PAYER_BALANCE - charged
    assert channel_balance == charged  # claimed, not yet swept
    swept = await facilitator_settle(stack.facilitator, settle_request())
    assert swept["success"] is True
    assert chain.balance_of(MERCHANT_ADDRESS) - merchant_before == charged
    assert chain.balance_of(BATCH_SETTLEMENT_ADDRESS) == 0

    conn = await asyncpg.connect(stack.sidecar.sidecar.settings.database_url)
    try:
        row = await conn.fetchrow("SELECT charged_cumulative, total_claimed, balance FROM payment_channels")
    finally:
        await conn.close()
    assert (row["charged_cumulative"], row["total_claimed"], row["balance"]) == (charged, charged, charged)


async def test_a_deposit_echoing_the_datasets_bazaar_declaration_is_served(channel_stack):
    """The SDK's payload carries the 402's extensions back, the dataset's Bazaar
    declaration included: a deposit's header then passes aiohttp's 8 KiB, and the
    gateway takes it (gateway/http_server.py)."""
    url = channel_stack.gateway.url + "/v1/datasets/stations/records?_limit=1"
    payer = SdkPayer(channel_stack.facilitator.url + "/rpc")
    async with aiohttp.ClientSession() as session:
        status, headers = await payer.get(session, url)

    assert status == 200
    assert payer.header_sizes[0] > 8 * 1024
    assert decode_payment_response_header(headers["PAYMENT-RESPONSE"]).extra["chargedAmount"] == str(PRICE)
