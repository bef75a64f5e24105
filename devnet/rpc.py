"""Ethereum JSON-RPC over the in-memory chain: the slice a payment reader needs.

Served at POST /rpc next to the facilitator, from the same chain, so a sidecar can ask
"was this authorization used?" or "what does channels(id) hold?" exactly as it would ask
a Base node, and read the token's and the channel contract's events with eth_getLogs.
Every call reads the latest state, whatever block tag is asked for.

`eth_sendTransaction` lets anyone holding a signed authorization have it executed
directly, as a payer can on a real chain (say, another authorization with the nonce
of a payment whose settle is still under way). The devnet models no gas or account
signatures, so `from` is taken as given; the authorization's own signature is checked.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from aiohttp import web
from eth_utils import is_address, is_hex

from .chain import Chain, Receipt, Revert, block_hash
from .evm import ZERO_ADDRESS

# JSON-RPC 2.0 error codes, plus the node convention for reverts.
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
EXECUTION_REVERTED = 3

_GAS_USED = 0xD6D8  # a typical transferWithAuthorization
_GAS_PRICE = 0x3B9ACA00


class RpcError(Exception):
    def __init__(self, code: int, message: str, data: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def to_json(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


class ChainRpc:
    """aiohttp handler answering JSON-RPC requests (single or batch) from a `Chain`."""

    def __init__(self, chain: Chain) -> None:
        self._chain = chain
        self._methods: dict[str, Callable[[list[Any]], Any]] = {
            "eth_chainId": lambda params: hex(chain.chain_id),
            "net_version": lambda params: str(chain.chain_id),
            "eth_blockNumber": lambda params: hex(chain.block_number),
            "eth_getBlockByNumber": self._eth_get_block_by_number,
            "eth_call": self._eth_call,
            "eth_getCode": self._eth_get_code,
            "eth_getTransactionReceipt": self._eth_get_transaction_receipt,
            "eth_getLogs": self._eth_get_logs,
            "eth_sendTransaction": self._eth_send_transaction,
        }

    async def handle(self, request: web.Request) -> web.Response:
        try:
            message = json.loads(await request.read())
        except (json.JSONDecodeError, UnicodeDecodeError):
            return web.json_response(_error_reply(None, RpcError(PARSE_ERROR, "parse error")))
        if isinstance(message, list):
            if not message:
                return web.json_response(_error_reply(None, RpcError(INVALID_REQUEST, "empty batch")))
            replies = [reply for item in message if (reply := self.answer(item)) is not None]
            return web.json_response(replies)
        reply = self.answer(message)
        return web.json_response(reply) if reply is not None else web.Response(status=204)

    def answer(self, message: Any) -> dict[str, Any] | None:
        """The reply to one JSON-RPC request object; None for a notification."""
        if not isinstance(message, dict):
            return _error_reply(None, RpcError(INVALID_REQUEST, "invalid request"))
        request_id = message.get("id")
        if not isinstance(message.get("method"), str):
            return _error_reply(request_id, RpcError(INVALID_REQUEST, "invalid request"))
        params = message.get("params", [])
        try:
            method = self._methods.get(message["method"])
            if method is None:
                raise RpcError(METHOD_NOT_FOUND, f"the method {message['method']} does not exist")
            if not isinstance(params, list):
                raise RpcError(INVALID_PARAMS, "params must be an array")
            result = method(params)
        except RpcError as error:
            reply = _error_reply(request_id, error)
        else:
            reply = {"jsonrpc": "2.0", "id": request_id, "result": result}
        return reply if "id" in message else None

    def _eth_call(self, params: list[Any]) -> str:
        call, to, data = _call_param(params, "eth_call")
        sender = _address_param(call.get("from", ZERO_ADDRESS))
        try:
            return "0x" + self._chain.call(to, data, sender).hex()
        except Revert as revert:
            raise _reverted(revert) from None

    def _eth_send_transaction(self, params: list[Any]) -> str:
        """Broadcast and mine at once; a transaction that would revert is refused."""
        call, to, data = _call_param(params, "eth_sendTransaction")
        sender = _address_param(call.get("from"))
        try:
            return self._chain.send_transaction(sender, to, data)
        except Revert as revert:
            raise _reverted(revert) from None

    def _eth_get_code(self, params: list[Any]) -> str:
        return "0x" + self._chain.code_at(_address_param(_param(params, 0))).hex()

    def _eth_get_transaction_receipt(self, params: list[Any]) -> dict[str, Any] | None:
        tx_hash = _param(params, 0)
        if not isinstance(tx_hash, str) or not is_hex(tx_hash) or len(tx_hash.removeprefix("0x")) != 64:
            raise RpcError(INVALID_PARAMS, "expected a 32-byte transaction hash")
        receipt = self._chain.receipt(tx_hash)
        return None if receipt is None else receipt_json(receipt)

    def _eth_get_block_by_number(self, params: list[Any]) -> dict[str, Any] | None:
        """The block's number, hash and time (no transactions): how a reader learns the
        chain's time, which tests may have moved ahead of the wall clock. "pending" is
        the block a transaction sent now would be mined in: its time is the chain's now
        (the devnet mines only when something happens, so "latest" may be old)."""
        if _param(params, 0) == "pending":
            number = self._chain.block_number + 1
            return {
                "number": hex(number),
                "hash": None,
                "parentHash": block_hash(number - 1),
                "timestamp": hex(self._chain.timestamp),
                "transactions": [],
            }
        number = _block_param(_param(params, 0), self._chain.block_number)
        timestamp = self._chain.block_timestamp(number)
        if timestamp is None:
            return None
        return {
            "number": hex(number),
            "hash": block_hash(number),
            "parentHash": block_hash(number - 1) if number > 0 else "0x" + "00" * 32,
            "timestamp": hex(timestamp),
            "transactions": [],
        }
    def _eth_get_logs(self, params: list[Any]) -> list[dict[str, Any]]:
        query = _param(params, 0)
        if not isinstance(query, dict):
            raise RpcError(INVALID_PARAMS, "eth_getLogs expects a filter object")
        latest = self._chain.block_number
        from_block = _block_param(query.get("fromBlock", "earliest"), latest)
        to_block = _block_param(query.get("toBlock", "latest"), latest)
        address = query.get("address") or []
        addresses = {a.lower() for a in ([address] if isinstance(address, str) else address)}
        wanted = [_topic_filter(t) for t in query.get("topics") or []]
        matches = []
        for receipt in self._chain.receipts_between(from_block, to_block):
            for log in receipt_json(receipt)["logs"]:
                if addresses and log["address"].lower() not in addresses:
                    continue
                topics = [t.lower() for t in log["topics"]]
                if all(w is None or (i < len(topics) and topics[i] in w) for i, w in enumerate(wanted)):
                    matches.append(log)
        return matches


def _topic_filter(value: Any) -> set[str] | None:
    """One position of an eth_getLogs topic filter: null matches anything, a list any of
    its topics."""
    if value is None:
        return None
    alternatives = value if isinstance(value, list) else [value]
    if not all(isinstance(t, str) and is_hex(t) for t in alternatives):
        raise RpcError(INVALID_PARAMS, "topics must be hex strings, lists of them, or null")
    return {t.lower() for t in alternatives}


def _call_param(params: list[Any], method: str) -> tuple[dict[str, Any], str, bytes]:
    """(call object, to, calldata) of an eth_call / eth_sendTransaction."""
    call = _param(params, 0)
    if not isinstance(call, dict):
        raise RpcError(INVALID_PARAMS, f"{method} expects a call object")
    to = _address_param(call.get("to"))
    data = call.get("data", call.get("input", "0x"))
    if not isinstance(data, str) or not is_hex(data) or len(data.removeprefix("0x")) % 2:
        raise RpcError(INVALID_PARAMS, "call data must be hex bytes")
    return call, to, bytes.fromhex(data.removeprefix("0x"))


def _reverted(revert: Revert) -> RpcError:
    return RpcError(EXECUTION_REVERTED, str(revert), "0x" + revert.data.hex())


def _block_param(value: Any, latest: int) -> int:
    if value in ("latest", "pending", "safe", "finalized"):
        return latest
    if value == "earliest":
        return 0
    if isinstance(value, str) and is_hex(value):
        return int(value, 16)
    raise RpcError(INVALID_PARAMS, "expected a block number or tag")


def receipt_json(receipt: Receipt) -> dict[str, Any]:
    """A receipt in the JSON shape nodes answer eth_getTransactionReceipt with."""
    common = {
        "blockHash": receipt.block_hash,
        "blockNumber": hex(receipt.block_number),
        "transactionHash": receipt.tx_hash,
        "transactionIndex": "0x0",
    }
    return {
        **common,
        "from": receipt.sender,
        "to": receipt.to,
        "contractAddress": None,
        "cumulativeGasUsed": hex(_GAS_USED),
        "gasUsed": hex(_GAS_USED),
        "effectiveGasPrice": hex(_GAS_PRICE),
        "logsBloom": "0x" + "00" * 256,
        "status": hex(receipt.status),
        "type": "0x2",
        "logs": [
            {
                **common,
                "address": log.address,
                "topics": list(log.topics),
                "data": log.data,
                "logIndex": hex(index),
                "removed": False,
            }
            for index, log in enumerate(receipt.logs)
        ],
    }


def _error_reply(request_id: Any, error: RpcError) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "error": error.to_json()}


def _param(params: list[Any], index: int) -> Any:
    if len(params) <= index:
        raise RpcError(INVALID_PARAMS, f"missing value for required argument {index}")
    return params[index]


def _address_param(value: Any) -> str:
    if not isinstance(value, str) or not is_address(value):
        raise RpcError(INVALID_PARAMS, "expected a 20-byte hex address")
    return value
