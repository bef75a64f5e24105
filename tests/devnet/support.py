"""Helpers for devnet tests: a server on a free port, facilitator request bodies,
hand-signed EIP-3009 authorizations, a settable clock, a bounded wait."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from eth_account.signers.local import LocalAccount
from x402.mechanisms.evm.constants import TRANSFER_WITH_AUTHORIZATION_BYTES_ABI
from x402.mechanisms.evm.multicall import encode_contract_call

from devnet.chain import CHAIN_ID, USDC_ADDRESS
from devnet.wallets import MERCHANT_ADDRESS, payer_account


@contextlib.asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    """Run `app` on 127.0.0.1 with a free port; yield its base URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def wire(payload: Any, requirements: Any) -> dict[str, Any]:
    """A facilitator request body, as the SDK's HTTP client builds it."""
    return {
        "x402Version": payload.x402_version,
        "paymentPayload": payload.model_dump(mode="json", by_alias=True, exclude_none=True),
        "paymentRequirements": requirements.model_dump(mode="json", by_alias=True, exclude_none=True),
    }


class Clock:
    """A settable clock for Chain(clock=...)."""

    def __init__(self, now: float | None = None) -> None:
        self.now = time.time() if now is None else now

    def __call__(self) -> float:
        return self.now


@dataclass(frozen=True)
class SignedTransfer:
    from_address: str
    to: str
    value: int
    valid_after: int
    valid_before: int
    nonce: bytes
    signature: bytes

    @property
    def calldata(self) -> bytes:
        return encode_contract_call(
            TRANSFER_WITH_AUTHORIZATION_BYTES_ABI,
            "transferWithAuthorization",
            self.from_address,
            self.to,
            self.value,
            self.valid_after,
            self.valid_before,
            self.nonce,
            self.signature,
        )


def signed_transfer(
    *,
    payer: LocalAccount | None = None,
    signer: LocalAccount | None = None,
    to: str = MERCHANT_ADDRESS,
    value: int = 1000,
    valid_after: int = 0,
    valid_before: int | None = None,
    nonce: bytes | None = None,
    now: float | None = None,
) -> SignedTransfer:
    """An authorization from `payer`, signed by `signer` (default: the payer)."""
    payer = payer or payer_account(0)
    signer = signer or payer
    valid_before = int(now or time.time()) + 3600 if valid_before is None else valid_before
    nonce = nonce or os.urandom(32)
    signed = signer.sign_typed_data(
        domain_data={
            "name": "USDC",
            "version": "2",
            "chainId": CHAIN_ID,
            "verifyingContract": USDC_ADDRESS,
        },
        message_types={
            "TransferWithAuthorization": [
                {"name": "from", "type": "address"},
                {"name": "to", "type": "address"},
                {"name": "value", "type": "uint256"},
                {"name": "validAfter", "type": "uint256"},
                {"name": "validBefore", "type": "uint256"},
                {"name": "nonce", "type": "bytes32"},
            ]
        },
        message_data={
            "from": payer.address,
            "to": to,
            "value": value,
            "validAfter": valid_after,
            "validBefore": valid_before,
            "nonce": nonce,
        },
    )
    return SignedTransfer(payer.address, to, value, valid_after, valid_before, nonce, bytes(signed.signature))


async def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until `condition()` holds; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.01)
