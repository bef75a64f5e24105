"""JSON-RPC at /rpc for the channel contract: the SDK's own readers (client cold start,
the facilitator's channel-state multicall) over eth_call, and the contract's events over
eth_getLogs as web3 decodes them."""

from __future__ import annotations

import asyncio

import pytest
from web3 import AsyncHTTPProvider, AsyncWeb3
from web3.exceptions import ContractCustomError
from web3.logs import DISCARD
from x402.mechanisms.evm.batch_settlement.abi import BATCH_SETTLEMENT_ABI
from x402.mechanisms.evm.batch_settlement.client import (
    BatchSettlementEvmScheme,
    BatchSettlementEvmSchemeOptions,
    read_channel_balance_and_total_claimed,
)
from x402.mechanisms.evm.batch_settlement.constants import BATCH_SETTLEMENT_ADDRESS, MIN_WITHDRAW_DELAY
from x402.mechanisms.evm.batch_settlement.facilitator.claim import build_voucher_claim_args
from x402.mechanisms.evm.batch_settlement.facilitator.utils import read_channel_state
from x402.mechanisms.evm.signers import EthAccountSignerWithRPC, FacilitatorWeb3Signer

from devnet.batch_settlement import EVENTS_ABI, event_topic
from devnet.chain import USDC_ADDRESS
from devnet.wallets import FACILITATOR_KEY, MERCHANT_ADDRESS
from tests.devnet.channels import (
    DEPOSIT,
    PRICE,
    ChannelPayer,
    batch_requirements,
    channel_id,
    claim_of,
    claim_request,
    open_channel,
    settle,
    settle_request,
)

REQUIREMENTS = batch_requirements()


@pytest.fixture
async def w3(devnet):
    web3 = AsyncWeb3(AsyncHTTPProvider(devnet.url + "/rpc"))
    yield web3
    await web3.provider.disconnect()


async def test_the_sdk_client_reads_its_channel_with_eth_call(devnet):
    payer = ChannelPayer(0)
    deposit = await open_channel(devnet, payer)
    await settle(devnet, claim_request([claim_of(deposit, PRICE)]))
    reader = EthAccountSignerWithRPC(payer.account, devnet.url + "/rpc")

    read = await asyncio.to_thread(read_channel_balance_and_total_claimed, reader, channel_id(deposit))

    assert read == (DEPOSIT, PRICE)


async def test_a_client_without_local_state_recovers_its_channel_and_pays_with_a_voucher(devnet):
    await open_channel(devnet, ChannelPayer(0))
    # The same wallet on a fresh client: nothing stored, so it reads channels(id) first.
    fresh = BatchSettlementEvmScheme(
        EthAccountSignerWithRPC(ChannelPayer(0).account, devnet.url + "/rpc"),
        BatchSettlementEvmSchemeOptions(deposit_strategy=lambda _context: str(DEPOSIT)),
    )

    payload = await asyncio.to_thread(fresh.create_payment_payload, REQUIREMENTS)

    assert payload["type"] == "voucher"
    # Recovered from the chain: nothing claimed yet, so the next ceiling is one price.
    assert payload["voucher"]["maxClaimableAmount"] == str(PRICE)


async def test_the_sdk_facilitator_reads_channel_state_over_json_rpc(devnet):
    payer = ChannelPayer(0)
    deposit = await open_channel(devnet, payer)
    withdrawal = {"channelConfig": deposit.payload["channelConfig"], "amount": "4000"}
    # The chain's clock runs with the wall clock: the withdrawal is stamped within this window.
    before = devnet.chain.timestamp
    await devnet.post("/_devnet/channels/initiate-withdraw", withdrawal)
    after = devnet.chain.timestamp
    reader = FacilitatorWeb3Signer(FACILITATOR_KEY, devnet.url + "/rpc")

    state = await asyncio.to_thread(read_channel_state, reader, channel_id(deposit))

    assert (state.balance, state.total_claimed, state.refund_nonce) == (DEPOSIT, 0, 0)
    assert before <= state.withdraw_requested_at <= after


