"""The OpenAPI 3.1 document of the gateway, built once at start from the datasets."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic.json_schema import models_json_schema
from x402.schemas import PaymentRequired

from .constants import DEFAULT_LIMIT, MAX_LIMIT
from .datasets import Dataset
from .query import COMPARISONS, FORMATS, MEDIA_TYPES

_REF = "#/components"


def _ref(kind: str, name: str) -> dict[str, str]:
    return {"$ref": f"{_REF}/{kind}/{name}"}


def _error(description: str, *, extra_headers: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return {
        "description": description,
        "headers": {"X-Request-ID": _ref("headers", "RequestId"), **(extra_headers or {})},
        "content": {"application/json": {"schema": _ref("schemas", "Error")}},
    }


def _json(description: str, schema: str) -> dict[str, Any]:
    return {
        "description": description,
        "headers": {"X-Request-ID": _ref("headers", "RequestId")},
        "content": {"application/json": {"schema": _ref("schemas", schema)}},
    }


_RATE_LIMITED = _error("Too many requests from this address", extra_headers={"Retry-After": _ref("headers", "RetryAfter")})


def _get(summary: str, responses: dict[str, Any], *, parameters: list[Any] | None = None, **extra: Any) -> dict:
    return {
        "get": {
            "summary": summary,
            "parameters": [_ref("parameters", "RequestId"), *(parameters or [])],
            "responses": responses,
            **extra,
        }
    }


def _records_operation(summary: str, path_parameters: list[Any]) -> dict[str, Any]:
    paid_headers = {
        "X-Request-ID": _ref("headers", "RequestId"),
        "PAYMENT-RESPONSE": {
            "description": "Base64 JSON of the settlement result (X-PAYMENT-RESPONSE for x402 v1 clients)",
            "schema": {"type": "string"},
        },
        "X-Total-Count": {
            "description": "Rows matching the filters (not sent for a dataset priced per row)",
            "schema": {"type": "integer"},
        },
        "Link": {"description": 'Next page: <url>; rel="next"', "schema": {"type": "string"}},
        "Cache-Control": {"schema": {"type": "string", "const": "private, no-store"}},
    }
    return _get(
        summary,
        {
            "200": {
                "description": "Paid and settled: the matching records",
                "headers": paid_headers,
                "content": {
                    MEDIA_TYPES["json"]: {"schema": _ref("schemas", "RecordsPage")},
                    MEDIA_TYPES["csv"]: {"schema": {"type": "string"}},
                    MEDIA_TYPES["ndjson"]: {"schema": {"type": "string"}},
                },
            },
            "400": _error("Invalid query, malformed payment header, or an invalid or missing payment identifier"),
            "402": {
                "description": "Payment required, or the payment was refused",
                "headers": {
                    "X-Request-ID": _ref("headers", "RequestId"),
                    "PAYMENT-REQUIRED": {
                        "description": "Base64 of the PaymentRequired JSON (the same as the body)",
                        "schema": {"type": "string"},
                    },
                },
                "content": {"application/json": {"schema": _ref("schemas", "PaymentRequired")}},
            },
            "404": _error("Unknown dataset"),
            "409": _error(
                "The payment's payment-identifier id was paid with for another request, or longer ago than the"
                " idempotency window (`payment_identifier_conflict`, `payment_identifier_expired`: use a new id),"
                " or a request paid with it is under way (`payment_identifier_in_flight`: retry after"
                " Retry-After with the same id). Nothing was charged.",
                extra_headers={"Retry-After": _ref("headers", "RetryAfter")},
            ),
            "413": _error("Query string too long"),
            "429": _RATE_LIMITED,
            "503": _error(
                "Nothing was served. `payment_service_unavailable`: the payment service could not be"
                " reached and nothing was charged. `payment_in_doubt`: the payment is being checked;"
                " retry after Retry-After with the same payment header, never a new payment"
            ),
        },
        parameters=[
            *path_parameters,
            _ref("parameters", "PaymentSignature"),
            _ref("parameters", "XPayment"),
            _ref("parameters", "Filters"),
            {"name": "_sort", "in": "query", "schema": {"type": "string"}, "example": "city,-date",
             "description": "Comma-separated columns; '-' sorts descending"},
            {"name": "_limit", "in": "query",
             "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT}},
            {"name": "_offset", "in": "query", "schema": {"type": "integer", "minimum": 0, "default": 0}},
            {"name": "_fields", "in": "query", "schema": {"type": "string"}, "description": "Columns to return"},
            {"name": "_format", "in": "query", "schema": {"type": "string", "enum": list(FORMATS)},
             "description": "Default: from the Accept header, else json"},
        ],
        description="Paid per request with x402. Without a payment header the answer is 402 with "
        "PAYMENT-REQUIRED; retry with PAYMENT-SIGNATURE (v2) or X-PAYMENT (v1). The 402 declares the "
        "x402 extensions `payment-identifier` (put an id in the payment, and a retry with the same id "
        "is served without a second charge) and `bazaar` (this query language and the row shape as JSON "
        "Schema). The query is validated "
        "before any payment is asked for. HEAD is answered without settling and without any header "
        "that depends on the data (no X-Total-Count, Link or Content-Length); unpaid, it gets the GET's 402.",
    )


_STRING = {"type": "string"}
_INTEGER = {"type": "integer"}
_NULLABLE_STRING = {"type": ["string", "null"]}


def _object(*, required: tuple[str, ...] = (), **properties: Any) -> dict[str, Any]:
    shape: dict[str, Any] = {"type": "object", "properties": properties}
    return {**shape, "required": list(required)} if required else shape


def _array(items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": items}


def _enum(*values: str) -> dict[str, Any]:
    return {"type": "string", "enum": list(values)}


def _gateway_schemas(dataset_names: list[str]) -> dict[str, Any]:
    """The gateway's own answers."""
    event = _object(
        name=_STRING,
        timestamp={"type": "string", "format": "date-time"},
        request_id=_STRING,
        route=_STRING,
        source=_enum("gateway", "sidecar"),
        attributes={"type": "object", "additionalProperties": _STRING},
    )
    page = _object(total={"type": ["integer", "null"]}, limit=_INTEGER, offset=_INTEGER, next={"type": ["string", "null"]})
    return {
        "Error": _object(
            error=_object(
                code=_STRING, message=_STRING, request_id=_STRING, required=("code", "message", "request_id")
            ),
            required=("error",),
        ),
        "Column": _object(name=_STRING, type=_enum("int", "float", "bool", "date", "datetime", "string")),
        "Dataset": _object(
            name=_enum(*dataset_names),
            rows=_INTEGER,
            columns=_array(_ref("schemas", "Column")),
            # The payment sidecar's terms; null while it cannot say.
            price=_NULLABLE_STRING,
            amount=_NULLABLE_STRING,
            pricing={"type": ["string", "null"], "enum": ["per_request", "per_row", None]},
            price_per_row=_NULLABLE_STRING,
            asset=_NULLABLE_STRING,
            network=_NULLABLE_STRING,
            pay_to=_NULLABLE_STRING,
            schemes={"type": ["array", "null"], "items": _STRING},
            description=_STRING,
            records_url=_STRING,
        ),
        "DatasetList": _object(datasets=_array(_ref("schemas", "Dataset")), default=_STRING),
        "RecordsPage": _object(data=_array({"type": "object"}), meta=page),
        "Health": _object(status=_enum("ok", "degraded"), sidecar=_STRING, datasets=_INTEGER),
        "Telemetry": _object(events=_array(event), sidecar=_STRING),
    }


