"""Sign real x402 payments with the SDK client and the devnet's funded keys."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from x402 import x402Client
from x402.extensions.payment_identifier import append_payment_identifier_to_extensions
from x402.http.utils import encode_payment_signature_header
from x402.mechanisms.evm.exact.register import register_exact_evm_client
from x402.schemas import PaymentRequired, PaymentRequirements, ResourceInfo
from x402.schemas.v1 import PaymentRequiredV1, PaymentRequirementsV1

from devnet.wallets import MERCHANT_ADDRESS, payer_account

USDC_BASE_SEPOLIA = "0x036CbD53842c5426634e7929541eC2318f3dCF7e"


def requirements(amount: int = 1000, pay_to: str = MERCHANT_ADDRESS, **overrides) -> PaymentRequirements:
    fields = dict(
        scheme="exact",
        network="eip155:84532",
        asset=USDC_BASE_SEPOLIA,
        amount=str(amount),
        pay_to=pay_to,
        max_timeout_seconds=60,
        extra={"name": "USDC", "version": "2"},
    )
    fields.update(overrides)
    return PaymentRequirements(**fields)


def _client(payer_index: int) -> x402Client:
    # Spend controls off: tests sign hostile payments (other assets, networks) on purpose.
    return register_exact_evm_client(x402Client().set_spend_controls(False), payer_account(payer_index))


async def sign_v2(required: PaymentRequired, payer_index: int = 0, extensions: dict | None = None) -> str:
    payload = await _client(payer_index).create_payment_payload(required, extensions=extensions)
    return encode_payment_signature_header(payload)


async def sign_with_identifier(required: PaymentRequired, identifier: str | None, payer_index: int = 0) -> str:
    """A fresh PAYMENT-SIGNATURE (a new authorization each time) paying a route's
    402 with the SDK client, with `identifier` appended to the payment-identifier
    extension the 402 declares, as a client retrying safely does."""
    extensions = dict(required.extensions or {})
    if identifier is not None:
        append_payment_identifier_to_extensions(extensions, identifier)
    return await sign_v2(required, payer_index, extensions=extensions)


async def sign_for(url: str, amount: int = 1000, payer_index: int = 0, **overrides) -> str:
    """A v2 PAYMENT-SIGNATURE value paying `amount` for `url`."""
    required = PaymentRequired(accepts=[requirements(amount, **overrides)], resource=ResourceInfo(url=url))
    return await sign_v2(required, payer_index)


async def pay_once_the_sidecar_stopped(
    session: aiohttp.ClientSession, url: str, stop_sidecar: Callable[[], Awaitable[None]], request_id: str
) -> tuple[int, dict[str, Any]]:
    """A request to a paid `url` with a valid payment, sent after the sidecar
    stopped: the answer's status and JSON body."""
    header = await sign_for(url)
    await stop_sidecar()
    async with session.get(url, headers={"PAYMENT-SIGNATURE": header, "X-Request-ID": request_id}) as response:
        return response.status, await response.json()


async def sign_v1_for(url: str, amount: int = 1000, payer_index: int = 0) -> str:
    """A v1 X-PAYMENT value paying `amount` for `url` on base-sepolia."""
    required = PaymentRequiredV1(
        accepts=[
            PaymentRequirementsV1(
                scheme="exact",
                network="base-sepolia",
                max_amount_required=str(amount),
                resource=url,
                pay_to=MERCHANT_ADDRESS,
                max_timeout_seconds=60,
                asset=USDC_BASE_SEPOLIA,
                extra={"name": "USDC", "version": "2"},
            )
        ]
    )
    payload = await _client(payer_index).create_payment_payload(required)
    return encode_payment_signature_header(payload)
