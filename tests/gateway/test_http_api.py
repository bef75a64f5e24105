"""The gateway over real HTTP with the sidecar unreachable (a closed port): free
routes, the error shape, request ids, rate limits, telemetry, OpenAPI, and paid
routes that refuse to serve without the payment service."""

from __future__ import annotations

import csv
import json
import re
import uuid

import pytest
from jsonschema import Draft202012Validator

from gateway.constants import SAMPLE_DATA_DIR

from .conftest import ADMIN, ADMIN_TOKEN, running_gateway

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def csv_row_count(name: str) -> int:
    with (SAMPLE_DATA_DIR / f"{name}.csv").open(encoding="utf-8", newline="") as handle:
        return sum(1 for _ in csv.DictReader(handle))


async def events(gateway, name: str | None = None) -> list[dict]:
    async with gateway.get("/v1/telemetry?limit=1000", headers=ADMIN) as response:
        assert response.status == 200
        found = (await response.json())["events"]
    return [e for e in found if name is None or e["name"] == name]


def assert_error(body: dict, status_code: str, request_id: str) -> None:
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "request_id"}
    assert body["error"]["code"] == status_code
    assert body["error"]["message"]
    assert body["error"]["request_id"] == request_id


# -- free routes ---------------------------------------------------------------


async def test_dataset_list_has_row_counts_and_schemas_without_the_sidecar(gateway):
    async with gateway.get("/v1/datasets") as response:
        assert response.status == 200
        body = await response.json()
    by_name = {d["name"]: d for d in body["datasets"]}
    assert set(by_name) == {"observations", "stations"}
    assert body["default"] == "observations"
    for name, dataset in by_name.items():
        assert dataset["rows"] == csv_row_count(name)
        # The terms are the sidecar's, and it does not answer: unknown, never made up.
        terms = {key: dataset[key] for key in ("price", "amount", "asset", "network", "pay_to", "schemes")}
        assert terms == dict.fromkeys(terms)
    assert by_name["stations"]["columns"] == [
        {"name": "station_id", "type": "string"},
        {"name": "city", "type": "string"},
        {"name": "country", "type": "string"},
        {"name": "latitude", "type": "float"},
        {"name": "longitude", "type": "float"},
        {"name": "elevation_m", "type": "int"},
        {"name": "active", "type": "bool"},
        {"name": "installed_at", "type": "datetime"},
    ]


async def test_per_dataset_description_comes_from_config():
    overrides = {"datasets": {"stations": {"description": "Weather stations"}}}
    async with running_gateway(**overrides) as gateway, gateway.get("/v1/datasets/stations") as response:
        body = await response.json()
    assert body["description"] == "Weather stations"


async def test_unknown_dataset_schema_is_404_json(gateway):
    async with gateway.get("/v1/datasets/nope", headers={"X-Request-ID": "r-1"}) as response:
        assert response.status == 404
        assert_error(await response.json(), "dataset_not_found", "r-1")


@pytest.mark.parametrize("path", ["/v1/datasets", "/v1/datasets/stations", "/healthz", "/openapi.json"])
async def test_head_works_on_free_routes(gateway, path):
    async with gateway.request("HEAD", path) as response:
        assert response.status == 200
        assert await response.read() == b""
        assert response.headers["Content-Type"].startswith("application/json")


# -- sidecar unreachable -----------------------------------------------------------


async def test_health_reports_the_sidecar_unreachable_but_answers_200(gateway):
    async with gateway.get("/healthz") as response:
        assert response.status == 200
        body = await response.json()
    assert body["status"] == "degraded"
    assert body["sidecar"] == "unavailable"
    assert body["datasets"] == 2


@pytest.mark.parametrize("path", ["/v1/records?_limit=5", "/v1/datasets/stations/records"])
@pytest.mark.parametrize("method", ["GET", "HEAD"])
async def test_paid_route_without_payment_service_is_503_and_no_content(gateway, path, method):
    async with gateway.request(method, path, headers={"X-Request-ID": "paid-1"}) as response:
        assert response.status == 503
        assert response.headers["X-Request-ID"] == "paid-1"
        assert "PAYMENT-RESPONSE" not in response.headers
        body = await response.read()
    if method == "GET":
        text = body.decode()
        assert "ST-001" not in text and "Amsterdam" not in text
        assert_error(json.loads(text), "payment_service_unavailable", "paid-1")


async def test_unreachable_sidecar_is_a_gateway_event(gateway):
    async with gateway.get("/v1/records?_limit=1", headers={"X-Request-ID": "down-1"}) as response:
        assert response.status == 503
    [event] = [e for e in await events(gateway, "sidecar_call_failed") if e["request_id"] == "down-1"]
    assert event["source"] == "gateway"
    assert event["route"].startswith("GET /v1/datasets/") and event["route"].endswith("/records")
    assert event["attributes"]["call"] == "authorize"
    assert event["attributes"]["code"] == "UNAVAILABLE"


