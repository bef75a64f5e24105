"""One place for money terms: the gateway names the sidecar route each dataset is
paid with, the sidecar's route config says what it costs and where the money goes,
and the free listing shows what the 402 offers. Only a development gateway
overrides the terms, and only a sidecar outside production takes the override."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from x402.http.utils import decode_payment_required_header

from devnet.wallets import MERCHANT_ADDRESS
from tests.support.payments import sign_for, sign_v2
from tests.support.stack import PaidStack, running_paid_stack

from .conftest import Gateway, running_gateway

OTHER = "0x" + "34" * 20
SIDECAR_ROUTES = {"stations": {"price": "$0.01", "pay_to": OTHER}}
STATIONS = "/v1/datasets/stations/records?_limit=1"
OBSERVATIONS = "/v1/datasets/observations/records?_limit=1"


@pytest.fixture
async def route_stack(database_url, tmp_path) -> AsyncIterator[PaidStack]:
    """The devnet and a sidecar whose config names a dearer route for stations."""
    async with running_paid_stack(database_url, tmp_path / "spool", routes=SIDECAR_ROUTES) as stack:
        yield stack


@contextlib.asynccontextmanager
async def gateway_on(stack: PaidStack, **settings: Any) -> AsyncIterator[Gateway]:
    async with running_gateway(sidecar_target=stack.sidecar.target, sidecar_settle_timeout_s=20.0, **settings) as gateway:
        yield gateway


async def offer(gateway: Gateway, path: str):
    async with gateway.get(path) as response:
        assert response.status == 402
        return decode_payment_required_header(response.headers["PAYMENT-REQUIRED"])


async def listing(gateway: Gateway) -> dict[str, dict[str, Any]]:
    async with gateway.get("/v1/datasets") as response:
        assert response.status == 200
        return {dataset["name"]: dataset for dataset in (await response.json())["datasets"]}


async def test_a_production_gateway_offers_and_charges_the_sidecar_routes_terms(route_stack):
    chain = route_stack.chain
    production = {"env": "production", "datasets": {"stations": {"route": "stations"}}}
    async with gateway_on(route_stack, **production) as gateway:
        (dear,) = (await offer(gateway, STATIONS)).accepts
        (cheap,) = (await offer(gateway, OBSERVATIONS)).accepts
        assert (dear.amount, dear.pay_to) == ("10000", OTHER)
        assert (cheap.amount, cheap.pay_to) == ("1000", MERCHANT_ADDRESS)

        required = await offer(gateway, STATIONS)
        before = chain.balance_of(OTHER)
        async with gateway.get(STATIONS, headers={"PAYMENT-SIGNATURE": await sign_v2(required)}) as paid:
            assert paid.status == 200
    assert chain.balance_of(OTHER) == before + 10000


async def test_the_dataset_list_shows_what_the_402_offers(route_stack):
    async with gateway_on(route_stack, env="production", datasets={"stations": {"route": "stations"}}) as gateway:
        datasets = await listing(gateway)
        for name, path in (("stations", STATIONS), ("observations", OBSERVATIONS)):
            (offered,) = (await offer(gateway, path)).accepts
            shown = datasets[name]
            assert (shown["amount"], shown["asset"], shown["network"], shown["pay_to"]) == (
                offered.amount,
                offered.asset,
                offered.network,
                offered.pay_to,
            )
            assert shown["schemes"] == ["exact"]
    assert (datasets["stations"]["price"], datasets["observations"]["price"]) == ("$0.01", "$0.001")


async def test_a_development_gateway_may_override_the_price_in_atomic_units(route_stack):
    overrides = {"env": "development", "datasets": {"stations": {"route": "stations", "price": "2500"}}}
    async with gateway_on(route_stack, **overrides) as gateway:
        (offered,) = (await offer(gateway, STATIONS)).accepts
        shown = (await listing(gateway))["stations"]
    # 2500 atomic units ($0.0025), not $2500; the rest of the route's terms stay the sidecar's.
    assert (offered.amount, offered.pay_to) == ("2500", OTHER)
    assert (shown["price"], shown["amount"]) == (None, "2500")


async def test_a_dataset_paid_with_a_route_the_sidecar_does_not_know_is_never_served(route_stack):
    chain = route_stack.chain
    async with gateway_on(route_stack, env="production", datasets={"stations": {"route": "missing"}}) as gateway:
        header = await sign_for(gateway.url + STATIONS)
        transfers = chain.transfers_applied
        async with gateway.get(STATIONS, headers={"PAYMENT-SIGNATURE": header}) as response:
            assert response.status == 503
            assert (await response.json())["error"]["code"] == "payment_service_unavailable"
        shown = await listing(gateway)
    assert chain.transfers_applied == transfers
    assert route_stack.facilitator.stats.verify_calls == 0
    assert (shown["stations"]["amount"], shown["observations"]["amount"]) == (None, "1000")


async def test_a_production_sidecar_refuses_a_development_gateways_terms(database_url, tmp_path):
    production = {"env": "production", "network": "eip155:8453", "pay_to": OTHER}
    async with running_paid_stack(database_url, tmp_path / "spool", **production) as stack:
        async with gateway_on(stack, env="development", default_price="$0.0001") as gateway:
            async with gateway.get(OBSERVATIONS) as response:
                assert response.status == 503
                assert (await response.json())["error"]["code"] == "payment_service_unavailable"
        async with gateway_on(stack, env="development") as gateway:
            (offered,) = (await offer(gateway, OBSERVATIONS)).accepts
    assert (offered.amount, offered.pay_to, offered.network) == ("1000", OTHER, "eip155:8453")
