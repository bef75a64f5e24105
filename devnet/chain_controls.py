"""Devnet-only endpoints that act on the chain the way a payer or a test would.

- GET  /_devnet/clock                        {"timestamp"}: the chain's block time
- POST /_devnet/clock {"advance_s"}          move block time forward (a withdraw delay passes)
- GET  /_devnet/channels/{channelId}         the channel contract's state for one channel
- POST /_devnet/channels/initiate-withdraw   {"channelConfig", "amount", "from"?}
- POST /_devnet/channels/finalize-withdraw   {"channelConfig", "from"?}

The withdraw calls are transactions sent by `from` (default: the channel's payer), mined
at once; the contract decides whether that sender may make them. A call the contract
refuses is answered 409 `execution_reverted` with the revert, and nothing is sent. (The
sender's transaction signature is not modelled: these exist so tests can play the payer.)
"""

from __future__ import annotations

import json
import re
from typing import Any

from aiohttp import web
from eth_abi.exceptions import EncodingError
from eth_utils import is_address, to_checksum_address
from x402.mechanisms.evm.batch_settlement.abi import BATCH_SETTLEMENT_ABI
from x402.mechanisms.evm.batch_settlement.constants import BATCH_SETTLEMENT_ADDRESS
from x402.mechanisms.evm.batch_settlement.facilitator.utils import to_contract_channel_config
from x402.mechanisms.evm.batch_settlement.types import ChannelConfig
from x402.mechanisms.evm.multicall import encode_contract_call

from .chain import Chain, Revert

_CHANNEL_ID = re.compile(r"^0x[0-9a-fA-F]{64}$")
_UINT = re.compile(r"^[0-9]{1,40}$")
# Far enough for the longest withdraw delay (30 days), short of nonsense.
MAX_ADVANCE_S = 366 * 24 * 3600


class _Refused(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class ChainControls:
    """The routes above, over one chain."""

    def __init__(self, chain: Chain) -> None:
        self._chain = chain

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/_devnet/clock", self._refusing(self._clock)),
            web.post("/_devnet/clock", self._refusing(self._advance_clock)),
            web.get("/_devnet/channels/{channel_id}", self._refusing(self._channel)),
            web.post("/_devnet/channels/initiate-withdraw", self._refusing(self._initiate_withdraw)),
            web.post("/_devnet/channels/finalize-withdraw", self._refusing(self._finalize_withdraw)),
        ]

    @staticmethod
    def _refusing(handler: Any) -> Any:
        async def answer(request: web.Request) -> web.Response:
            try:
                return web.json_response(await handler(request))
            except _Refused as refused:
                body = {"error": {"code": refused.code, "message": refused.message}}
                return web.json_response(body, status=refused.status)

        return answer

    async def _clock(self, request: web.Request) -> dict[str, Any]:
        return {"timestamp": self._chain.timestamp}

    async def _advance_clock(self, request: web.Request) -> dict[str, Any]:
        seconds = (await _body(request)).get("advance_s")
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 <= seconds <= MAX_ADVANCE_S:
            raise _Refused(400, "invalid_request", f"advance_s must be a number of seconds from 0 to {MAX_ADVANCE_S}")
        return {"timestamp": self._chain.advance_time(seconds)}

    async def _channel(self, request: web.Request) -> dict[str, Any]:
        channel_id = request.match_info["channel_id"]
        if not _CHANNEL_ID.match(channel_id):
            raise _Refused(400, "invalid_channel_id", "expected a 0x-prefixed 32-byte channel id")
        channel = self._chain.channel(channel_id)
        return {
            "channelId": channel.channel_id,
            "balance": str(channel.balance),
            "totalClaimed": str(channel.total_claimed),
            "withdrawRequestedAt": channel.withdraw_requested_at,
            "withdrawAmount": str(channel.withdraw_amount),
            "refundNonce": str(channel.refund_nonce),
        }

    async def _initiate_withdraw(self, request: web.Request) -> dict[str, Any]:
        body = await _body(request)
        amount = body.get("amount")
        if not isinstance(amount, str) or not _UINT.match(amount):
            raise _Refused(400, "invalid_request", "amount must be a string of atomic units")
        return self._send(body, "initiateWithdraw", int(amount))

    async def _finalize_withdraw(self, request: web.Request) -> dict[str, Any]:
        return self._send(await _body(request), "finalizeWithdraw")

    def _send(self, body: dict[str, Any], function: str, *args: Any) -> dict[str, Any]:
        config = _channel_config(body.get("channelConfig"))
        sender = body.get("from", config[0])
        if not isinstance(sender, str) or not is_address(sender):
            raise _Refused(400, "invalid_request", "from must be a 20-byte hex address")
        try:
            calldata = encode_contract_call(BATCH_SETTLEMENT_ABI, function, config, *args)
        except (EncodingError, OverflowError, TypeError) as error:
            raise _Refused(400, "invalid_request", f"the call does not encode ({type(error).__name__})") from None
        try:
            tx_hash = self._chain.send_transaction(to_checksum_address(sender), BATCH_SETTLEMENT_ADDRESS, calldata)
        except Revert as revert:
            raise _Refused(409, "execution_reverted", str(revert)) from None
        receipt = self._chain.receipt(tx_hash)
        return {"transaction": tx_hash, "blockNumber": receipt.block_number if receipt else None}


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.read())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise _Refused(400, "invalid_json", "request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise _Refused(400, "invalid_request", "request body must be a JSON object")
    return body


def _channel_config(value: Any) -> tuple[Any, ...]:
    """The ChannelConfig tuple the contract takes, from its JSON (wire) form."""
    if not isinstance(value, dict):
        raise _Refused(400, "invalid_request", "channelConfig must be an object")
    try:
        return to_contract_channel_config(ChannelConfig.from_dict(value))
    except (KeyError, TypeError, ValueError):
        raise _Refused(400, "invalid_request", "channelConfig is not a valid ChannelConfig") from None
