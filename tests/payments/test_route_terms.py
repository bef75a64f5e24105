"""Which route terms win: what the caller sends, else the route it names in the
config, else the config's defaults; in production the result passes money rule 7."""

from __future__ import annotations

import dataclasses

import pytest

from sidecar.config import Settings
from sidecar.constants import Reason
from sidecar.payments.errors import RouteError
from sidecar.payments.routes import RouteDefaults, RouteTerms, choose_terms

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


def test_an_amount_comes_only_from_the_caller():
    assert choose_terms(RouteTerms(key="k", amount="7"), "dear", DEFAULTS).amount == "7"
    assert choose_terms(RouteTerms(key="k"), "dear", DEFAULTS).amount == ""


def test_a_name_the_config_does_not_know_is_refused():
    with pytest.raises(RouteError) as refused:
        choose_terms(RouteTerms(key="k"), "nope", DEFAULTS)
    assert refused.value.reason == Reason.UNKNOWN_ROUTE


@pytest.mark.parametrize(
    "asked",
    [
        RouteTerms(key="k", network="eip155:84532"),  # a testnet the caller names
        RouteTerms(key="k", pay_to="0x70997970C51812dc3A010C7d01b50e0d17dc79C8"),  # the devnet merchant
        RouteTerms(key="k", facilitators=("https://x402.org/facilitator",)),
    ],
)
def test_production_refuses_what_rule_7_forbids_in_a_callers_terms(asked):
    production = RouteDefaults(price="$0.001", pay_to=OWN, network="eip155:8453", named={}, production=True)
    with pytest.raises(RouteError) as refused:
        choose_terms(asked, "", production)
    assert refused.value.reason == Reason.INVALID_ROUTE
    assert choose_terms(asked, "", RouteDefaults(price="$0.001", pay_to=OWN, network="eip155:8453")).key == "k"


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
