"""Devnet fixtures: a chain, a facilitator server on a free port, signed payments."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from x402 import x402Client
from x402.mechanisms.evm.exact.register import register_exact_evm_client
from x402.mechanisms.evm.signers import EthAccountSigner
from x402.schemas import PaymentPayload, PaymentRequired, PaymentRequirements

from devnet.chain import NETWORK, USDC_ADDRESS, Chain
from devnet.facilitator import create_app
from devnet.faults import Faults
from devnet.wallets import MERCHANT_ADDRESS, payer_account
from tests.devnet.support import serving, wire


@dataclass
class Devnet:
    url: str
    app: web.Application
    chain: Chain
    faults: Faults
    http: aiohttp.ClientSession

    async def post(self, path: str, body: Any) -> tuple[int, Any]:
        async with self.http.post(self.url + path, json=body) as response:
            return response.status, await response.json(content_type=None)

    async def get(self, path: str) -> tuple[int, Any]:
        async with self.http.get(self.url + path) as response:
            return response.status, await response.json(content_type=None)

    async def verify(self, payload: PaymentPayload, requirements: PaymentRequirements) -> tuple[int, Any]:
        return await self.post("/verify", wire(payload, requirements))

    async def settle(self, payload: PaymentPayload, requirements: PaymentRequirements) -> tuple[int, Any]:
        return await self.post("/settle", wire(payload, requirements))


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


@pytest.fixture
async def devnet(http) -> AsyncIterator[Devnet]:
    chain, faults = Chain(), Faults()
    app = create_app(chain, faults, name="test")
    async with serving(app) as url:
        yield Devnet(url, app, chain, faults, http)


@pytest.fixture
def requirements() -> PaymentRequirements:
    return PaymentRequirements(
        scheme="exact",
        network=NETWORK,
        asset=USDC_ADDRESS,
        amount="1000",
        pay_to=MERCHANT_ADDRESS,
        max_timeout_seconds=60,
        extra={"name": "USDC", "version": "2"},
    )


@pytest.fixture
def client() -> x402Client:
    """The SDK client paying with devnet payer 0."""
    return register_exact_evm_client(x402Client(), EthAccountSigner(payer_account(0)))


@pytest.fixture
def sign(client):
    """sign(requirements) -> a fresh PaymentPayload from payer 0."""

    async def sign(requirements: PaymentRequirements) -> PaymentPayload:
        return await client.create_payment_payload(PaymentRequired(accepts=[requirements]))

    return sign
