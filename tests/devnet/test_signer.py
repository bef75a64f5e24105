"""ChainSigner: the SDK's FacilitatorEvmSigner protocol answered by the chain."""

from __future__ import annotations

import pytest
from x402.mechanisms.evm.batch_settlement.constants import (
    BATCH_SETTLEMENT_ADDRESS,
    ERC3009_DEPOSIT_COLLECTOR_ADDRESS,
)
from x402.mechanisms.evm.constants import (
    AUTHORIZATION_STATE_ABI,
    BALANCE_OF_ABI,
    ERR_NONCE_ALREADY_USED,
    NAME_ABI,
    TRANSFER_WITH_AUTHORIZATION_BYTES_ABI,
    VERSION_ABI,
)
from x402.mechanisms.evm.exact.eip3009_utils import diagnose_eip3009_simulation_failure
from x402.mechanisms.evm.multicall import MulticallCall, multicall
from x402.mechanisms.evm.types import ExactEIP3009Authorization

from devnet.chain import USDC_ADDRESS, Chain
from devnet.signer import ChainSigner, ReceiptNotFound
from devnet.wallets import FACILITATOR_ADDRESS, INITIAL_PAYER_BALANCE, MERCHANT_ADDRESS, payer_account
from tests.devnet.support import signed_transfer

PAYER = payer_account(0).address


def _send(signer, transfer):
    return signer.write_contract(
        USDC_ADDRESS,
        TRANSFER_WITH_AUTHORIZATION_BYTES_ABI,
        "transferWithAuthorization",
        transfer.from_address,
        transfer.to,
        transfer.value,
        transfer.valid_after,
        transfer.valid_before,
        transfer.nonce,
        transfer.signature,
    )


def test_reads_decode_to_python_values():
    signer = ChainSigner(Chain())

    assert signer.read_contract(USDC_ADDRESS, BALANCE_OF_ABI, "balanceOf", PAYER) == INITIAL_PAYER_BALANCE
    assert signer.read_contract(USDC_ADDRESS, NAME_ABI, "name") == "USDC"
    assert signer.read_contract(USDC_ADDRESS, VERSION_ABI, "version") == "2"
    assert signer.read_contract(USDC_ADDRESS, AUTHORIZATION_STATE_ABI, "authorizationState", PAYER, b"\x01" * 32) is False


def test_only_the_contracts_have_code():
    signer = ChainSigner(Chain())

    assert signer.get_code(USDC_ADDRESS) != b""
    assert signer.get_code(BATCH_SETTLEMENT_ADDRESS) != b""
    assert signer.get_code(ERC3009_DEPOSIT_COLLECTOR_ADDRESS) != b""
    assert signer.get_code(PAYER) == b""
    assert signer.get_addresses() == [FACILITATOR_ADDRESS]
    assert signer.get_chain_id() == 84532


def test_a_written_transfer_has_a_receipt_with_its_log():
    signer = ChainSigner(Chain())

    receipt = signer.wait_for_transaction_receipt(_send(signer, signed_transfer()))

    assert receipt.status == 1
    assert receipt.logs[0]["address"] == USDC_ADDRESS


def test_a_held_broadcast_has_no_receipt_until_mined():
    chain = Chain()
    signer = ChainSigner(chain)

    with signer.broadcasts(mine_after=None) as sent:
        tx_hash = _send(signer, signed_transfer())

    assert sent.hashes == [tx_hash]
    with pytest.raises(ReceiptNotFound):
        signer.wait_for_transaction_receipt(tx_hash)
    chain.mine(tx_hash)
    assert signer.wait_for_transaction_receipt(tx_hash).status == 1


def test_multicall_reports_each_call_and_decodes_reverts():
    signer = ChainSigner(Chain())
    failing = signed_transfer(value=INITIAL_PAYER_BALANCE + 1)

    balance, transfer = multicall(
        signer,
        [
            MulticallCall(address=USDC_ADDRESS, abi=BALANCE_OF_ABI, function_name="balanceOf", args=(PAYER,)),
            MulticallCall(address=USDC_ADDRESS, call_data=failing.calldata),
        ],
    )

    assert (balance.success, balance.result) == (True, INITIAL_PAYER_BALANCE)
    assert transfer.success is False
    assert str(transfer.error) == "execution reverted: ERC20: transfer amount exceeds balance"


def test_the_sdk_diagnosis_sees_a_used_nonce():
    signer = ChainSigner(Chain())
    transfer = signed_transfer()
    _send(signer, transfer)
    authorization = ExactEIP3009Authorization(
        from_address=PAYER,
        to=MERCHANT_ADDRESS,
        value="1000",
        valid_after="0",
        valid_before=str(transfer.valid_before),
        nonce="0x" + transfer.nonce.hex(),
    )

    reason = diagnose_eip3009_simulation_failure(signer, USDC_ADDRESS, authorization, 1000, "USDC", "2")

    assert reason == ERR_NONCE_ALREADY_USED
