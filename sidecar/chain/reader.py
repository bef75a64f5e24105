"""Reads EIP-3009 state from the token contract over Ethereum JSON-RPC (web3.py,
async), one endpoint per network (CHAIN_RPC_URLS): `authorizationState(from, nonce)`,
the events that used a nonce, and transaction receipts; and a batch-settlement
channel's fields, a receiver's claimed and settled totals, and the chain's
time (the pending block's) from the x402BatchSettlement contract and the node. Judging what they mean is
the payment domain's job (payments/used_nonce.py, payments/channels/)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from web3 import AsyncHTTPProvider, AsyncWeb3
from web3.exceptions import TransactionNotFound
from x402.mechanisms.evm.batch_settlement.abi import BATCH_SETTLEMENT_ABI
from x402.mechanisms.evm.batch_settlement.constants import BATCH_SETTLEMENT_ADDRESS

from ..constants import AUTHORIZATION_CANCELED_TOPIC, AUTHORIZATION_USED_TOPIC, CHANNEL_EVENT_TOPICS
from ..payments.channels.state import Mirror
from ..payments.ports import ChainLog
from ..telemetry.chain_spans import chain_failed, chain_span

log = logging.getLogger(__name__)

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
        self._urls = dict(rpc_urls)
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
        with chain_span("authorizationState", network, self._urls[network]) as span:
            try:
                return bool(await asyncio.wait_for(call, self._timeout_s))
            except Exception as exc:  # transport, timeout, revert: all mean "could not read"
                chain_failed(span, exc)
                log.warning("chain read failed on %s: %s", network, type(exc).__name__)
                return None

    async def nonce_events(self, network: str, asset: str, payer: str, nonce: str) -> tuple[ChainLog, ...] | None:
        """The token's AuthorizationUsed and AuthorizationCanceled events for (payer,
        nonce) in the last LOG_LOOKBACK_BLOCKS blocks; None when unreadable."""
        w3 = self._clients.get(network)
        if w3 is None:
            return None

        async def find() -> list:
            latest = await w3.eth.block_number
            return await w3.eth.get_logs(
                {
                    "address": AsyncWeb3.to_checksum_address(asset),
                    "fromBlock": max(0, latest - LOG_LOOKBACK_BLOCKS),
                    "toBlock": "latest",
                    "topics": [
                        [AUTHORIZATION_USED_TOPIC, AUTHORIZATION_CANCELED_TOPIC],
                        "0x" + payer.lower().removeprefix("0x").rjust(64, "0"),
                        nonce.lower(),
                    ],
                }
            )

        with chain_span("eth_getLogs", network, self._urls[network]) as span:
            try:
                return tuple(_chain_log(entry) for entry in await asyncio.wait_for(find(), self._timeout_s))
            except Exception as exc:  # transport, timeout, a node refusing the query
                chain_failed(span, exc)
                log.warning("chain log read failed on %s: %s", network, type(exc).__name__)
                return None

    async def receipt_logs(self, network: str, transaction: str) -> tuple[ChainLog, ...] | None:
        """The receipt's logs (none for a reverted transaction); None when the
        transaction is not mined or the chain could not be read."""
        w3 = self._clients.get(network)
        if w3 is None:
            return None
        with chain_span("eth_getTransactionReceipt", network, self._urls[network]) as span:
            try:
                receipt = await asyncio.wait_for(w3.eth.get_transaction_receipt(transaction), self._timeout_s)
            except TransactionNotFound:
                return None  # pending, dropped, or never sent
            except Exception as exc:  # transport, timeout, a malformed hash
                chain_failed(span, exc)
                log.warning("chain receipt read failed on %s: %s", network, type(exc).__name__)
                return None
        if receipt["status"] != 1:
            return ()
        return tuple(_chain_log(entry) for entry in receipt["logs"])

    async def channel(self, network: str, channel_id: str) -> Mirror | None:
        w3 = self._clients.get(network)
        if w3 is None:
            return None
        contract = w3.eth.contract(address=BATCH_SETTLEMENT_ADDRESS, abi=BATCH_SETTLEMENT_ABI)
        key = bytes.fromhex(channel_id.removeprefix("0x"))

        async def read() -> Mirror:
            balance, total_claimed = await contract.functions.channels(key).call()
            _, initiated_at = await contract.functions.pendingWithdrawals(key).call()
            refund_nonce = await contract.functions.refundNonce(key).call()
            return Mirror(int(balance), int(total_claimed), int(initiated_at), int(refund_nonce))

        # Three calls of one read: one span.
        with chain_span("channel", network, self._urls[network]) as span:
            try:
                return await asyncio.wait_for(read(), self._timeout_s)
            except Exception as exc:  # transport, timeout, revert: all mean "could not read"
                chain_failed(span, exc)
                log.warning("chain channel read failed on %s: %s", network, type(exc).__name__)
                return None

    async def receiver_totals(self, network: str, receiver: str, token: str) -> tuple[int, int] | None:
        w3 = self._clients.get(network)
        if w3 is None:
            return None
        contract = w3.eth.contract(address=BATCH_SETTLEMENT_ADDRESS, abi=BATCH_SETTLEMENT_ABI)
        call = contract.functions.receivers(
            AsyncWeb3.to_checksum_address(receiver), AsyncWeb3.to_checksum_address(token)
        ).call()
        try:
            total_claimed, total_settled = await asyncio.wait_for(call, self._timeout_s)
        except Exception as exc:  # transport, timeout, revert: all mean "could not read"
            log.warning("chain receiver read failed on %s: %s", network, type(exc).__name__)
            return None
        return int(total_claimed), int(total_settled)

    async def channel_events(self, network: str, after_block: int | None) -> tuple[int, frozenset[str]] | None:
        w3 = self._clients.get(network)
        if w3 is None:
            return None

        async def find() -> tuple[int, frozenset[str]]:
            latest = await w3.eth.block_number
            if after_block is None or after_block >= latest:
                return latest, frozenset()
            logs = await w3.eth.get_logs(
                {
                    "address": BATCH_SETTLEMENT_ADDRESS,
                    "fromBlock": max(after_block + 1, latest - LOG_LOOKBACK_BLOCKS),
                    "toBlock": latest,
                    "topics": [list(CHANNEL_EVENT_TOPICS)],
                }
            )
            return latest, frozenset(_hex(entry["topics"][1]).lower() for entry in logs if len(entry["topics"]) > 1)

        try:
            return await asyncio.wait_for(find(), self._timeout_s)
        except Exception as exc:  # transport, timeout, a node refusing the query
            log.warning("chain channel events read failed on %s: %s", network, type(exc).__name__)
            return None

    async def chain_time(self, network: str) -> int | None:
        w3 = self._clients.get(network)
        if w3 is None:
            return None
        try:
            # The pending block's time is the node's now; the latest block may be older.
            block = await asyncio.wait_for(w3.eth.get_block("pending"), self._timeout_s)
        except Exception as exc:  # transport, timeout
            log.warning("chain clock read failed on %s: %s", network, type(exc).__name__)
            return None
        return int(block["timestamp"])

    async def close(self) -> None:
        for w3 in self._clients.values():
            await w3.provider.disconnect()


def _chain_log(entry: Any) -> ChainLog:
    return ChainLog(
        address=str(entry["address"]),
        topics=tuple(_hex(topic) for topic in entry["topics"]),
        data=_hex(entry["data"]),
        transaction=_hex(entry["transactionHash"]),
    )


def _hex(value: Any) -> str:
    return "0x" + bytes(value).hex() if isinstance(value, bytes | bytearray) else str(value)
