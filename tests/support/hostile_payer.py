"""A hostile payer: he signs another EIP-3009 authorization with the nonce of a
payment he already handed over (say 1 unit to himself) and has the chain execute it
directly — JSON-RPC `eth_sendTransaction` at the devnet's /rpc — as he could on a
real chain while our settle of his payment is still under way."""

from __future__ import annotations

import aiohttp
from x402.http.utils import decode_payment_signature_header

from devnet.chain import USDC_ADDRESS
from devnet.wallets import PAYER_KEYS, account
from tests.devnet.support import signed_transfer


def payment_nonce(header: str) -> tuple[str, str]:
    """(payer, nonce) of a v2 PAYMENT-SIGNATURE value."""
    authorization = decode_payment_signature_header(header).payload["authorization"]
    return authorization["from"], authorization["nonce"]


async def spend_nonce_elsewhere(rpc_url: str, header: str, *, to: str | None = None, value: int = 1) -> str:
    """Execute, as the payer of `header`, another authorization with its nonce:
    `value` atomic units to `to` (default: the payer himself). Returns the transaction."""
    payer, nonce = payment_nonce(header)
    (wallet,) = [account(key) for key in PAYER_KEYS if account(key).address == payer]
    transfer = signed_transfer(payer=wallet, to=to or wallet.address, value=value, nonce=bytes.fromhex(nonce[2:]))
    call = {"from": wallet.address, "to": USDC_ADDRESS, "data": "0x" + transfer.calldata.hex()}
    request = {"jsonrpc": "2.0", "id": 1, "method": "eth_sendTransaction", "params": [call]}
    async with aiohttp.ClientSession() as session, session.post(rpc_url, json=request) as response:
        answer = await response.json()
    if "error" in answer:
        raise AssertionError(f"the chain refused the payer's own authorization: {answer['error']}")
    return answer["result"]
