"""What a route declares of the x402 extensions: its Bazaar declaration, checked
once with the SDK's validators, in the v2 402 (with the payment-identifier
extension and the resource's service metadata) and in v1's outputSchema; a bad
declaration is the caller's error, never a 402 that lies."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError
from x402.extensions.bazaar import BAZAAR, OutputConfig, bazaar_resource_server_extension, declare_discovery_extension
from x402.extensions.payment_identifier import PAYMENT_IDENTIFIER
from x402.http.types import HTTPRequestContext

from devnet.wallets import MERCHANT_ADDRESS
from sidecar.config import Settings
from sidecar.constants import Reason
from sidecar.payments.answers import payment_required
from sidecar.payments.errors import RouteError
from sidecar.payments.routes import RouteTerms, price_route

URL = "http://127.0.0.1:8402/v1/weather?city=Oslo"


def _declared(method: str | None = "GET", query: dict | None = None) -> dict:
    declared = declare_discovery_extension(
        input=query if query is not None else {"city": "Oslo"},
        input_schema={"properties": {"city": {"type": "string"}}, "additionalProperties": False},
        output=OutputConfig(example={"temperature_c": 4}, schema={"properties": {"temperature_c": {"type": "integer"}}}),
    )[BAZAAR.key]
    if method is None:
        return declared
    return bazaar_resource_server_extension.enrich_declaration(
        declared, HTTPRequestContext(adapter=None, path="/v1/weather", method=method)  # type: ignore[arg-type]
    )


def _route(**terms):
    return price_route(
        RouteTerms(key="GET /v1/weather", price="$0.001", pay_to=MERCHANT_ADDRESS, network="eip155:84532", **terms)
    )


def test_the_v2_402_declares_both_extensions_and_the_service_metadata():
    declared = _declared()
    route = _route(discovery=json.dumps(declared), tags=("weather",), service_name="Weather", description="Now")

    body = json.loads(payment_required(route, URL, "payment required").body)

    assert body["extensions"][BAZAAR.key] == declared
    assert body["extensions"][PAYMENT_IDENTIFIER]["info"] == {"required": False}
    assert body["resource"] == {
        "url": URL,
        "description": "Now",
        "mimeType": "application/json",
        "serviceName": "Weather",
        "tags": ["weather"],
    }


def test_the_v1_402_carries_the_declaration_in_output_schema():
    route = _route(discovery=json.dumps(_declared()))

    body = json.loads(payment_required(route, URL, "payment required", version=1).body)

    (offered,) = body["accepts"]
    assert offered["outputSchema"] == {
        "input": {"type": "http", "method": "GET", "queryParams": {"city": {"type": "string"}}},
        "output": {"type": "object", "properties": {"temperature_c": {"type": "integer"}}},
    }


def test_an_undeclared_route_declares_only_the_payment_identifier():
    body = json.loads(payment_required(_route(), URL, "payment required").body)

    assert set(body["extensions"]) == {PAYMENT_IDENTIFIER}
    assert "outputSchema" not in json.loads(payment_required(_route(), URL, "x", version=1).body)["accepts"][0]


@pytest.mark.parametrize(
    "discovery",
    [
        "not json",
        json.dumps(["a list"]),
        json.dumps(_declared(method=None)),  # no method: the SDK's server extension adds it
        json.dumps(_declared(query={"city": 4})),  # its own example fails its schema
        json.dumps({**_declared(), "extra": 1}),
        json.dumps({**_declared(), "schema": {"$ref": "https://example.com/schema.json"}}),
        json.dumps(_declared(query={"city": "x" * 70_000})),
    ],
)
def test_a_declaration_that_does_not_hold_is_the_callers_error(discovery):
    with pytest.raises(RouteError) as caught:
        _route(discovery=discovery)
    assert caught.value.reason == Reason.INVALID_ROUTE


@pytest.mark.parametrize(
    "metadata",
    [
        {"tags": ("a", "b", "c", "d", "e", "f")},
        {"tags": ("x" * 33,)},
        {"tags": ("",)},
        {"tags": ("bell\x07",)},
        {"service_name": "ünïcode"},
    ],
)
def test_service_metadata_the_bazaar_would_drop_is_the_callers_error(metadata):
    with pytest.raises(RouteError):
        _route(**metadata)


def test_a_named_route_with_a_bad_declaration_fails_at_start():
    with pytest.raises(ValidationError, match="discovery declaration"):
        Settings(routes={"weather": {"discovery": {"info": {}, "schema": {}}}})


def test_a_route_requiring_ids_must_offer_exact():
    # Only exact payments carry payment identifiers (sidecar/payments/idempotency.py).
    with pytest.raises(RouteError) as refused:
        _route(payment_identifier_required=True, schemes=("batch-settlement",))

    assert refused.value.reason == Reason.INVALID_ROUTE
    assert _route(payment_identifier_required=True, schemes=("batch-settlement", "exact")).offers("exact")
