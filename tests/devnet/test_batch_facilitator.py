"""The devnet facilitator's batch-settlement scheme over HTTP: the SDK's client payloads
and a server's claim / settle / refund requests, settled on the simulated channel
contract with real signatures."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from x402.mechanisms.evm.batch_settlement.authorizer_signer import LocalAuthorizerSigner
from x402.mechanisms.evm.batch_settlement.constants import (
    BATCH_SETTLEMENT_ADDRESS,
    ERC3009_DEPOSIT_COLLECTOR_ADDRESS,
    MIN_WITHDRAW_DELAY,
)
from x402.schemas import PaymentPayload

from devnet.batch_settlement import event_topic
from devnet.chain import NETWORK
from devnet.faults import Fault
from devnet.wallets import (
    INITIAL_PAYER_BALANCE,
    MERCHANT_ADDRESS,
    PAYER_KEYS,
    RECEIVER_AUTHORIZER_ADDRESS,
    payer_account,
)
from tests.devnet.channels import (
    DEPOSIT,
    PRICE,
    ChannelPayer,
    batch_requirements,
    channel_id,
    claim_of,
    claim_request,
    open_channel,
    refund_request,
    settle,
    settle_request,
)
from tests.devnet.support import wire

REQUIREMENTS = batch_requirements()


def token_total(chain) -> int:
    """All USDC on the devnet: payers, merchant, the escrow contract and the collector."""
    holders = [payer_account(i).address for i in range(len(PAYER_KEYS))]
    holders += [MERCHANT_ADDRESS, BATCH_SETTLEMENT_ADDRESS, ERC3009_DEPOSIT_COLLECTOR_ADDRESS]
    return sum(chain.balance_of(holder) for holder in holders)


async def test_supported_lists_batch_settlement_with_its_receiver_authorizer(devnet):
    status, supported = await devnet.get("/supported")

    assert status == 200
    kinds = {(kind["x402Version"], kind["scheme"], kind["network"]): kind for kind in supported["kinds"]}
    assert (2, "exact", NETWORK) in kinds
    batch = kinds[(2, "batch-settlement", NETWORK)]
    assert batch["extra"] == {"receiverAuthorizer": RECEIVER_AUTHORIZER_ADDRESS}


async def test_a_client_deposit_verifies_settles_and_moves_the_money_into_escrow(devnet):
    payer = ChannelPayer(0)
    payload = await payer.pay(REQUIREMENTS)

    status, verified = await devnet.verify(payload, REQUIREMENTS)
    assert status == 200
    assert verified["isValid"] is True
    assert verified["payer"] == payer.address
    assert verified["extra"]["balance"] == "0"

    status, settled = await devnet.settle(payload, REQUIREMENTS)
    assert status == 200
    assert settled["success"] is True
    assert settled["amount"] == str(DEPOSIT)
    assert settled["extra"]["channelState"]["balance"] == str(DEPOSIT)
    assert devnet.chain.balance_of(payer.address) == INITIAL_PAYER_BALANCE - DEPOSIT
    assert devnet.chain.balance_of(BATCH_SETTLEMENT_ADDRESS) == DEPOSIT
    assert devnet.chain.channel(channel_id(payload)).balance == DEPOSIT
    topics = [log.topics[0] for log in devnet.chain.receipt(settled["transaction"]).logs]
    assert topics[-2:] == [event_topic("ChannelCreated"), event_topic("Deposited")]


async def test_a_deposit_settles_at_most_once(devnet):
    payload = await ChannelPayer(0).pay(REQUIREMENTS)
    first = await settle(devnet, payload)

    second = await settle(devnet, payload)

    assert first["success"] is True
    assert second["success"] is False
    assert second["errorReason"] == "invalid_batch_settlement_evm_deposit_simulation_failed"
    assert devnet.chain.channel(channel_id(payload)).balance == DEPOSIT
    assert devnet.chain.balance_of(payer_account(0).address) == INITIAL_PAYER_BALANCE - DEPOSIT


async def test_a_deposit_larger_than_the_payers_funds_is_refused(devnet):
    payload = ChannelPayer(0).deposit(REQUIREMENTS, INITIAL_PAYER_BALANCE + 1)

    settled = await settle(devnet, payload)

    assert settled["success"] is False
    assert settled["errorReason"] == "invalid_batch_settlement_evm_insufficient_balance"
    assert devnet.chain.balance_of(payer_account(0).address) == INITIAL_PAYER_BALANCE


async def test_a_voucher_verifies_against_the_channel(devnet):
    payer = ChannelPayer(0)
    await open_channel(devnet, payer)

    voucher = await payer.pay(REQUIREMENTS)
    status, verified = await devnet.verify(voucher, REQUIREMENTS)

    assert voucher.payload["type"] == "voucher"
    assert voucher.payload["voucher"]["maxClaimableAmount"] == str(2 * PRICE)
    assert status == 200
    assert verified["isValid"] is True
    assert verified["extra"] == {
        "channelId": channel_id(voucher),
        "balance": str(DEPOSIT),
        "totalClaimed": "0",
        "withdrawRequestedAt": 0,
        "refundNonce": "0",
    }


async def test_a_voucher_above_the_channel_balance_is_refused(devnet):
    payer = ChannelPayer(0)
    deposit = await open_channel(devnet, payer)
    voucher = await payer.pay(REQUIREMENTS)
    beyond = voucher.model_copy(
        update={"payload": {**voucher.payload, "voucher": payer.voucher(deposit, DEPOSIT + 1).to_dict()}}
    )

    _, verified = await devnet.verify(beyond, REQUIREMENTS)

    assert verified["isValid"] is False
    assert verified["invalidReason"] == "invalid_batch_settlement_evm_cumulative_exceeds_balance"


async def test_a_voucher_signed_by_someone_other_than_the_payer_is_refused(devnet):
    payer = ChannelPayer(0)
    await open_channel(devnet, payer)
    voucher = await payer.pay(REQUIREMENTS)
    forged = ChannelPayer(1).voucher(voucher, 2 * PRICE)
    forged_payload = voucher.model_copy(update={"payload": {**voucher.payload, "voucher": forged.to_dict()}})

    _, verified = await devnet.verify(forged_payload, REQUIREMENTS)

    assert verified["isValid"] is False
    assert verified["invalidReason"] == "invalid_batch_settlement_evm_voucher_signature"


async def test_one_signed_claim_collects_several_channels(devnet):
    payers = [ChannelPayer(i) for i in range(3)]
    deposits = [await open_channel(devnet, payer) for payer in payers]
    claims = [
        claim_of(deposit, total, payer.voucher(deposit, total))
        for payer, deposit, total in zip(payers, deposits, (1000, 2000, 3000), strict=True)
    ]

    claimed = await settle(devnet, claim_request(claims))

    assert claimed["success"] is True
    assert [devnet.chain.channel(channel_id(d)).total_claimed for d in deposits] == [1000, 2000, 3000]
    assert devnet.chain.receiver_totals(MERCHANT_ADDRESS).total_claimed == 6000
    logs = devnet.chain.receipt(claimed["transaction"]).logs
    assert [log.topics[0] for log in logs] == [event_topic("Claimed")] * 3
    # A claim is accounting only: the escrow still holds every deposit.
    assert devnet.chain.balance_of(BATCH_SETTLEMENT_ADDRESS) == 3 * DEPOSIT


async def test_a_claim_left_unsigned_is_signed_by_the_facilitators_receiver_authorizer(devnet):
    payer = ChannelPayer(0)
    deposit = await open_channel(devnet, payer)

    claimed = await settle(devnet, claim_request([claim_of(deposit, PRICE)], signer=None))

    assert claimed["success"] is True
    assert devnet.chain.channel(channel_id(deposit)).total_claimed == PRICE


async def test_settle_sweeps_the_claimed_funds_to_the_receiver_once(devnet):
    payers = [ChannelPayer(i) for i in range(2)]
    deposits = [await open_channel(devnet, payer) for payer in payers]
    await settle(devnet, claim_request([claim_of(deposit, PRICE) for deposit in deposits]))

    swept = await settle(devnet, settle_request())
    again = await settle(devnet, settle_request())

    assert swept["success"] is True
    assert devnet.chain.balance_of(MERCHANT_ADDRESS) == 2 * PRICE
    assert devnet.chain.balance_of(BATCH_SETTLEMENT_ADDRESS) == 2 * DEPOSIT - 2 * PRICE
    assert devnet.chain.receiver_totals(MERCHANT_ADDRESS).total_settled == 2 * PRICE
    assert [log.topics[0] for log in devnet.chain.receipt(swept["transaction"]).logs][-1] == event_topic("Settled")
    assert again["success"] is False
    assert again["errorReason"] == "invalid_batch_settlement_evm_nothing_to_settle"
    assert devnet.chain.balance_of(MERCHANT_ADDRESS) == 2 * PRICE


async def test_a_claim_signed_by_the_wrong_key_is_refused_and_changes_nothing(devnet):
    payer = ChannelPayer(0)
    deposit = await open_channel(devnet, payer)
    impostor = LocalAuthorizerSigner(PAYER_KEYS[0])

    claimed = await settle(devnet, claim_request([claim_of(deposit, PRICE)], signer=impostor))

    assert claimed["success"] is False
    assert claimed["errorReason"] == "invalid_batch_settlement_evm_claim_simulation_failed"
    assert "InvalidSignature()" in claimed["errorMessage"]
    assert devnet.chain.channel(channel_id(deposit)).total_claimed == 0
    assert devnet.chain.receiver_totals(MERCHANT_ADDRESS).total_claimed == 0


async def test_a_claim_above_a_channels_balance_fails_the_whole_batch(devnet):
    payers = [ChannelPayer(0), ChannelPayer(1)]
    good, greedy = [await open_channel(devnet, payer) for payer in payers]
    too_much = DEPOSIT + 1
    claims = [claim_of(good, PRICE), claim_of(greedy, too_much, payers[1].voucher(greedy, too_much))]

    claimed = await settle(devnet, claim_request(claims))

    assert claimed["success"] is False
    assert "ClaimExceedsBalance()" in claimed["errorMessage"]
    assert devnet.chain.channel(channel_id(good)).total_claimed == 0
    assert devnet.chain.channel(channel_id(greedy)).total_claimed == 0
    assert devnet.chain.receiver_totals(MERCHANT_ADDRESS).total_claimed == 0


async def test_a_cooperative_refund_returns_the_unclaimed_balance(devnet):
    payer = ChannelPayer(0)
    deposit = await open_channel(devnet, payer)
    zero_charge = payer.voucher(deposit, PRICE)  # what was charged so far, nothing more
    request = refund_request(
        deposit, zero_charge, amount=DEPOSIT - PRICE, nonce=0, claims=(claim_of(deposit, PRICE, zero_charge),)
    )

    refunded = await settle(devnet, request)

    assert refunded["success"] is True
    assert refunded["amount"] == str(DEPOSIT - PRICE)
    assert refunded["extra"]["channelState"] == {
        "channelId": channel_id(deposit),
        "balance": str(PRICE),
        "totalClaimed": str(PRICE),
        "withdrawRequestedAt": 0,
        "refundNonce": "1",
    }
    assert devnet.chain.balance_of(payer.address) == INITIAL_PAYER_BALANCE - PRICE
    channel = devnet.chain.channel(channel_id(deposit))
    assert (channel.balance, channel.total_claimed, channel.refund_nonce) == (PRICE, PRICE, 1)


async def test_a_refund_signed_for_a_used_nonce_is_refused(devnet):
    payer = ChannelPayer(0)
    deposit = await open_channel(devnet, payer)
    voucher = payer.voucher(deposit, PRICE)
    request = refund_request(deposit, voucher, amount=1000, nonce=0)
    assert (await settle(devnet, request))["success"] is True

    replayed = await settle(devnet, request)

    assert replayed["success"] is False
    assert replayed["errorReason"] == "invalid_batch_settlement_evm_refund_simulation_failed"
    assert "InvalidRefundNonce()" in replayed["errorMessage"]
    assert devnet.chain.balance_of(payer.address) == INITIAL_PAYER_BALANCE - DEPOSIT + 1000


async def test_a_refund_verifies_as_a_zero_charge_voucher(devnet):
    payer = ChannelPayer(0)
    deposit = await open_channel(devnet, payer)
    request = refund_request(deposit, payer.voucher(deposit, 0), amount=DEPOSIT, nonce=0)

    _, verified = await devnet.verify(request, REQUIREMENTS)

    assert verified["isValid"] is True
    assert verified["extra"]["refundNonce"] == "0"


async def withdraw(devnet, deposit: PaymentPayload, step: str, **fields: Any) -> tuple[int, Any]:
    body = {"channelConfig": deposit.payload["channelConfig"], **fields}
    return await devnet.post(f"/_devnet/channels/{step}-withdraw", body)


async def test_a_timed_withdrawal_finalizes_only_after_the_delay(devnet):
    payer = ChannelPayer(0)
    deposit = await open_channel(devnet, payer)

    status, started = await withdraw(devnet, deposit, "initiate", amount=str(DEPOSIT))
    assert status == 200
    status, early = await withdraw(devnet, deposit, "finalize")
    assert (status, early["error"]["code"]) == (409, "execution_reverted")
    assert "WithdrawDelayNotElapsed()" in early["error"]["message"]
    assert devnet.chain.balance_of(payer.address) == INITIAL_PAYER_BALANCE - DEPOSIT

    await devnet.post("/_devnet/clock", {"advance_s": MIN_WITHDRAW_DELAY})
    status, finalized = await withdraw(devnet, deposit, "finalize")

    assert status == 200
    assert devnet.chain.balance_of(payer.address) == INITIAL_PAYER_BALANCE
    status, channel = await devnet.get(f"/_devnet/channels/{channel_id(deposit)}")
    assert channel["balance"] == "0"
    assert channel["withdrawRequestedAt"] == 0
    topics = [log.topics[0] for log in devnet.chain.receipt(finalized["transaction"]).logs]
    assert topics[:2] == [event_topic("WithdrawFinalized"), event_topic("ChannelClosed")]
    assert started["transaction"] != finalized["transaction"]


async def test_a_claim_made_during_the_withdraw_delay_is_kept(devnet):
    payer = ChannelPayer(0)
    deposit = await open_channel(devnet, payer)
    before = devnet.chain.timestamp  # the clock runs with the wall clock: a window
    await withdraw(devnet, deposit, "initiate", amount=str(DEPOSIT))
    after = devnet.chain.timestamp
    status, channel = await devnet.get(f"/_devnet/channels/{channel_id(deposit)}")
    assert before <= channel["withdrawRequestedAt"] <= after

    assert (await settle(devnet, claim_request([claim_of(deposit, PRICE)])))["success"] is True
    devnet.chain.advance_time(MIN_WITHDRAW_DELAY)
    await withdraw(devnet, deposit, "finalize")
    await settle(devnet, settle_request())

    assert devnet.chain.balance_of(payer.address) == INITIAL_PAYER_BALANCE - PRICE
    assert devnet.chain.balance_of(MERCHANT_ADDRESS) == PRICE
    assert token_total(devnet.chain) == len(PAYER_KEYS) * INITIAL_PAYER_BALANCE


async def test_a_voucher_claimed_after_the_withdrawal_finalized_is_lost(devnet):
    payer = ChannelPayer(0)
    deposit = await open_channel(devnet, payer)
    await withdraw(devnet, deposit, "initiate", amount=str(DEPOSIT))
    devnet.chain.advance_time(MIN_WITHDRAW_DELAY)
    await withdraw(devnet, deposit, "finalize")

    late = await settle(devnet, claim_request([claim_of(deposit, PRICE)]))

    assert late["success"] is False
    assert "ClaimExceedsBalance()" in late["errorMessage"]
    assert devnet.chain.balance_of(payer.address) == INITIAL_PAYER_BALANCE


@pytest.mark.parametrize(
    ("step", "fields", "error"),
    [
        ("initiate", {"amount": str(DEPOSIT), "from": MERCHANT_ADDRESS}, "InvalidChannel()"),
        ("initiate", {"amount": str(DEPOSIT + 1)}, "WithdrawAmountExceedsAvailable()"),
        ("initiate", {"amount": "0"}, "NothingToWithdraw()"),
        ("finalize", {}, "WithdrawalNotPending()"),
        ("finalize", {"from": MERCHANT_ADDRESS}, "NotAuthorizedToFinalizeWithdraw()"),
    ],
)
async def test_the_contract_refuses_a_withdrawal_it_should_not_make(devnet, step, fields, error):
    deposit = await open_channel(devnet, ChannelPayer(0))

    status, answer = await withdraw(devnet, deposit, step, **fields)

    assert status == 409
    assert error in answer["error"]["message"]
    assert devnet.chain.channel(channel_id(deposit)).withdraw_requested_at == 0


async def test_a_refund_shrinks_a_pending_withdrawal_and_cancels_it_when_it_covers_it(devnet):
    payer = ChannelPayer(0)
    deposit = await open_channel(devnet, payer)
    await withdraw(devnet, deposit, "initiate", amount="5000")
    voucher = payer.voucher(deposit, 0)

    await settle(devnet, refund_request(deposit, voucher, amount=2000, nonce=0))
    shrunk = devnet.chain.channel(channel_id(deposit))
    await settle(devnet, refund_request(deposit, voucher, amount=3000, nonce=1))
    cancelled = devnet.chain.channel(channel_id(deposit))

    assert (shrunk.withdraw_amount, shrunk.withdraw_requested_at > 0) == (3000, True)
    assert (cancelled.withdraw_amount, cancelled.withdraw_requested_at) == (0, 0)
    assert cancelled.balance == DEPOSIT - 5000


@pytest.mark.parametrize(
    "body",
    [
        {"channelConfig": "nope", "amount": "1"},
        {"channelConfig": {"payer": "0x12"}, "amount": "1"},
        {"amount": "-5"},
    ],
)
async def test_a_malformed_withdraw_request_is_a_400(devnet, body):
    deposit = await open_channel(devnet, ChannelPayer(0))
    body.setdefault("channelConfig", deposit.payload["channelConfig"])

    status, answer = await devnet.post("/_devnet/channels/initiate-withdraw", body)

    assert status == 400
    assert answer["error"]["code"] == "invalid_request"


async def test_a_dropped_claim_answer_still_claims_and_the_retry_claims_nothing_more(devnet):
    payer = ChannelPayer(0)
    deposit = await open_channel(devnet, payer)
    request = claim_request([claim_of(deposit, PRICE)])
    devnet.faults.arm(Fault(stage="settle", mode="drop", after_transfer=True, times=1))

    with pytest.raises(aiohttp.ServerDisconnectedError):
        await devnet.settle(request, request.accepted)
    retried = await settle(devnet, request)

    assert retried["success"] is True
    assert devnet.chain.channel(channel_id(deposit)).total_claimed == PRICE
    assert devnet.chain.receiver_totals(MERCHANT_ADDRESS).total_claimed == PRICE


async def test_a_pending_deposit_is_reconciled_by_a_retry_of_the_same_payload(devnet):
    payload = await ChannelPayer(0).pay(REQUIREMENTS)
    devnet.faults.arm(Fault(stage="settle", mode="settlement_pending", times=1))

    pending = await settle(devnet, payload)
    assert (pending["success"], pending["errorReason"]) == (False, "settlement_pending")
    assert devnet.chain.channel(channel_id(payload)).balance == 0
    devnet.chain.mine(pending["transaction"])
    retried = await settle(devnet, payload)

    assert retried["success"] is True
    assert retried["transaction"] == pending["transaction"]
    assert devnet.chain.channel(channel_id(payload)).balance == DEPOSIT
    assert devnet.chain.balance_of(payer_account(0).address) == INITIAL_PAYER_BALANCE - DEPOSIT


async def test_an_invalid_fault_answers_in_the_batch_schemes_words(devnet):
    payload = await ChannelPayer(0).pay(REQUIREMENTS)
    devnet.faults.arm(Fault(stage="verify", mode="invalid", times=1))

    _, verified = await devnet.verify(payload, REQUIREMENTS)

    assert verified == {
        "isValid": False,
        "invalidReason": "invalid_batch_settlement_evm_voucher_signature",
        "payer": payer_account(0).address,
    }


async def test_the_devnet_clock_moves_forward_only(devnet):
    status, before = await devnet.get("/_devnet/clock")
    _, after = await devnet.post("/_devnet/clock", {"advance_s": 3600})
    backwards, refused = await devnet.post("/_devnet/clock", {"advance_s": -1})

    assert status == 200
    assert after["timestamp"] >= before["timestamp"] + 3600
    assert backwards == 400
    assert refused["error"]["code"] == "invalid_request"


def _without_authorization(body):
    del body["paymentPayload"]["payload"]["deposit"]["authorization"]


def _bad_salt(body):
    body["paymentPayload"]["payload"]["channelConfig"]["salt"] = "0x12"


def _bad_voucher_signature(body):
    body["paymentPayload"]["payload"]["voucher"]["signature"] = "0xzz"


@pytest.mark.parametrize("stage", ["verify", "settle"])
@pytest.mark.parametrize("spoil", [_without_authorization, _bad_salt, _bad_voucher_signature])
async def test_a_malformed_batch_payload_is_a_400_and_moves_nothing(devnet, stage, spoil):
    payload = await ChannelPayer(0).pay(REQUIREMENTS)
    body = wire(payload, REQUIREMENTS)
    spoil(body)

    status, answer = await devnet.post(f"/{stage}", body)

    assert status == 400
    assert answer["error"]["code"] == "invalid_payload"
    assert devnet.chain.balance_of(payer_account(0).address) == INITIAL_PAYER_BALANCE


async def test_a_malformed_claim_row_is_a_400(devnet):
    deposit = await open_channel(devnet, ChannelPayer(0))
    request = claim_request([claim_of(deposit, PRICE)])
    body = wire(request, request.accepted)
    body["paymentPayload"]["payload"]["claims"][0]["signature"] = "not hex"

    status, answer = await devnet.post("/settle", body)

    assert (status, answer["error"]["code"]) == (400, "invalid_payload")
    assert devnet.chain.channel(channel_id(deposit)).total_claimed == 0
