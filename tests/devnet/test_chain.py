"""The simulated USDC: FiatTokenV2's rules, wording and receipts."""

from __future__ import annotations

from dataclasses import replace

import pytest
from x402.mechanisms.evm.constants import (
    ERR_INSUFFICIENT_BALANCE,
    ERR_INVALID_SIGNATURE,
    ERR_NONCE_ALREADY_USED,
    ERR_VALID_AFTER_FUTURE,
    ERR_VALID_BEFORE_EXPIRED,
)
from x402.mechanisms.evm.exact.eip3009_utils import (
    parse_eip3009_transfer_error,
    verify_eip3009_transfer_event,
)
from x402.mechanisms.evm.utils import is_contract_revert

from devnet.chain import (
    REVERT_EXCEEDS_BALANCE,
    REVERT_EXPIRED,
    REVERT_INVALID_SIGNATURE,
    REVERT_NOT_YET_VALID,
    REVERT_USED,
    USDC_ADDRESS,
    Chain,
    Revert,
)
from devnet.wallets import (
    FACILITATOR_ADDRESS,
    INITIAL_PAYER_BALANCE,
    MERCHANT_ADDRESS,
    payer_account,
)
from tests.devnet.support import Clock, signed_transfer

PAYER = payer_account(0)


def test_payers_start_funded_and_others_empty():
    chain = Chain()
    assert chain.balance_of(payer_account(3).address) == INITIAL_PAYER_BALANCE
    assert chain.balance_of(MERCHANT_ADDRESS) == 0


def test_a_transfer_moves_the_balance_and_logs_an_erc20_transfer():
    chain = Chain()
    transfer = signed_transfer()

    tx_hash = chain.send_transaction(FACILITATOR_ADDRESS, USDC_ADDRESS, transfer.calldata)

    receipt = chain.receipt(tx_hash)
    assert receipt.status == 1
    assert chain.balance_of(PAYER.address) == INITIAL_PAYER_BALANCE - 1000
    assert chain.balance_of(MERCHANT_ADDRESS) == 1000
    assert chain.authorization_state(PAYER.address, transfer.nonce) is True
    logs = [{"address": log.address, "topics": list(log.topics), "data": log.data} for log in receipt.logs]
    assert verify_eip3009_transfer_event(
        logs, USDC_ADDRESS, from_address=PAYER.address, to=MERCHANT_ADDRESS, value=1000
    )


def _expired(clock):
    return signed_transfer(valid_before=int(clock.now) - 1)


def _not_yet_valid(clock):
    return signed_transfer(valid_after=int(clock.now) + 60)


def _signed_by_someone_else(clock):
    return signed_transfer(signer=payer_account(1))


def _more_than_the_balance(clock):
    return signed_transfer(value=INITIAL_PAYER_BALANCE + 1)


@pytest.mark.parametrize(
    ("make", "reason", "sdk_code"),
    [
        (_expired, REVERT_EXPIRED, ERR_VALID_BEFORE_EXPIRED),
        (_not_yet_valid, REVERT_NOT_YET_VALID, ERR_VALID_AFTER_FUTURE),
        (_signed_by_someone_else, REVERT_INVALID_SIGNATURE, ERR_INVALID_SIGNATURE),
        (_more_than_the_balance, REVERT_EXCEEDS_BALANCE, ERR_INSUFFICIENT_BALANCE),
    ],
)
def test_refused_transfers_revert_in_fiat_token_words(make, reason, sdk_code):
    clock = Clock()
    chain = Chain(clock=clock)

    with pytest.raises(Revert) as raised:
        chain.send_transaction(FACILITATOR_ADDRESS, USDC_ADDRESS, make(clock).calldata)

    assert raised.value.reason == reason
    assert str(raised.value) == f"execution reverted: {reason}"
    assert is_contract_revert(raised.value)
    assert parse_eip3009_transfer_error(raised.value) == sdk_code
    assert chain.transfers_applied == 0
    assert chain.balance_of(PAYER.address) == INITIAL_PAYER_BALANCE


def test_a_used_authorization_is_refused():
    chain = Chain()
    transfer = signed_transfer()
    chain.send_transaction(FACILITATOR_ADDRESS, USDC_ADDRESS, transfer.calldata)

    with pytest.raises(Revert) as raised:
        chain.send_transaction(FACILITATOR_ADDRESS, USDC_ADDRESS, transfer.calldata)

    assert raised.value.reason == REVERT_USED
    assert parse_eip3009_transfer_error(raised.value) == ERR_NONCE_ALREADY_USED
    assert chain.transfers_applied == 1


def test_a_high_s_signature_is_refused():
    # Same signature, malleated to (r, n - s, v ^ 1): valid for ecrecover, refused by the token.
    n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    transfer = signed_transfer()
    r, s, v = transfer.signature[:32], int.from_bytes(transfer.signature[32:64]), transfer.signature[64]
    malleated = r + (n - s).to_bytes(32) + bytes([55 - v])
    chain = Chain()

    with pytest.raises(Revert, match="invalid signature"):
        chain.call(USDC_ADDRESS, replace(transfer, signature=malleated).calldata)


def test_call_simulates_without_changing_state():
    chain = Chain()
    transfer = signed_transfer()

    assert chain.call(USDC_ADDRESS, transfer.calldata) == b""

    assert chain.transfers_applied == 0
    assert chain.authorization_state(PAYER.address, transfer.nonce) is False


def test_garbage_calldata_reverts():
    with pytest.raises(Revert):
        Chain().call(USDC_ADDRESS, b"\x84\xb0\x19\x6e" + b"\x01" * 7)


def test_a_delayed_transaction_is_mined_when_due():
    clock = Clock()
    chain = Chain(clock=clock)

    tx_hash = chain.send_transaction(
        FACILITATOR_ADDRESS, USDC_ADDRESS, signed_transfer(now=clock.now).calldata, mine_after=5.0
    )

    assert chain.receipt(tx_hash) is None
    assert chain.is_pending(tx_hash)
    assert chain.balance_of(MERCHANT_ADDRESS) == 0
    clock.now += 5
    assert chain.receipt(tx_hash).status == 1
    assert chain.balance_of(MERCHANT_ADDRESS) == 1000


def test_a_held_transaction_waits_for_an_explicit_mine():
    chain = Chain()
    tx_hash = chain.send_transaction(
        FACILITATOR_ADDRESS, USDC_ADDRESS, signed_transfer().calldata, mine_after=None
    )
    assert chain.receipt(tx_hash) is None
    assert chain.pending() == [tx_hash]

    receipt = chain.mine(tx_hash)

    assert receipt.status == 1
    assert chain.pending() == []
    assert chain.receipt(tx_hash) == receipt
    assert chain.transactions()[0].tx_hash == tx_hash


def test_a_held_transfer_whose_nonce_was_used_meanwhile_is_mined_reverted():
    chain = Chain()
    transfer = signed_transfer()
    held = chain.send_transaction(FACILITATOR_ADDRESS, USDC_ADDRESS, transfer.calldata, mine_after=None)
    chain.send_transaction(FACILITATOR_ADDRESS, USDC_ADDRESS, transfer.calldata)

    receipt = chain.mine(held)

    assert receipt.status == 0
    assert receipt.logs == ()
    assert chain.transfers_applied == 1
    assert chain.balance_of(MERCHANT_ADDRESS) == 1000