async def test_channel_events_come_back_from_eth_get_logs_as_web3_decodes_them(devnet, w3):
    payers = [ChannelPayer(0), ChannelPayer(1)]
    deposits = [await open_channel(devnet, payer) for payer in payers]
    await settle(devnet, claim_request([claim_of(deposit, PRICE) for deposit in deposits]))
    contract = w3.eth.contract(address=BATCH_SETTLEMENT_ADDRESS, abi=EVENTS_ABI)

    logs = await w3.eth.get_logs(
        {
            "address": BATCH_SETTLEMENT_ADDRESS,
            "fromBlock": 0,
            "toBlock": "latest",
            "topics": [[event_topic("ChannelCreated"), event_topic("Claimed")]],
        }
    )

    names = [log["topics"][0].to_0x_hex() for log in logs]
    assert names == [event_topic("ChannelCreated")] * 2 + [event_topic("Claimed")] * 2
    created = contract.events.ChannelCreated().process_log(logs[0])
    assert "0x" + created["args"]["channelId"].hex() == channel_id(deposits[0])
    assert created["args"]["config"]["payer"] == payers[0].address
    assert created["args"]["config"]["withdrawDelay"] == MIN_WITHDRAW_DELAY
    claimed = contract.events.Claimed().process_log(logs[3])
    assert "0x" + claimed["args"]["channelId"].hex() == channel_id(deposits[1])
    assert (claimed["args"]["claimAmount"], claimed["args"]["newTotalClaimed"]) == (PRICE, PRICE)


async def test_the_settled_event_decodes_with_the_sdks_abi(devnet, w3):
    deposit = await open_channel(devnet, ChannelPayer(0))
    await settle(devnet, claim_request([claim_of(deposit, PRICE)]))
    swept = await settle(devnet, settle_request())

    receipt = await w3.eth.get_transaction_receipt(swept["transaction"])

    sdk_contract = w3.eth.contract(address=BATCH_SETTLEMENT_ADDRESS, abi=BATCH_SETTLEMENT_ABI)
    # The token's own Transfer log is in the receipt too; only Settled decodes.
    [settled] = sdk_contract.events.Settled().process_receipt(receipt, errors=DISCARD)
    assert settled["args"]["receiver"] == MERCHANT_ADDRESS
    assert settled["args"]["token"] == USDC_ADDRESS
    assert settled["args"]["amount"] == PRICE


async def test_a_reverting_eth_call_carries_the_custom_error(devnet, w3):
    deposit = await open_channel(devnet, ChannelPayer(0))
    rows = build_voucher_claim_args([claim_of(deposit, PRICE + 1)])
    contract = w3.eth.contract(address=BATCH_SETTLEMENT_ADDRESS, abi=BATCH_SETTLEMENT_ABI)

    with pytest.raises(ContractCustomError) as raised:
        await contract.functions.claim(rows).call({"from": MERCHANT_ADDRESS})

    selector = w3.keccak(text="ClaimExceedsCeiling()")[:4].to_0x_hex()
    assert raised.value.data == selector


async def test_the_latest_block_carries_the_chains_time(devnet, w3):
    deposit = await open_channel(devnet, ChannelPayer(0))
    before = await w3.eth.get_block("latest")
    devnet.chain.advance_time(MIN_WITHDRAW_DELAY)
    made_from = devnet.chain.timestamp  # the clock runs with the wall clock: a window
    await settle(devnet, claim_request([claim_of(deposit, PRICE)]))  # a new block, after the jump

    after = await w3.eth.get_block("latest")
    made_by = devnet.chain.timestamp

    assert after["number"] > before["number"]
    assert after["timestamp"] >= before["timestamp"] + MIN_WITHDRAW_DELAY
    assert made_from <= after["timestamp"] <= made_by
