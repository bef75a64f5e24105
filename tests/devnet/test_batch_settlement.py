"""The simulated x402BatchSettlement contract on the chain: the reference contract's rules,
custom errors, events and hashes, and a reverted transaction changing nothing."""

from __future__ import annotations

import pytest
from eth_abi import decode, encode
from eth_account.messages import encode_typed_data
from eth_utils import function_signature_to_4byte_selector, keccak
from x402.mechanisms.evm.batch_settlement.constants import (
    BATCH_SETTLEMENT_ADDRESS,
    ERC3009_DEPOSIT_COLLECTOR_ADDRESS,
    MIN_WITHDRAW_DELAY,
    VOUCHER_TYPES,
)
from x402.mechanisms.evm.batch_settlement.encoding import build_erc3009_deposit_nonce
from x402.mechanisms.evm.batch_settlement.facilitator.claim import build_voucher_claim_args
from x402.mechanisms.evm.batch_settlement.facilitator.deposit_eip3009 import build_eip3009_deposit_collector_data
from x402.mechanisms.evm.batch_settlement.facilitator.utils import to_contract_channel_config
from x402.mechanisms.evm.batch_settlement.types import DepositPayload
from x402.mechanisms.evm.batch_settlement.utils import compute_channel_id, get_batch_settlement_eip712_domain

from devnet.batch_settlement import event_topic
from devnet.chain import NETWORK, USDC_ADDRESS, Chain
from devnet.evm import Revert, eip712_digest
from devnet.wallets import FACILITATOR_ADDRESS, INITIAL_PAYER_BALANCE, MERCHANT_ADDRESS, payer_account
from tests.devnet.channels import (
    DEPOSIT,
    PRICE,
    ChannelPayer,
    batch_requirements,
    channel_config,
    channel_id,
    claim_call,
    claim_of,
    contract_call,
    deposit_call,
)
from tests.devnet.support import signed_transfer

REQUIREMENTS = batch_requirements()


def send(chain: Chain, calldata: bytes, sender: str = FACILITATOR_ADDRESS):
    """Broadcast and mine at once; the receipt."""
    return chain.receipt(chain.send_transaction(sender, BATCH_SETTLEMENT_ADDRESS, calldata))


def hold(chain: Chain, calldata: bytes) -> str:
    """Broadcast (the call is valid now) and keep it in the mempool."""
    return chain.send_transaction(FACILITATOR_ADDRESS, BATCH_SETTLEMENT_ADDRESS, calldata, mine_after=None)


def opened(chain: Chain, index: int = 0):
    """A payer whose channel holds DEPOSIT; (payer, its deposit payload)."""
    payer = ChannelPayer(index)
    payload = payer.deposit(REQUIREMENTS, DEPOSIT)
    assert send(chain, deposit_call(payload)).status == 1
    return payer, payload


def config_of(payload):
    return to_contract_channel_config(channel_config(payload))


def view(chain: Chain, types: list[str], function: str, *args) -> tuple:
    return decode(types, chain.call(BATCH_SETTLEMENT_ADDRESS, contract_call(function, *args)))


def reverts_with(chain: Chain, calldata: bytes, error: str, sender: str = FACILITATOR_ADDRESS) -> Revert:
    with pytest.raises(Revert) as raised:
        chain.call(BATCH_SETTLEMENT_ADDRESS, calldata, sender)
    assert raised.value.reason == error
    # What a node returns with it: the custom error's selector, then its arguments.
    assert raised.value.data[:4] == function_signature_to_4byte_selector(error)
    return raised.value


def raw(channel: str) -> bytes:
    return bytes.fromhex(channel.removeprefix("0x"))


def test_the_channel_id_is_the_sdks_eip712_hash_of_the_config():
    chain = Chain()
    payload = ChannelPayer(0).deposit(REQUIREMENTS, DEPOSIT)

    (answer,) = view(chain, ["bytes32"], "getChannelId", config_of(payload))

    assert "0x" + answer.hex() == compute_channel_id(channel_config(payload), NETWORK) == channel_id(payload)


