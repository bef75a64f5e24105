"""Cooperative refunds (issue 17, item 4): no handler runs; the sidecar completes the
payload (amount, refund nonce, the claim of what it charged, the receiver
authorizer's signatures when the key is its own), settles it at the facilitator
and answers with the receipt. What we charged is claimed in the same transaction,
the rest goes back to the payer."""

from __future__ import annotations

import asyncpg
from x402.mechanisms.evm.batch_settlement import errors as codes
from x402.mechanisms.evm.batch_settlement.types import RefundPayload
from x402.schemas import PaymentPayload

from devnet.wallets import DEV_KEYS, INITIAL_PAYER_BALANCE, account
from tests.channels.support import PRICE, ChannelClient, batch_offer, receipt, required_of
from tests.devnet.channels import DEPOSIT, channel_config, channel_id

OWN_AUTHORIZER_KEY = DEV_KEYS[9]


def refund_payload(client: ChannelClient, paid: PaymentPayload, signed: int, amount: int | None = None) -> PaymentPayload:
    """The payer's refund request: a zero-charge voucher for what was charged."""
    refund = RefundPayload()
    refund.channel_config = channel_config(paid)
    refund.voucher = client.payer.voucher(paid, signed)
    refund.amount = None if amount is None else str(amount)
    return PaymentPayload(x402_version=2, payload=refund.to_dict(), accepted=paid.accepted)


async def _paid_three(client: ChannelClient) -> PaymentPayload:
    for _ in range(3):
        paid = await client.pay()
        assert paid.settled.success
    return paid.payload


async def _row(database_url: str, channel: str):
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetchrow("SELECT * FROM payment_channels WHERE channel_id = $1", channel)
    finally:
        await conn.close()


async def _refund_all(sidecar, chain, database_url, facilitators):
    client = ChannelClient(sidecar)
    payload = await _paid_three(client)
    settles = facilitators[0].stats.settle_calls
    refunded = await client.authorize(refund_payload(client, payload, 3 * PRICE))
    assert refunded.outcome == "completed", refunded.authorized
    answer = refunded.authorized.completed
    assert answer.status == 200
    settled = receipt(answer.headers)
    assert settled["success"] is True and settled["transaction"]
    assert settled["amount"] == str(DEPOSIT - 3 * PRICE)
    assert "chargedAmount" not in settled["extra"]
    assert facilitators[0].stats.settle_calls == settles + 1
    on_chain = chain.channel(channel_id(payload))
    # Our charges claimed in the same transaction; the rest back with the payer.
    assert (on_chain.balance, on_chain.total_claimed, on_chain.refund_nonce) == (3 * PRICE, 3 * PRICE, 1)
    assert chain.balance_of(client.payer.address) == INITIAL_PAYER_BALANCE - 3 * PRICE
    row = await _row(database_url, channel_id(payload))
    assert (row["charged_cumulative"], row["balance"], row["total_claimed"], row["refund_nonce"]) == (
        3 * PRICE,
        3 * PRICE,
        3 * PRICE,
        1,
    )
    assert row["reserved_by"] is None
    return payload


async def test_a_refund_with_the_facilitators_authorizer_claims_our_charges_and_returns_the_rest(
    sidecar, chain, database_url, facilitators
):
    await _refund_all(sidecar, chain, database_url, facilitators)


async def test_a_refund_with_our_own_authorizer_key_is_signed_by_us(make_channel_sidecar, chain, database_url, facilitators):
    sidecar = await make_channel_sidecar(receiver_authorizer_key=OWN_AUTHORIZER_KEY)
    try:
        payload = await _refund_all(sidecar, chain, database_url, facilitators)
    finally:
        await sidecar.stop()
    assert channel_config(payload).receiver_authorizer == account(OWN_AUTHORIZER_KEY).address


async def test_a_partial_refund_gives_back_what_was_asked(sidecar, chain, database_url):
    client = ChannelClient(sidecar)
    payload = await _paid_three(client)
    refunded = await client.authorize(refund_payload(client, payload, 3 * PRICE, amount=2 * PRICE))
    assert refunded.outcome == "completed"
    assert receipt(refunded.authorized.completed.headers)["amount"] == str(2 * PRICE)
    assert chain.channel(channel_id(payload)).balance == DEPOSIT - 2 * PRICE
    # The channel goes on: the next voucher is charged as usual.
    assert (await client.pay()).settled.success
    assert (await _row(database_url, channel_id(payload)))["charged_cumulative"] == 4 * PRICE


async def test_a_refund_of_more_than_is_left_is_refused_and_changes_nothing(sidecar, chain, database_url, facilitators):
    client = ChannelClient(sidecar)
    payload = await _paid_three(client)
    settles = facilitators[0].stats.settle_calls
    refused = await client.authorize(refund_payload(client, payload, 3 * PRICE, amount=DEPOSIT))
    assert (refused.outcome, refused.reason) == ("rejected", codes.ERR_REFUND_NO_BALANCE)
    assert refused.authorized.rejected.status == 402
    assert facilitators[0].stats.settle_calls == settles
    assert chain.channel(channel_id(payload)).balance == DEPOSIT
    assert (await _row(database_url, channel_id(payload)))["reserved_by"] is None


async def test_a_refund_voucher_other_than_what_we_charged_is_a_corrective_402(sidecar):
    client = ChannelClient(sidecar)
    payload = await _paid_three(client)
    refused = await client.authorize(refund_payload(client, payload, 2 * PRICE))
    assert (refused.outcome, refused.reason) == ("rejected", codes.ERR_CUMULATIVE_AMOUNT_MISMATCH)
    state = batch_offer(required_of(refused.authorized.rejected)).extra["channelState"]
    assert state["chargedCumulativeAmount"] == str(3 * PRICE)
