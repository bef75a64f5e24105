"""Reads EIP-3009 `authorizationState(from, nonce)` from the token contract over
Ethereum JSON-RPC (web3.py, async), one endpoint per network (CHAIN_RPC_URLS)."""

from __future__ import annotations

import asyncio
import logging

from web3 import AsyncHTTPProvider, AsyncWeb3

log = logging.getLogger(__name__)

AUTHORIZATION_STATE_ABI = [
    {
        "type": "function",
        "name": "authorizationState",
        "stateMutability": "view",
        "inputs": [{"name": "authorizer", "type": "address"}, {"name": "nonce", "type": "bytes32"}],
        "outputs": [{"name": "", "type": "bool"}],
    }
]


class Web3ChainReader:
    def __init__(self, rpc_urls: dict[str, str], timeout_s: float) -> None:
        self._timeout_s = timeout_s
        self._clients = {
            network: AsyncWeb3(AsyncHTTPProvider(url, request_kwargs={"timeout": timeout_s}))
            for network, url in rpc_urls.items()
        }

    def configured(self, network: str) -> bool:
        return network in self._clients

    async def authorization_used(self, network: str, asset: str, payer: str, nonce: str) -> bool | None:
        w3 = self._clients.get(network)
        if w3 is None:
            return None
        contract = w3.eth.contract(address=AsyncWeb3.to_checksum_address(asset), abi=AUTHORIZATION_STATE_ABI)
        call = contract.functions.authorizationState(
            AsyncWeb3.to_checksum_address(payer), bytes.fromhex(nonce.removeprefix("0x"))
        ).call()
        try:
            return bool(await asyncio.wait_for(call, self._timeout_s))
        except Exception as exc:  # transport, timeout, revert: all mean "could not read"
            log.warning("chain read failed on %s: %s", network, type(exc).__name__)
            return None

    async def close(self) -> None:
        for w3 in self._clients.values():
            await w3.provider.disconnect()