def _x402_schemas() -> dict[str, Any]:
    """The x402 wire shapes, from the SDK's own models: the v2 402 body
    (PaymentRequired) and the shapes it holds, as sent (camelCase)."""
    _, document = models_json_schema(
        [(PaymentRequired, "serialization")], by_alias=True, ref_template=f"{_REF}/schemas/{{model}}"
    )
    return document["$defs"]


def build_openapi(datasets: Mapping[str, Dataset]) -> dict[str, Any]:
    names = list(datasets)
    name_parameter = {"name": "name", "in": "path", "required": True, "schema": {"type": "string", "enum": names}}
    operators = ", ".join(f"col__{op}" for op in (*COMPARISONS, "contains", "in"))
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "paysidecar data gateway",
            "version": "1",
            "description": "CSV datasets, paid per request with x402; GET /v1/datasets says what each costs.",
        },
        "paths": {
            "/healthz": _get("Liveness, and whether the payment sidecar answers", {"200": _json("Health", "Health")}),
            "/v1/datasets": _get(
                "Datasets with schemas and prices (free)",
                {"200": _json("Datasets", "DatasetList"), "429": _RATE_LIMITED},
            ),
            "/v1/datasets/{name}": _get(
                "One dataset's schema and price (free)",
                {"200": _json("Dataset", "Dataset"), "404": _error("Unknown dataset"), "429": _RATE_LIMITED},
                parameters=[name_parameter],
            ),
            "/v1/datasets/{name}/records": _records_operation("Records of a dataset (paid)", [name_parameter]),
            "/v1/records": _records_operation("Records of the default dataset (paid)", []),
            "/v1/telemetry": _get(
                "Recent telemetry events, newest first (admin)",
                {
                    "200": _json("Events", "Telemetry"),
                    "400": _error("Invalid limit"),
                    "401": _error("Missing or wrong admin token"),
                    "429": _RATE_LIMITED,
                },
                parameters=[{"name": "limit", "in": "query",
                             "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}}],
                security=[{"adminBearer": []}],
            ),
            "/openapi.json": _get("This document", {"200": {"description": "OpenAPI 3.1 document"}, "429": _RATE_LIMITED}),
        },
        "components": {
            "schemas": {**_gateway_schemas(names), **_x402_schemas()},
            "parameters": {
                "RequestId": {
                    "name": "X-Request-ID",
                    "in": "header",
                    "schema": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,128}$"},
                    "description": "Echoed back; replaced by a new UUID when missing or malformed",
                },
                "PaymentSignature": {"name": "PAYMENT-SIGNATURE", "in": "header", "schema": {"type": "string"},
                                     "description": "x402 v2 payment (base64 JSON PaymentPayload)"},
                "XPayment": {"name": "X-PAYMENT", "in": "header", "schema": {"type": "string"},
                             "description": "x402 v1 payment (base64 JSON)"},
                "Filters": {
                    "name": "filters",
                    "in": "query",
                    "style": "form",
                    "explode": True,
                    "schema": {"type": "object", "additionalProperties": {"type": "string"}},
                    "description": f"col=value, or {operators} (in: comma-separated values). "
                    "Values must parse as the column's type.",
                },
            },
            "headers": {
                "RequestId": {"description": "The request id", "schema": {"type": "string"}},
                "RetryAfter": {"description": "Seconds to wait", "schema": {"type": "integer"}},
            },
            "securitySchemes": {"adminBearer": {"type": "http", "scheme": "bearer"}},
        },
    }
