"""Authorize of channel payments (issue 17, item 4, and money rule "a voucher signed
by anyone but the payer authorizer, for another channel, receiver, token or
withdraw delay, or below what was already claimed, is refused with its code").

A deposit is verified at a facilitator; a voucher of an EOA payer authorizer with a
fresh mirror here, without one; a stale mirror is refreshed through /verify."""

from __future__ import annotations

import asyncpg
import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from x402.mechanisms.evm.batch_settlement import errors as codes
from x402.mechanisms.evm.batch_settlement.client import sign_voucher
from x402.mechanisms.evm.batch_settlement.constants import MIN_WITHDRAW_DELAY, VOUCHER_TYPES
from x402.mechanisms.evm.batch_settlement.types import VoucherFields, VoucherPayload
from x402.mechanisms.evm.batch_settlement.utils import coerce_bytes32, get_batch_settlement_eip712_domain
from x402.mechanisms.evm.signers import EthAccountSigner
from x402.schemas import PaymentPayload

from devnet.chain import CHAIN_ID, NETWORK
from devnet.wallets import payer_account
from tests.channels.support import PRICE, ChannelClient, batch_offer, facilitator_settle, receipt, required_of
from tests.devnet.channels import ChannelPayer, channel_config, channel_id, claim_of, claim_request

OTHER = "0x" + "ab" * 20


def voucher_payload(paid_payload: PaymentPayload, max_claimable: int, signer=None, accepted=None) -> PaymentPayload:
    """A voucher on the channel of `paid_payload`, signed by `signer` (default: its
    payer), for the route it was paid on (or the one that offered `accepted`)."""
    config = channel_config(paid_payload)
    signer = signer or payer_account(0)
    voucher = VoucherPayload()
    voucher.channel_config = config
    voucher.voucher = sign_voucher(EthAccountSigner(signer), channel_id(paid_payload), str(max_claimable), NETWORK)
    return PaymentPayload(x402_version=2, payload=voucher.to_dict(), accepted=accepted or paid_payload.accepted)


async def _opened(sidecar, payer=None) -> tuple[ChannelClient, PaymentPayload]:
    client = ChannelClient(sidecar, payer)
    paid = await client.pay()
    assert paid.settled.success, paid.authorized
    return client, paid.payload


async def test_a_deposit_is_verified_and_settled_at_the_facilitator(sidecar, facilitators, chain):
    client = ChannelClient(sidecar)
    paid = await client.pay()
    assert paid.payload.payload["type"] == "deposit"
    assert paid.authorized.verified.scheme == "batch-settlement"
    assert paid.authorized.verified.channel_id == channel_id(paid.payload)
    assert (facilitators[0].stats.verify_calls, facilitators[0].stats.settle_calls) == (1, 1)
    settled = receipt(paid.settled.headers)
    assert settled["transaction"] == paid.settled.transaction != ""
    assert settled["amount"] == paid.payload.payload["deposit"]["amount"]
    assert settled["extra"]["chargedAmount"] == str(PRICE)
    assert chain.channel(channel_id(paid.payload)).balance == int(settled["amount"])


async def test_a_voucher_with_a_fresh_mirror_is_verified_without_the_facilitator(sidecar, facilitators):
    client, _ = await _opened(sidecar)
    calls = (facilitators[0].stats.verify_calls, facilitators[0].stats.settle_calls)
    for _ in range(5):
        paid = await client.pay()
        assert paid.settled.success
        settled = receipt(paid.settled.headers)
        assert (settled["transaction"], settled["amount"]) == ("", "")
    assert (facilitators[0].stats.verify_calls, facilitators[0].stats.settle_calls) == calls


async def test_a_stale_mirror_is_refreshed_through_verify(make_channel_sidecar, facilitators, database_url):
    sidecar = await make_channel_sidecar(channel_mirror_ttl_s=0)
    try:
        client, payload = await _opened(sidecar)
        verified_before = facilitators[0].stats.verify_calls
        conn = await asyncpg.connect(database_url)
        try:
            synced = await conn.fetchval("SELECT synced_at FROM payment_channels WHERE channel_id = $1", channel_id(payload))
            paid = await client.pay()
            resynced = await conn.fetchval("SELECT synced_at FROM payment_channels WHERE channel_id = $1", channel_id(payload))
        finally:
            await conn.close()
    finally:
        await sidecar.stop()
    assert paid.settled.success
    assert facilitators[0].stats.verify_calls == verified_before + 1
    assert resynced > synced


async def test_a_cumulative_mismatch_is_a_corrective_402_with_the_channel_and_our_voucher(sidecar):
    client, payload = await _opened(sidecar)
    await client.pay()
    # The client signs from a stale base (it lost the last receipt): one price short.
    stale = voucher_payload(payload, 2 * PRICE)
    refused = await client.authorize(stale)
    assert (refused.outcome, refused.reason) == ("rejected", codes.ERR_CUMULATIVE_AMOUNT_MISMATCH)
    offer = batch_offer(required_of(refused.authorized.rejected))
    state, voucher = offer.extra["channelState"], offer.extra["voucherState"]
    assert state["chargedCumulativeAmount"] == str(2 * PRICE)
    assert state["channelId"] == channel_id(payload)
    assert voucher["signedMaxClaimable"] == str(2 * PRICE)
    # The voucher we show is the payer's own: its signature recovers to the payer.
    signable = encode_typed_data(
        domain_data=get_batch_settlement_eip712_domain(CHAIN_ID),
        message_types=VOUCHER_TYPES,
        message_data={"channelId": coerce_bytes32(channel_id(payload)), "maxClaimableAmount": 2 * PRICE},
    )
    assert Account.recover_message(signable, signature=bytes.fromhex(voucher["signature"][2:])) == client.payer.address