def test_the_voucher_digest_is_what_the_payer_signs():
    chain = Chain()
    cid = raw(channel_id(ChannelPayer(0).deposit(REQUIREMENTS, DEPOSIT)))
    signable = encode_typed_data(
        domain_data=get_batch_settlement_eip712_domain(84532),
        message_types=VOUCHER_TYPES,
        message_data={"channelId": cid, "maxClaimableAmount": 5},
    )

    (digest,) = view(chain, ["bytes32"], "getVoucherDigest", cid, 5)

    assert digest == eip712_digest(signable)


def test_a_deposit_pulls_the_token_through_the_collector_into_escrow():
    chain = Chain()
    payer, payload = opened(chain)
    again = payer.deposit(REQUIREMENTS, 500)

    receipt = send(chain, deposit_call(again))

    assert chain.channel(channel_id(payload)).balance == DEPOSIT + 500
    assert chain.balance_of(payer.address) == INITIAL_PAYER_BALANCE - DEPOSIT - 500
    assert chain.balance_of(BATCH_SETTLEMENT_ADDRESS) == DEPOSIT + 500
    assert chain.balance_of(ERC3009_DEPOSIT_COLLECTOR_ADDRESS) == 0
    # A top-up is no new channel: Deposited only, after the token's own logs.
    assert [log.topics[0] for log in receipt.logs][-1:] == [event_topic("Deposited")]
    assert event_topic("ChannelCreated") not in [log.topics[0] for log in receipt.logs]
    (amount, new_balance) = decode(["uint128", "uint128"], bytes.fromhex(receipt.logs[-1].data[2:]))
    assert (amount, new_balance) == (500, DEPOSIT + 500)


def test_a_deposit_cannot_pull_another_payers_funds():
    chain = Chain()
    victim = payer_account(0).address
    payload = ChannelPayer(1).deposit(REQUIREMENTS, DEPOSIT)
    # The thief's own signature, on a channel naming the victim as payer.
    payload.payload["channelConfig"]["payer"] = victim

    with pytest.raises(Revert) as raised:
        chain.call(BATCH_SETTLEMENT_ADDRESS, deposit_call(payload))

    assert raised.value.reason == "FiatTokenV2: invalid signature"
    assert chain.balance_of(victim) == INITIAL_PAYER_BALANCE


def test_a_deposit_authorization_is_used_once():
    chain = Chain()
    _, payload = opened(chain)

    with pytest.raises(Revert) as raised:
        chain.call(BATCH_SETTLEMENT_ADDRESS, deposit_call(payload))

    assert raised.value.reason == "FiatTokenV2: authorization is used or canceled"


def test_a_deposit_reverted_at_mining_leaves_no_trace():
    chain = Chain()
    payer = ChannelPayer(0)
    payload = payer.deposit(REQUIREMENTS, DEPOSIT)
    held = hold(chain, deposit_call(payload))
    # Meanwhile the payer spends almost everything elsewhere.
    drain = signed_transfer(value=INITIAL_PAYER_BALANCE - 1)
    chain.send_transaction(FACILITATOR_ADDRESS, USDC_ADDRESS, drain.calldata)

    receipt = chain.mine(held)

    assert (receipt.status, receipt.logs) == (0, ())
    assert chain.channel(channel_id(payload)).balance == 0
    assert chain.balance_of(BATCH_SETTLEMENT_ADDRESS) == 0
    salt = payload.payload["deposit"]["authorization"]["erc3009Authorization"]["salt"]
    assert chain.authorization_state(payer.address, build_erc3009_deposit_nonce(channel_id(payload), salt)) is False


def test_a_claim_batch_reverted_at_mining_claims_no_row():
    chain = Chain()
    _, first = opened(chain, 0)
    second_payer, second = opened(chain, 1)
    held = hold(chain, claim_call([claim_of(first, PRICE), claim_of(second, PRICE)]))
    # Before the claim lands, the second payer's timed withdrawal drains its channel.
    send(chain, contract_call("initiateWithdraw", config_of(second), DEPOSIT), sender=second_payer.address)
    chain.advance_time(MIN_WITHDRAW_DELAY)
    send(chain, contract_call("finalizeWithdraw", config_of(second)), sender=second_payer.address)

    receipt = chain.mine(held)

    assert receipt.status == 0
    assert chain.channel(channel_id(first)).total_claimed == 0
    assert chain.receiver_totals(MERCHANT_ADDRESS).total_claimed == 0