async def test_paid_route_with_a_payment_header_still_refuses_without_the_service(gateway):
    headers = {"PAYMENT-SIGNATURE": "eyJ4NDAyVmVyc2lvbiI6Mn0="}
    async with gateway.get("/v1/datasets/stations/records", headers=headers) as response:
        assert response.status == 503
        assert (await response.json())["error"]["code"] == "payment_service_unavailable"


# -- bad queries are refused before any payment --------------------------------------


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("altitude=3", "unknown column 'altitude'"),
        ("temp_c__between=1", "unknown operator 'between'"),
        ("temp_c__gt=warm", "temp_c is a float column: expected a number, got 'warm'"),
        ("_limit=5000", "_limit must be an integer from 1 to 1000"),
        ("_format=xml", "_format must be one of json, csv, ndjson"),
        ("_sort=-nothing", "_sort: unknown column 'nothing'"),
    ],
)
async def test_bad_query_is_400_with_its_message_and_never_asks_for_payment(gateway, query, message):
    # The sidecar is unreachable: a 400 proves validation ran before any Authorize.
    async with gateway.get(f"/v1/records?{query}", headers={"X-Request-ID": "bad-q"}) as response:
        assert response.status == 400
        body = await response.json()
    assert_error(body, "invalid_query", "bad-q")
    assert message in body["error"]["message"]
    assert "PAYMENT-REQUIRED" not in response.headers


async def test_unknown_dataset_records_is_404_before_payment(gateway):
    async with gateway.get("/v1/datasets/nope/records") as response:
        assert response.status == 404
        assert (await response.json())["error"]["code"] == "dataset_not_found"


async def test_overlong_query_is_413():
    async with running_gateway(max_query_length=100) as gateway:
        async with gateway.get("/v1/records?city=" + "x" * 200, headers={"X-Request-ID": "long"}) as response:
            assert response.status == 413
            assert response.headers["X-Request-ID"] == "long"
            assert_error(await response.json(), "query_too_long", "long")


# -- request ids --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/v1/datasets", 200),
        ("GET", "/no/such/route", 404),
        ("POST", "/v1/datasets", 405),
        ("GET", "/v1/records", 503),
        ("GET", "/v1/records?_limit=0", 400),
    ],
)
async def test_valid_request_id_is_echoed(gateway, method, path, status):
    async with gateway.request(method, path, headers={"X-Request-ID": "Abc.123_-x"}) as response:
        assert response.status == status
        assert response.headers["X-Request-ID"] == "Abc.123_-x"


@pytest.mark.parametrize("offered", ["has space", "x" * 129, "semi;colon", "ünï"])
@pytest.mark.parametrize(("method", "path"), [("GET", "/v1/datasets"), ("GET", "/nope"), ("PUT", "/healthz")])
async def test_invalid_request_id_is_replaced_by_a_uuid(gateway, offered, method, path):
    async with gateway.request(method, path, headers={"X-Request-ID": offered}) as response:
        echoed = response.headers["X-Request-ID"]
        body = await response.json()
    assert echoed != offered
    assert UUID.fullmatch(echoed)
    if response.status >= 400:
        assert body["error"]["request_id"] == echoed


async def test_missing_request_id_gets_a_fresh_uuid_per_request(gateway):
    seen = set()
    for _ in range(2):
        async with gateway.get("/healthz") as response:
            seen.add(response.headers["X-Request-ID"])
    assert len(seen) == 2 and all(UUID.fullmatch(rid) for rid in seen)


# -- errors ------------------------------------------------------------------------


async def test_unknown_route_is_404_json_and_a_route_not_found_event(gateway):
    async with gateway.get("/v2/whatever?x=1", headers={"X-Request-ID": "lost-1"}) as response:
        assert response.status == 404
        assert_error(await response.json(), "not_found", "lost-1")
    [event] = [e for e in await events(gateway, "route_not_found") if e["request_id"] == "lost-1"]
    assert event["route"] == "/v2/whatever"
    assert event["attributes"]["method"] == "GET"
    assert event["attributes"]["env"] == "test"


async def test_wrong_method_is_405_json_with_allow(gateway):
    async with gateway.request("DELETE", "/v1/datasets/stations", headers={"X-Request-ID": "m-1"}) as response:
        assert response.status == 405
        assert "GET" in response.headers["Allow"]
        assert_error(await response.json(), "method_not_allowed", "m-1")


# -- rate limits ---------------------------------------------------------------------


async def test_free_routes_are_rate_limited_per_ip_with_retry_after():
    async with running_gateway(free_rate_per_s=0.01, free_burst=2) as gateway:
        statuses = []
        for _ in range(3):
            async with gateway.get("/v1/datasets", headers={"X-Request-ID": "rl"}) as response:
                statuses.append(response.status)
                last = response
                body = await response.json()
        assert statuses == [200, 200, 429]
        assert int(last.headers["Retry-After"]) >= 1
        assert last.headers["X-Request-ID"] == "rl"
        assert_error(body, "rate_limited", "rl")
        # Health probes are never limited.
        async with gateway.get("/healthz") as response:
            assert response.status == 200


