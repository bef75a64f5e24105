"""Each dataset's Bazaar declaration (gateway/bazaar.py) says what the query
language takes, as the query parser does, and holds no data."""

from __future__ import annotations

import json
from urllib.parse import parse_qsl

import pytest
from x402.extensions.bazaar import validate_discovery_extension

from devnet.wallets import MERCHANT_ADDRESS
from gateway.bazaar import declaration, declarations
from gateway.constants import SAMPLE_DATA_DIR
from gateway.datasets import load_datasets
from gateway.query import QueryError, parse_query
from sidecar.payments.answers import payment_required
from sidecar.payments.routes import RouteTerms, price_route

DATASETS = load_datasets(SAMPLE_DATA_DIR)
OBSERVATIONS = DATASETS["observations"]

QUERIES = [
    "",
    "city=Oslo",
    "city__contains=sl&city__ne=Lima",
    "city__in=Oslo,Lima",
    "temp_c__gt=-3.5&temp_c__lte=1e2",
    "humidity_pct__in=70,75&humidity_pct__gte=+3",
    "date__gte=2023-01-01&date__lt=2023-02-01",
    "date__in=2023-01-01,2023-01-02",
    "rain=true&rain__ne=no",
    "_sort=city,-date&_fields=date,city&_limit=1000&_offset=0&_format=ndjson",
    "_limit=1",
    # refused
    "colour=red",
    "rain__gt=true",
    "temp_c__contains=1",
    "temp_c=warm",
    "humidity_pct=7.5",
    "date=yesterday",
    "date__in=2023-01-01,",
    "rain=maybe",
    "_sort=colour",
    "_fields=date,colour",
    "_limit=0",
    "_limit=1001",
    "_offset=-1",
    "_offset=1000000001",
    "_format=xml",
    "city__between=a",
]


def _accepted_by_parser(query: str) -> bool:
    try:
        parse_query(parse_qsl(query, keep_blank_values=True), OBSERVATIONS.types)
    except QueryError:
        return False
    return True


def _accepted_by_schema(query: str) -> bool:
    declared = declaration(OBSERVATIONS)
    declared["info"]["input"]["queryParams"] = dict(parse_qsl(query, keep_blank_values=True))
    return validate_discovery_extension(declared).valid


@pytest.mark.parametrize("query", QUERIES)
def test_the_query_schema_takes_what_the_query_parser_takes(query):
    assert _accepted_by_schema(query) == _accepted_by_parser(query)


def test_each_declaration_is_valid_and_holds_no_data():
    texts = declarations(DATASETS)

    assert sorted(texts) == sorted(DATASETS)
    for name, text in texts.items():
        declared = json.loads(text)
        assert validate_discovery_extension(declared).valid
        first_row = DATASETS[name].frame.row(0)
        assert not any(isinstance(value, str) and value in text for value in first_row)


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_the_402_with_the_declaration_fits_in_an_8_kib_header(name):
    route = price_route(
        RouteTerms(
            key=f"GET /v1/datasets/{name}/records",
            price="$0.001",
            pay_to=MERCHANT_ADDRESS,
            network="eip155:84532",
            description=f"Records of the {name} dataset",
            discovery=declarations(DATASETS)[name],
            tags=("dataset", name),
            service_name="paysidecar datasets",
        )
    )
    url = f"http://gateway.example:8402/v1/datasets/{name}/records?" + "x" * 300

    answer = payment_required(route, url, "payment required")

    assert len(answer.headers["PAYMENT-REQUIRED"]) < 8 * 1024 - len("PAYMENT-REQUIRED: \r\n")
