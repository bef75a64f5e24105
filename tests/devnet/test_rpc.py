"""JSON-RPC at /rpc: what web3.py's AsyncWeb3 needs to read payments off the chain."""

from __future__ import annotations

import pytest
from web3 import AsyncHTTPProvider, AsyncWeb3
from web3.exceptions import ContractLogicError, TransactionNotFound
from x402.mechanisms.evm.constants import (
    AUTHORIZATION_STATE_ABI,
    BALANCE_OF_ABI,
    NAME_ABI,
    TRANSFER_WITH_AUTHORIZATION_BYTES_ABI,
    VERSION_ABI,
)

from devnet.chain import AUTHORIZATION_CANCELED_TOPIC, AUTHORIZATION_USED_TOPIC, TRANSFER_TOPIC, USDC_ADDRESS
from devnet.wallets import INITIAL_PAYER_BALANCE, MERCHANT_ADDRESS, payer_account
from tests.devnet.support import signed_transfer

PAYER = payer_account(0).address
DECIMALS_ABI = [
    {
        "inputs": [],
        "name": "decimals",
        "outputs": [{"type": "uint8"}],
        "stateMutability": "view",
        "type": "function",
    }
]


@pytest.fixture
async def w3(devnet):
    web3 = AsyncWeb3(AsyncHTTPProvider(devnet.url + "/rpc"))
    yield web3
    await web3.provider.disconnect()


def usdc(w3, abi):
    return w3.eth.contract(address=USDC_ADDRESS, abi=abi)


async def test_authorization_state_and_receipt_through_async_web3(devnet, w3, requirements, sign):
    payload = await sign(requirements)
    nonce = bytes.fromhex(payload.payload["authorization"]["nonce"].removeprefix("0x"))
    state = usdc(w3, AUTHORIZATION_STATE_ABI).functions.authorizationState(PAYER, nonce)

    assert await state.call() is False
    _, settled = await devnet.settle(payload, requirements)
    assert await state.call() is True

    receipt = await w3.eth.get_transaction_receipt(settled["transaction"])
    assert receipt["status"] == 1
    assert receipt["transactionHash"].to_0x_hex() == settled["transaction"]
    assert receipt["blockNumber"] == await w3.eth.block_number
    used, log = receipt["logs"]
    assert used["topics"][0].to_0x_hex() == AUTHORIZATION_USED_TOPIC
    assert used["topics"][2] == nonce
    assert log["address"] == USDC_ADDRESS
    assert log["topics"][0].to_0x_hex() == TRANSFER_TOPIC
    assert int.from_bytes(log["data"]) == 1000

    # The transaction of a used nonce can be found by its AuthorizationUsed event.
    found = await w3.eth.get_logs(
        {"address": USDC_ADDRESS, "fromBlock": 0, "topics": [AUTHORIZATION_USED_TOPIC, None, "0x" + nonce.hex()]}
    )
    assert [entry["transactionHash"].to_0x_hex() for entry in found] == [settled["transaction"]]


async def test_token_reads_through_async_web3(w3):
    assert await w3.eth.chain_id == 84532
    assert await usdc(w3, BALANCE_OF_ABI).functions.balanceOf(PAYER).call() == INITIAL_PAYER_BALANCE
    assert await usdc(w3, NAME_ABI).functions.name().call() == "USDC"
    assert await usdc(w3, VERSION_ABI).functions.version().call() == "2"
    assert await usdc(w3, DECIMALS_ABI).functions.decimals().call() == 6
    assert len(await w3.eth.get_code(USDC_ADDRESS)) > 0
    assert await w3.eth.get_code(MERCHANT_ADDRESS) == b""


async def test_an_unknown_or_pending_transaction_has_no_receipt(devnet, w3):
    held = devnet.chain.send_transaction(
        MERCHANT_ADDRESS, USDC_ADDRESS, signed_transfer().calldata, mine_after=None
    )

    for tx_hash in (held, "0x" + "ab" * 32):
        with pytest.raises(TransactionNotFound):
            await w3.eth.get_transaction_receipt(tx_hash)


async def test_a_reverting_call_surfaces_the_revert_reason(w3):
    transfer = signed_transfer(value=INITIAL_PAYER_BALANCE + 1)
    call = usdc(w3, TRANSFER_WITH_AUTHORIZATION_BYTES_ABI).functions.transferWithAuthorization(
        transfer.from_address,
        transfer.to,
        transfer.value,
        transfer.valid_after,
        transfer.valid_before,
        transfer.nonce,
        transfer.signature,
    )

    with pytest.raises(ContractLogicError, match="ERC20: transfer amount exceeds balance"):
        await call.call()


