"""Reads EIP-3009 `authorizationState(from, nonce)` from the token contract over
Ethereum JSON-RPC (web3.py, async), one endpoint per network (CHAIN_RPC_URLS)."""

from __future__ import annotations

import asyncio
import logging

from web3 import AsyncHTTPProvider, AsyncWeb3

log = logging.getLogger(__name__)

# FiatToken's AuthorizationUsed(address indexed authorizer, bytes32 indexed nonce).
AUTHORIZATION_USED_TOPIC = "0x" + AsyncWeb3.keccak(text="AuthorizationUsed(address,bytes32)").hex().removeprefix("0x")
# FiatToken's AuthorizationCanceled(address indexed authorizer, bytes32 indexed nonce):
# the payer used the nonce up without a transfer.
AUTHORIZATION_CANCELED_TOPIC = (
    "0x" + AsyncWeb3.keccak(text="AuthorizationCanceled(address,bytes32)").hex().removeprefix("0x")
)
# How far back to look for the events; public nodes refuse very wide log queries.
LOG_LOOKBACK_BLOCKS = 10_000

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

    async def authorization_transaction(self, network: str, asset: str, payer: str, nonce: str) -> str:
        """The transaction that used the nonce, from its AuthorizationUsed event; "" if not found."""
        try:
            logs = await self._nonce_logs(network, asset, payer, nonce, AUTHORIZATION_USED_TOPIC)
        except Exception as exc:  # the transaction is a courtesy for the receipt, never required
            log.info("could not find the transaction of a used authorization on %s: %s", network, type(exc).__name__)
            return ""
        return logs[-1]["transactionHash"].to_0x_hex() if logs else ""

    async def authorization_canceled(self, network: str, asset: str, payer: str, nonce: str) -> bool | None:
        """Whether the payer canceled the nonce (an AuthorizationCanceled event); None when unreadable."""
        try:
            return bool(await self._nonce_logs(network, asset, payer, nonce, AUTHORIZATION_CANCELED_TOPIC))
        except Exception as exc:  # transport, timeout, a node refusing the query
            log.warning("chain log read failed on %s: %s", network, type(exc).__name__)
            return None

    async def _nonce_logs(self, network: str, asset: str, payer: str, nonce: str, topic: str) -> list:
        """The token's recent `topic` events for (payer, nonce); raises when the chain cannot be read."""
        w3 = self._clients.get(network)
        if w3 is None:
            raise LookupError(f"no RPC endpoint for {network}")

        async def find() -> list:
            latest = await w3.eth.block_number
            return await w3.eth.get_logs(
                {
                    "address": AsyncWeb3.to_checksum_address(asset),
                    "fromBlock": max(0, latest - LOG_LOOKBACK_BLOCKS),
                    "toBlock": "latest",
                    "topics": [topic, "0x" + payer.lower().removeprefix("0x").rjust(64, "0"), nonce.lower()],
                }
            )

        return await asyncio.wait_for(find(), self._timeout_s)

    async def close(self) -> None:
        for w3 in self._clients.values():
            await w3.provider.disconnect()