def test_a_simulated_call_changes_nothing():
    chain = Chain()
    payload = ChannelPayer(0).deposit(REQUIREMENTS, DEPOSIT)

    chain.call(BATCH_SETTLEMENT_ADDRESS, deposit_call(payload))

    assert chain.channel(channel_id(payload)).balance == 0
    assert chain.balance_of(payer_account(0).address) == INITIAL_PAYER_BALANCE
    assert send(chain, deposit_call(payload)).status == 1


def test_claims_are_cumulative_so_an_old_claim_is_a_no_op():
    chain = Chain()
    payer, payload = opened(chain)
    send(chain, claim_call([claim_of(payload, 2 * PRICE, payer.voucher(payload, 2 * PRICE))]))

    receipt = send(chain, claim_call([claim_of(payload, PRICE)]))

    assert receipt.status == 1
    assert receipt.logs == ()
    assert chain.channel(channel_id(payload)).total_claimed == 2 * PRICE
    assert chain.receiver_totals(MERCHANT_ADDRESS).total_claimed == 2 * PRICE


def test_a_claim_above_the_vouchers_ceiling_reverts():
    chain = Chain()
    _, payload = opened(chain)

    reverts_with(chain, claim_call([claim_of(payload, PRICE + 1)]), "ClaimExceedsCeiling()")


def test_a_claim_backed_by_a_voucher_the_payer_did_not_sign_reverts():
    chain = Chain()
    _, payload = opened(chain)
    forged = ChannelPayer(1).voucher(payload, DEPOSIT)

    reverts_with(chain, claim_call([claim_of(payload, DEPOSIT, forged)]), "InvalidSignature()")


def test_a_malformed_voucher_signature_reverts_as_openzeppelins_ecdsa_does():
    chain = Chain()
    _, payload = opened(chain)
    claim = claim_of(payload, PRICE)
    claim.signature = claim.signature[:-2]  # 64 bytes

    revert = reverts_with(chain, claim_call([claim]), "ECDSAInvalidSignatureLength(uint256)")

    assert decode(["uint256"], revert.data[4:]) == (64,)


def test_one_claim_batch_serves_one_receiver_authorizer():
    chain = Chain()
    _, first = opened(chain, 0)
    other = batch_requirements(receiver_authorizer=payer_account(7).address)
    stranger = ChannelPayer(1).deposit(other, DEPOSIT)
    send(chain, deposit_call(stranger))

    rows = [claim_of(first, PRICE), claim_of(stranger, PRICE)]

    reverts_with(chain, claim_call(rows), "NotReceiverAuthorizer()")


def test_a_direct_claim_needs_the_receiver_side_as_sender():
    chain = Chain()
    _, payload = opened(chain)
    direct = contract_call("claim", build_voucher_claim_args([claim_of(payload, PRICE)]))

    reverts_with(chain, direct, "NotAuthorizedToClaim()", sender=FACILITATOR_ADDRESS)
    assert send(chain, direct, sender=MERCHANT_ADDRESS).status == 1
    assert chain.channel(channel_id(payload)).total_claimed == PRICE


def test_an_empty_claim_batch_reverts():
    chain = Chain()

    reverts_with(chain, contract_call("claim", []), "EmptyBatch()", sender=MERCHANT_ADDRESS)


def test_a_refund_with_nothing_left_still_uses_its_nonce():
    chain = Chain()
    payer, payload = opened(chain)
    send(chain, claim_call([claim_of(payload, DEPOSIT, payer.voucher(payload, DEPOSIT))]))

    receipt = send(chain, contract_call("refund", config_of(payload), 1), sender=MERCHANT_ADDRESS)

    assert receipt.status == 1
    assert receipt.logs == ()  # no Refunded, no transfer
    channel = chain.channel(channel_id(payload))
    assert (channel.refund_nonce, channel.balance) == (1, DEPOSIT)
    assert view(chain, ["uint256"], "refundNonce", raw(channel_id(payload))) == (1,)


