"""Which route terms win: what the caller sends, else the route it names in the
config, else the config's defaults; in production the money terms come from the
config alone (one place for money terms), which passed money rule 7 at start."""

from __future__ import annotations

import dataclasses

import pytest
from pydantic import ValidationError

from sidecar.config import Settings
from sidecar.constants import Reason
from sidecar.payments.errors import RouteRefused
from sidecar.payments.routes import MONEY_TERMS, RouteDefaults, RouteTerms, choose_terms, resolve_route

OWN = "0x" + "12" * 20
NAMED_PAY_TO = "0x" + "34" * 20
DEFAULT_PAY_TO = "0x" + "56" * 20

NAMED = RouteTerms(
    key="dear",
    price="$0.05",
    pay_to=NAMED_PAY_TO,
    network="eip155:8453",
    description="the dear route",
    mime_type="text/csv",
    facilitators=("https://named.example",),
    max_timeout_seconds=30,
)
DEFAULTS = RouteDefaults(price="$0.001", pay_to=DEFAULT_PAY_TO, network="eip155:84532", named={"dear": NAMED})


def test_terms_the_caller_sends_win_over_the_named_route():
    asked = RouteTerms(
        key="GET /x",
        price="$1",
        pay_to=OWN,
        network="eip155:1",
        asset="0x" + "ab" * 20,
        description="mine",
        mime_type="application/json",
        facilitators=("https://mine.example",),
        max_timeout_seconds=90,
        schemes=("batch-settlement",),
    )
    assert choose_terms(asked, "dear", DEFAULTS) == asked


def test_the_named_route_fills_what_the_caller_left_out():
    chosen = choose_terms(RouteTerms(key=""), "dear", DEFAULTS)
    assert chosen == dataclasses.replace(NAMED, schemes=("exact",))  # its name is the key too


def test_the_defaults_fill_price_pay_to_network_and_schemes_only():
    chosen = choose_terms(RouteTerms(key="GET /x"), "", DEFAULTS)
    expected = RouteTerms(key="GET /x", price="$0.001", pay_to=DEFAULT_PAY_TO, network="eip155:84532", schemes=("exact",))
    assert chosen == expected


def test_schemes_come_from_the_caller_else_the_named_route_else_the_config():
    both = ("exact", "batch-settlement")
    named = {"dear": dataclasses.replace(NAMED, schemes=("batch-settlement",))}
    defaults = RouteDefaults(price="$0.001", pay_to=OWN, network="eip155:84532", named=named, schemes=both)
    assert choose_terms(RouteTerms(key="k", schemes=("exact",)), "dear", defaults).schemes == ("exact",)
    assert choose_terms(RouteTerms(key="k"), "dear", defaults).schemes == ("batch-settlement",)
    assert choose_terms(RouteTerms(key="k"), "", defaults).schemes == both


def test_a_named_route_without_pay_to_or_network_takes_the_defaults():
    cheap = RouteTerms(key="cheap", price="$0.002")
    bare = RouteDefaults(price="$0.001", pay_to=DEFAULT_PAY_TO, network="eip155:84532", named={"cheap": cheap})
    chosen = choose_terms(RouteTerms(key=""), "cheap", bare)
    assert (chosen.key, chosen.price) == ("cheap", "$0.002")
    assert (chosen.pay_to, chosen.network) == (DEFAULT_PAY_TO, "eip155:84532")


def test_a_price_or_an_amount_is_one_term_whoever_says_it():
    in_units = {"units": RouteTerms(key="units", amount="2500")}
    defaults = dataclasses.replace(DEFAULTS, named={**DEFAULTS.named, **in_units})

    def cost(asked: RouteTerms, name: str) -> tuple[str, str]:
        chosen = choose_terms(asked, name, defaults)
        return chosen.price, chosen.amount

    # The caller's price replaces the named route's amount, and its amount the named price.
    assert cost(RouteTerms(key="k", price="$0.01"), "units") == ("$0.01", "")
    assert cost(RouteTerms(key="k", amount="7"), "dear") == ("", "7")
    # Nobody says: the named route's, else the default price.
    assert cost(RouteTerms(key="k"), "units") == ("", "2500")
    assert cost(RouteTerms(key="k"), "") == ("$0.001", "")


def test_a_name_the_config_does_not_know_is_refused():
    with pytest.raises(RouteRefused) as refused:
        choose_terms(RouteTerms(key="k"), "nope", DEFAULTS)
    assert refused.value.reason == Reason.UNKNOWN_ROUTE


