"""Production means production in every path: one guard checks payTo, network and
facilitator URLs in the config at start, and a caller cannot send terms of its own
(they come from the config alone)."""

from __future__ import annotations

import re
from pathlib import Path

import grpc
import pytest
from pydantic import ValidationError

import sidecar

from devnet.wallets import DEV_KEYS, MERCHANT_ADDRESS, account
from paysidecar.v1 import payment_pb2
from sidecar.config import Settings
from sidecar.constants import DEVELOPMENT_ADDRESSES, MAINNET_NETWORKS
from sidecar.payments.routes import RouteTerms, price_route
from tests.support.calls import URL, authorize_request, challenge
from tests.support.payments import sign_for

OWN_ADDRESS = "0x" + "12" * 20
MAINNET = "eip155:8453"
DEV_ADDRESSES = [account(key).address for key in DEV_KEYS]

# The public test facilitator, written every way a URL can name it.
TEST_FACILITATOR_SPELLINGS = [
    "https://x402.org/facilitator",
    "https://X402.ORG/facilitator",
    "HTTPS://x402.org/facilitator",
    "https://x402.org:443/facilitator",
    "http://x402.org:80/facilitator",
    "https://www.x402.org/facilitator",
    "http://x402.org/facilitator",
    "https://x402.org/facilitator?",
    "https://x402.org/facilitator/",
    "https://x402.org/facilitator#top",
    "https://x402.org/facilitator?mode=prod",
    "https://x402.org//facilitator",
    "https://x402.org/./facilitator",
    "https://x402.org/Facilitator",
    "https://x402.org/%66acilitator",
    "https://x402.org./facilitator",
    "https://user@x402.org/facilitator",
    "https://x402%2Eorg/facilitator",
    "https://x402\u3002org/facilitator",
    "https://facilitator.x402.org/",
]
TESTNETS_AND_UNKNOWN = [
    "eip155:84532",  # Base Sepolia
    "base-sepolia",
    "eip155:421614",  # Arbitrum Sepolia
    "eip155:10143",  # Monad testnet
    "eip155:11155111",  # Ethereum Sepolia
    "eip155:999999999",  # no chain we know
    "eip155:08453",
]
DEVNET_PAY_TO = [MERCHANT_ADDRESS, MERCHANT_ADDRESS.lower(), "0x" + MERCHANT_ADDRESS[2:].upper(), *DEV_ADDRESSES[2:4]]

# What a caller might send: what rule 7 forbids, and mainnet terms of its own choosing.
CALLER_TERMS = (
    [{"pay_to": address} for address in DEVNET_PAY_TO]
    + [{"network": network} for network in TESTNETS_AND_UNKNOWN]
    + [{"facilitators": [url]} for url in TEST_FACILITATOR_SPELLINGS]
    + [
        {"price": "$0.0001"},
        {"amount": "1"},
        {"price_per_row": "1"},
        {"pay_to": "0x" + "99" * 20},
        {"network": MAINNET},
        {"asset": "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"},
        {"facilitators": ["https://facilitator.example"]},
    ]
)


@pytest.fixture
async def production(make_sidecar):
    handle = await make_sidecar(env="production", network=MAINNET, pay_to=OWN_ADDRESS)
    yield handle
    await handle.stop()


def _named_only(header: str = "") -> payment_pb2.AuthorizeRequest:
    """A request that names its route and sets no money term."""
    request = authorize_request(header)
    for term in ("price", "pay_to", "network"):
        request.route.ClearField(term)
    return request


async def test_production_refuses_every_money_term_a_caller_sends(production, facilitators):
    header = await sign_for(URL)
    for route in CALLER_TERMS:
        request = _named_only(header)
        for field, value in route.items():
            if isinstance(value, list):
                getattr(request.route, field).extend(value)
            else:
                setattr(request.route, field, value)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await production.payments.Authorize(request)
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION, route
        assert refused.value.details().startswith("route_terms_refused: "), route
        with pytest.raises(grpc.aio.AioRpcError) as described:
            await production.payments.DescribeRoute(payment_pb2.DescribeRouteRequest(route=request.route))
        assert described.value.code() == grpc.StatusCode.FAILED_PRECONDITION, route
    assert facilitators[0].stats.verify_calls == 0


async def test_production_offers_its_own_terms_to_a_caller_that_names_none(production):
    answer = await production.payments.Authorize(_named_only())
    (accept,) = challenge(answer.payment_required)["accepts"]
    assert (accept["payTo"], accept["network"], accept["amount"]) == (OWN_ADDRESS, MAINNET, "1000")


def _production(**overrides) -> Settings:
    values = dict(env="production", network=MAINNET, pay_to=OWN_ADDRESS, facilitator_urls=["https://facilitator.example"])
    values.update(overrides)
    return Settings(**values)


@pytest.mark.parametrize(
    "overrides",
    [{"pay_to": address} for address in DEVNET_PAY_TO]
    + [{"network": network} for network in TESTNETS_AND_UNKNOWN]
    # (A scheme in capitals is already refused as "not http(s)" by the URL check.)
    + [{"facilitator_urls": [url]} for url in TEST_FACILITATOR_SPELLINGS if url.startswith("http")]
    + [
        {"routes": {"cheap": {"pay_to": MERCHANT_ADDRESS.lower()}}},
        {"routes": {"cheap": {"network": "eip155:421614"}}},
        {"routes": {"cheap": {"facilitators": ["https://www.X402.org:443/facilitator?"]}}},
    ],
    ids=repr,
)
def test_production_config_with_a_test_address_network_or_facilitator_fails_at_start(overrides):
    with pytest.raises(ValidationError, match="production refuses"):
        _production(**overrides)


def test_production_needs_its_own_pay_to():
    with pytest.raises(ValidationError, match="production refuses payTo .*PAYSIDECAR_PAY_TO"):
        Settings(env="production", network=MAINNET, facilitator_urls=["https://facilitator.example"])


def test_a_production_config_of_mainnets_and_own_addresses_starts():
    settings = _production(routes={"dear": {"network": "eip155:137", "pay_to": "0x" + "34" * 20}})
    assert settings.env == "production"


def test_every_devnet_wallet_is_a_known_development_address():
    assert {address.lower() for address in DEV_ADDRESSES} <= DEVELOPMENT_ADDRESSES


@pytest.mark.parametrize("network", sorted(MAINNET_NETWORKS))
def test_every_allowed_mainnet_can_price_a_route_in_usdc(network):
    assert price_route(RouteTerms(key="k", price="$0.001", pay_to=OWN_ADDRESS, network=network)).amount == 1000


def test_production_code_does_not_import_the_devnet():
    root = Path(sidecar.__file__).parent
    importing = [
        path.relative_to(root.parent)
        for path in root.rglob("*.py")
        if re.search(r"^\s*(from|import) devnet\b", path.read_text(encoding="utf-8"), re.MULTILINE)
    ]
    assert importing == []