async def test_a_voucher_signed_by_anyone_but_the_payer_authorizer_is_refused(sidecar, facilitators):
    client, payload = await _opened(sidecar)
    forged = voucher_payload(payload, 2 * PRICE, signer=payer_account(1))
    refused = await client.authorize(forged)
    assert (refused.outcome, refused.reason) == ("rejected", codes.ERR_INVALID_VOUCHER_SIGNATURE)
    # ...and the channel is free again: the payer's own voucher goes through.
    assert (await client.pay()).settled.success


def _altered(**changes):
    def alter(offer):
        extra = dict(offer.extra)
        fields = {}
        for name, value in changes.items():
            if name in ("receiverAuthorizer", "withdrawDelay"):
                extra[name] = value
            else:
                fields[name] = value
        return offer.model_copy(update={**fields, "extra": extra})

    return alter


@pytest.mark.parametrize(
    ("alter", "code"),
    [
        (_altered(pay_to=OTHER), codes.ERR_RECEIVER_MISMATCH),
        (_altered(asset=OTHER), codes.ERR_TOKEN_MISMATCH),
        (_altered(receiverAuthorizer=OTHER), codes.ERR_RECEIVER_AUTHORIZER_MISMATCH),
        (_altered(withdrawDelay=MIN_WITHDRAW_DELAY), codes.ERR_WITHDRAW_DELAY_MISMATCH),
    ],
    ids=["receiver", "token", "receiver_authorizer", "withdraw_delay"],
)
async def test_a_channel_with_other_terms_is_refused_before_any_facilitator(sidecar, facilitators, alter, code):
    client = ChannelClient(sidecar)
    client.payer.client.set_spend_controls(False)  # a hostile payer signs for any token
    client.offer = alter(await client.requirements())
    payload = await client.next_payload()
    # The accepted requirements say what the route offered: only the channel differs.
    payload = payload.model_copy(update={"accepted": batch_offer(await client.required())})
    refused = await client.authorize(payload)
    assert (refused.outcome, refused.reason) == ("rejected", code)
    assert facilitators[0].stats.verify_calls == 0


async def test_a_voucher_for_another_channel_is_refused(sidecar):
    client, payload = await _opened(sidecar)
    other_payer = ChannelPayer(1)
    other_client, other_payload = await _opened(sidecar, other_payer)
    # The voucher of one channel carried with the config of another.
    crossed = voucher_payload(other_payload, 2 * PRICE, signer=other_payer.account)
    crossed.payload["channelConfig"] = payload.payload["channelConfig"]
    refused = await client.authorize(crossed)
    assert (refused.outcome, refused.reason) == ("rejected", codes.ERR_CHANNEL_ID_MISMATCH)


async def test_a_voucher_beyond_the_channels_balance_is_refused(sidecar):
    client, payload = await _opened(sidecar)  # deposit 10 prices, 1 charged
    # A dearer route on the same channel: its voucher would exceed the balance.
    dear = ChannelClient(sidecar, client.payer, price="$0.01")
    refused = await dear.authorize(voucher_payload(payload, PRICE + 10 * PRICE, accepted=await dear.requirements()))
    assert (refused.outcome, refused.reason) == ("rejected", codes.ERR_CUMULATIVE_EXCEEDS_BALANCE)


async def test_a_voucher_less_than_a_price_above_what_was_claimed_is_refused(make_channel_sidecar, facilitators):
    # The mirror is refreshed at every request, so the claim below is seen at once.
    sidecar = await make_channel_sidecar(channel_mirror_ttl_s=0)
    try:
        client, payload = await _opened(sidecar)  # charged one price
        # Someone with the receiver authorizer's key claims half a price more than we
        # charged, backed by a voucher of the payer's for two prices.
        ceiling = VoucherFields.from_dict(voucher_payload(payload, 2 * PRICE).payload["voucher"])
        claimed = await facilitator_settle(facilitators[0], claim_request([claim_of(payload, PRICE + PRICE // 2, ceiling)]))
        assert claimed["success"] is True, claimed
        # The next voucher signs charged + price = 2000 > 1500 claimed (the facilitator
        # accepts that); but it is less than a price above what was claimed.
        refused = await client.authorize(voucher_payload(payload, 2 * PRICE))
    finally:
        await sidecar.stop()
    assert (refused.outcome, refused.reason) == ("rejected", codes.ERR_CUMULATIVE_AMOUNT_BELOW_CLAIMED)


async def test_a_malformed_channel_payload_is_a_400_with_its_code(sidecar):
    client = ChannelClient(sidecar)
    payload = await client.next_payload()
    payload.payload["voucher"]["maxClaimableAmount"] = 1000  # a number, not a string
    refused = await client.authorize(payload)
    assert (refused.outcome, refused.authorized.rejected.status) == ("rejected", 400)
    assert refused.reason == codes.ERR_DEPOSIT_PAYLOAD


async def test_a_refused_header_reaches_no_facilitator(sidecar, facilitators):
    client = ChannelClient(sidecar)
    payload = await client.next_payload()
    payload.payload["type"] = "claim"  # a server's settle action, not a client's payment
    refused = await client.authorize(payload)
    assert (refused.outcome, refused.reason) == ("rejected", codes.ERR_INVALID_PAYLOAD_TYPE)
    assert facilitators[0].stats.verify_calls == 0