PRODUCTION = RouteDefaults(price="$0.001", pay_to=OWN, network="eip155:8453", named={"dear": NAMED}, production=True)
MONEY_VALUES = {
    "price": "$0.0001",
    "amount": "1",
    "price_per_row": "1",
    "pay_to": "0x" + "99" * 20,  # a mainnet-looking address of the caller's choosing
    "network": "eip155:8453",  # even the mainnet the config uses
    "asset": "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913",
    "facilitators": ("https://facilitator.example",),
}


@pytest.mark.parametrize("term", MONEY_TERMS)
@pytest.mark.parametrize("name", ["", "dear"])
def test_in_production_a_caller_cannot_pick_a_money_term(term, name):
    asked = RouteTerms(key="k", **{term: MONEY_VALUES[term]})
    with pytest.raises(RouteRefused) as refused:
        choose_terms(asked, name, PRODUCTION)
    assert refused.value.reason == Reason.ROUTE_TERMS_REFUSED
    assert term in refused.value.message
    # Outside production the same terms are the caller's override.
    development = dataclasses.replace(PRODUCTION, production=False)
    assert getattr(choose_terms(asked, name, development), term) == MONEY_VALUES[term]


def test_in_production_the_terms_are_the_configs_and_the_caller_describes_the_request():
    asked = RouteTerms(key="GET /x", description="mine", mime_type="text/csv", max_timeout_seconds=90, schemes=("exact",))
    named = choose_terms(asked, "dear", PRODUCTION)
    assert (named.price, named.pay_to, named.network, named.facilitators) == (
        NAMED.price,
        NAMED.pay_to,
        NAMED.network,
        NAMED.facilitators,
    )
    assert (named.key, named.description, named.mime_type, named.max_timeout_seconds) == ("GET /x", "mine", "text/csv", 90)
    default = choose_terms(asked, "", PRODUCTION)
    assert (default.price, default.pay_to, default.network) == ("$0.001", OWN, "eip155:8453")


def test_settings_give_their_named_routes_and_defaults():
    settings = Settings(
        env="production",
        pay_to=OWN,
        network="eip155:8453",
        facilitator_urls=["https://facilitator.example"],
        routes={"dear": {"price": "$0.05", "network": "eip155:137"}},
    )
    defaults = settings.route_defaults()
    assert (defaults.price, defaults.pay_to, defaults.network) == ("$0.001", OWN, "eip155:8453")
    assert defaults.production
    assert defaults.named["dear"] == RouteTerms(
        key="dear", price="$0.05", network="eip155:137", mime_type="application/json", max_timeout_seconds=60
    )


def test_a_named_route_without_a_price_costs_the_default_price():
    settings = Settings(routes={"plain": {"description": "no price of its own"}}, default_price="$0.002")
    assert resolve_route(RouteTerms(key="k"), "plain", settings.route_defaults()).amount == 2000


def test_a_route_priced_per_row_keeps_its_maximum_and_its_price_per_row():
    settings = Settings(routes={"rows": {"price_per_row": 7, "amount": "50"}})
    route = resolve_route(RouteTerms(key="k"), "rows", settings.route_defaults())
    assert (route.amount, route.price_per_row) == (50, 7)
    # A caller outside production overrides it like any money term.
    assert resolve_route(RouteTerms(key="k", price_per_row="3"), "rows", settings.route_defaults()).price_per_row == 3
    assert resolve_route(RouteTerms(key="k"), "", settings.route_defaults()).price_per_row == 0


def test_a_named_route_in_atomic_units_is_priced_in_the_networks_usdc():
    settings = Settings(routes={"units": {"amount": "2500"}})
    route = resolve_route(RouteTerms(key="k"), "units", settings.route_defaults())
    assert (route.amount, route.asset_name, route.price) == (2500, "USDC", "")


@pytest.mark.parametrize(
    "config",
    [
        {"routes": {"bad": {"price": "ten dollars"}}},
        {"routes": {"bad": {"amount": "0"}}},
        {"routes": {"bad": {"network": "solana:mainnet"}}},
        {"routes": {"bad": {"schemes": ["upto"]}}},
        {"routes": {"bad": {"price_per_row": 10}}},  # no maximum
        {"routes": {"bad": {"price_per_row": 11, "amount": "10"}}},  # above it
        {"default_price": "free"},
    ],
    ids=repr,
)
def test_a_route_that_cannot_be_priced_fails_at_start(config):
    with pytest.raises(ValidationError, match="route"):
        Settings(**config)