async def test_paid_routes_have_their_own_bucket():
    async with running_gateway(paid_rate_per_s=0.01, paid_burst=1) as gateway:
        async with gateway.get("/v1/records") as response:
            assert response.status == 503  # passed the limiter, then no payment service
        async with gateway.get("/v1/records") as response:
            assert response.status == 429
            assert int(response.headers["Retry-After"]) >= 1
        async with gateway.get("/v1/datasets") as response:
            assert response.status == 200


# -- telemetry ------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": ADMIN_TOKEN}])
async def test_telemetry_needs_the_admin_token(gateway, headers):
    async with gateway.get("/v1/telemetry", headers={**headers, "X-Request-ID": "t-1"}) as response:
        assert response.status == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert_error(await response.json(), "unauthorized", "t-1")


async def test_telemetry_is_closed_when_no_admin_token_is_configured():
    async with running_gateway(admin_token=None) as gateway:
        async with gateway.get("/v1/telemetry", headers={"Authorization": "Bearer "}) as response:
            assert response.status == 401


async def test_telemetry_lists_events_newest_first_with_request_ids(gateway):
    first, rid = f"tele-{uuid.uuid4().hex[:8]}", f"tele-{uuid.uuid4().hex[:8]}"
    for sent in (first, rid):
        async with gateway.get("/v1/datasets", headers={"X-Request-ID": sent}):
            pass
    async with gateway.get("/v1/telemetry?limit=3", headers=ADMIN) as response:
        assert response.status == 200
        body = await response.json()
    assert body["sidecar"] == "unavailable"
    assert len(body["events"]) == 3
    newest, previous = body["events"][0], body["events"][1]
    assert newest["name"] == "request_received" and newest["route"] == "GET /v1/telemetry"
    assert previous == {
        "name": "request_received",
        "timestamp": previous["timestamp"],
        "request_id": rid,
        "route": "GET /v1/datasets",
        "source": "gateway",
        "attributes": {"env": "test", "method": "GET"},
    }
    assert body["events"][2]["request_id"] == first
    timestamps = [e["timestamp"] for e in body["events"]]
    assert timestamps == sorted(timestamps, reverse=True)


@pytest.mark.parametrize("limit", ["0", "1001", "x"])
async def test_telemetry_limit_is_validated(gateway, limit):
    async with gateway.get(f"/v1/telemetry?limit={limit}", headers=ADMIN) as response:
        assert response.status == 400
        assert (await response.json())["error"]["code"] == "invalid_limit"


# -- OpenAPI -------------------------------------------------------------------------


async def test_every_documented_operation_answers_with_a_documented_status(gateway):
    async with gateway.get("/openapi.json") as response:
        document = await response.json()
    assert document["openapi"].startswith("3.1")
    assert set(document["paths"]) == {
        "/healthz",
        "/v1/datasets",
        "/v1/datasets/{name}",
        "/v1/datasets/{name}/records",
        "/v1/records",
        "/v1/telemetry",
        "/openapi.json",
    }
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            concrete = path.replace("{name}", "stations")
            headers = ADMIN if path == "/v1/telemetry" else {}
            async with gateway.request(method.upper(), concrete, headers=headers) as response:
                documented = set(operation["responses"])
                assert str(response.status) in documented, (method, path, response.status)
                assert "X-Request-ID" in response.headers


def references(node) -> list[str]:
    """Every "$ref" in a JSON document."""
    if isinstance(node, list):
        return [ref for value in node for ref in references(value)]
    if not isinstance(node, dict):
        return []
    own = [node["$ref"]] if "$ref" in node else []
    return own + [ref for value in node.values() for ref in references(value)]


async def test_openapi_schemas_are_valid_json_schema_and_every_reference_resolves(gateway):
    async with gateway.get("/openapi.json") as response:
        document = await response.json()
    for schema in document["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)  # OpenAPI 3.1 schemas are JSON Schema 2020-12
    refs = set(references(document))
    assert "#/components/schemas/PaymentRequirements" in refs  # the SDK's shapes, nested as the SDK nests them
    for ref in refs:
        target = document
        for part in ref.removeprefix("#/").split("/"):
            target = target[part]
        assert isinstance(target, dict), ref


async def test_openapi_documents_the_402_and_error_shapes(gateway):
    async with gateway.get("/openapi.json") as response:
        document = await response.json()
    records = document["paths"]["/v1/datasets/{name}/records"]["get"]["responses"]
    assert "PAYMENT-REQUIRED" in records["402"]["headers"]
    assert records["402"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/PaymentRequired"}
    assert "PAYMENT-RESPONSE" in records["200"]["headers"]
    error = document["components"]["schemas"]["Error"]["properties"]["error"]
    assert error["required"] == ["code", "message", "request_id"]
    name = document["paths"]["/v1/datasets/{name}"]["get"]["parameters"][1]
    assert name["schema"]["enum"] == ["observations", "stations"]