async def rpc(devnet, body):
    async with devnet.http.post(devnet.url + "/rpc", json=body) as response:
        assert response.status == 200
        return await response.json()


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ({"jsonrpc": "2.0", "id": 1, "method": "eth_sendRawTransaction", "params": ["0x00"]}, -32601),
        ({"jsonrpc": "2.0", "id": 1, "method": "eth_getCode", "params": ["0x12"]}, -32602),
        ({"jsonrpc": "2.0", "id": 1, "method": "eth_getCode", "params": {"a": 1}}, -32602),
        ({"jsonrpc": "2.0", "id": 1, "method": "eth_call", "params": []}, -32602),
        ({"jsonrpc": "2.0", "id": 1, "method": "eth_call", "params": [{"to": USDC_ADDRESS, "data": "0xzz"}]}, -32602),
        ({"jsonrpc": "2.0", "id": 1, "method": "eth_call", "params": [{"to": USDC_ADDRESS, "data": "0x123"}]}, -32602),
        ({"jsonrpc": "2.0", "id": 1, "method": "eth_sendTransaction", "params": [{"to": USDC_ADDRESS}]}, -32602),
        ({"jsonrpc": "2.0", "id": 1, "method": "eth_getTransactionReceipt", "params": ["0x12"]}, -32602),
        ({"jsonrpc": "2.0", "id": 1}, -32600),
        ({"jsonrpc": "2.0", "id": 1, "method": "eth_call", "params": [{"to": USDC_ADDRESS, "from": "0x12"}]}, -32602),
        ({"jsonrpc": "2.0", "id": 1, "method": "eth_getLogs", "params": [{"topics": [7]}]}, -32602),
        ({"jsonrpc": "2.0", "id": 1, "method": "eth_getLogs", "params": [{"topics": [["0xab", None]]}]}, -32602),
        ({"jsonrpc": "2.0", "id": 1, "method": "eth_getBlockByNumber", "params": ["soon", False]}, -32602),
        ({"jsonrpc": "2.0", "id": 1, "method": "eth_call", "params": [{"to": USDC_ADDRESS, "data": "0x12345678"}]}, 3),
    ],
)
async def test_bad_requests_get_json_rpc_errors(devnet, message, code):
    reply = await rpc(devnet, message)

    assert reply["error"]["code"] == code
    assert reply["id"] == message.get("id")


async def test_unparseable_body_is_a_parse_error(devnet):
    async with devnet.http.post(devnet.url + "/rpc", data=b"{oops") as response:
        assert (await response.json())["error"]["code"] == -32700


async def test_batches_are_answered_in_order(devnet):
    replies = await rpc(
        devnet,
        [
            {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []},
            {"jsonrpc": "2.0", "id": 2, "method": "eth_blockNumber", "params": []},
        ],
    )

    assert [reply["id"] for reply in replies] == [1, 2]
    assert replies[0]["result"] == hex(84532)


def send_transaction(transfer, sender: str = PAYER) -> dict:
    call = {"from": sender, "to": USDC_ADDRESS, "data": "0x" + transfer.calldata.hex()}
    return {"jsonrpc": "2.0", "id": 7, "method": "eth_sendTransaction", "params": [call]}


async def test_a_payer_can_have_his_own_authorization_executed(devnet):
    """What a hostile payer does while a settle of his payment is under way: another
    authorization with the same nonce, sent to the chain himself."""
    nonce = b"\x07" * 32
    transfer = signed_transfer(to=PAYER, value=1, nonce=nonce)

    tx_hash = (await rpc(devnet, send_transaction(transfer)))["result"]

    receipt = devnet.chain.receipt(tx_hash)
    assert receipt is not None and receipt.status == 1
    assert devnet.chain.authorization_state(PAYER, nonce) is True
    assert devnet.chain.balance_of(PAYER) == INITIAL_PAYER_BALANCE  # 1 unit to himself
    # The nonce is spent: the payment it was meant for can no longer be executed.
    refused = await rpc(devnet, send_transaction(signed_transfer(value=1000, nonce=nonce)))
    assert refused["error"]["code"] == 3
    assert "authorization is used or canceled" in refused["error"]["message"]
    assert devnet.chain.transfers_applied == 1


async def test_a_forged_authorization_is_refused(devnet):
    forged = signed_transfer(signer=payer_account(1))
    reply = await rpc(devnet, send_transaction(forged))
    assert reply["error"]["code"] == 3 and "invalid signature" in reply["error"]["message"]
    assert devnet.chain.transfers_applied == 0


async def test_get_logs_matches_any_of_a_list_of_topics(devnet, w3):
    used, canceled = signed_transfer(), b"\x09" * 32
    devnet.chain.send_transaction(PAYER, USDC_ADDRESS, used.calldata)
    devnet.chain.cancel_authorization(PAYER, canceled)
    payer_topic = "0x" + PAYER.lower().removeprefix("0x").rjust(64, "0")

    async def found(nonce: bytes) -> list[str]:
        topics = [[AUTHORIZATION_USED_TOPIC, AUTHORIZATION_CANCELED_TOPIC], payer_topic, "0x" + nonce.hex()]
        logs = await w3.eth.get_logs({"address": USDC_ADDRESS, "fromBlock": 0, "topics": topics})
        return [log["topics"][0].to_0x_hex() for log in logs]

    assert await found(used.nonce) == [AUTHORIZATION_USED_TOPIC]
    assert await found(canceled) == [AUTHORIZATION_CANCELED_TOPIC]
    assert await found(b"\x0a" * 32) == []