@pytest.mark.parametrize(
    ("function", "args", "sender", "error"),
    [
        ("refund", (1,), FACILITATOR_ADDRESS, "NotAuthorizedToRefund()"),
        ("refund", (0,), MERCHANT_ADDRESS, "ZeroRefund()"),
        ("refundWithSignature", (1, 5, b""), FACILITATOR_ADDRESS, "InvalidRefundNonce()"),
        ("refundWithSignature", (1, 0, b"\x01" * 65), FACILITATOR_ADDRESS, "InvalidSignature()"),
    ],
)
def test_a_refund_the_receiver_side_did_not_authorize_reverts(function, args, sender, error):
    chain = Chain()
    _, payload = opened(chain)

    reverts_with(chain, contract_call(function, config_of(payload), *args), error, sender=sender)
    assert chain.channel(channel_id(payload)).refund_nonce == 0


@pytest.mark.parametrize(
    ("change", "amount", "error"),
    [
        ({}, 0, "ZeroDeposit()"),
        ({5: 60}, DEPOSIT, "WithdrawDelayOutOfRange()"),
        ({2: "0x" + "00" * 20}, DEPOSIT, "InvalidChannel()"),
    ],
)
def test_a_deposit_the_contract_must_refuse_reverts(change, amount, error):
    chain = Chain()
    payload = ChannelPayer(0).deposit(REQUIREMENTS, DEPOSIT)
    config = tuple(change.get(i, field) for i, field in enumerate(config_of(payload)))
    collector_data = build_eip3009_deposit_collector_data(DepositPayload.from_dict(payload.payload))

    calldata = contract_call("deposit", config, amount, ERC3009_DEPOSIT_COLLECTOR_ADDRESS, collector_data)

    reverts_with(chain, calldata, error)


def test_only_the_settlement_contract_may_call_the_collector():
    chain = Chain()
    payload = ChannelPayer(0).deposit(REQUIREMENTS, DEPOSIT)
    collect = function_signature_to_4byte_selector("collect(address,address,uint256,bytes32,bytes)")
    args = [payer_account(0).address, USDC_ADDRESS, DEPOSIT, raw(channel_id(payload)), b""]
    calldata = collect + encode(["address", "address", "uint256", "bytes32", "bytes"], args)

    with pytest.raises(Revert) as raised:
        chain.call(ERC3009_DEPOSIT_COLLECTOR_ADDRESS, calldata, payer_account(0).address)

    assert raised.value.reason == "OnlyX402BatchSettlement()"
    assert chain.channel(channel_id(payload)).balance == 0


def test_the_withdrawal_views_report_the_pending_request():
    chain = Chain()
    payer, payload = opened(chain)
    send(chain, contract_call("initiateWithdraw", config_of(payload), 4000), sender=payer.address)
    started = chain.timestamp

    pending = view(chain, ["uint128", "uint40"], "pendingWithdrawals", raw(channel_id(payload)))
    again = contract_call("initiateWithdraw", config_of(payload), 1)
    reverts_with(chain, again, "WithdrawalAlreadyPending()", sender=payer.address)

    assert pending == (4000, started)
    logs = chain.receipts_between(0, chain.block_number)[-1].logs
    assert logs[0].topics[0] == event_topic("WithdrawInitiated")
    assert decode(["uint128", "uint40"], bytes.fromhex(logs[0].data[2:])) == (4000, started + MIN_WITHDRAW_DELAY)


def test_event_topics_are_the_contracts_signatures():
    signatures = {
        "ChannelCreated": "ChannelCreated(bytes32,(address,address,address,address,address,uint40,bytes32))",
        "ChannelClosed": "ChannelClosed(bytes32,(address,address,address,address,address,uint40,bytes32))",
        "Deposited": "Deposited(bytes32,address,uint128,uint128)",
        "Claimed": "Claimed(bytes32,address,uint128,uint128)",
        "Settled": "Settled(address,address,address,uint128)",
        "Refunded": "Refunded(bytes32,address,uint128)",
        "WithdrawInitiated": "WithdrawInitiated(bytes32,uint128,uint40)",
        "WithdrawFinalized": "WithdrawFinalized(bytes32,address,uint128)",
    }

    for name, signature in signatures.items():
        assert event_topic(name) == "0x" + keccak(text=signature).hex()
