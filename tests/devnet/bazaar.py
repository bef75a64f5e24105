"""Helpers for Bazaar discovery tests: a resource's 402 carrying the discovery declaration
the SDK's resource-server helpers build, and devnet payers paying it with the SDK's
client (which echoes the declaration into the PaymentPayload)."""

from __future__ import annotations

from typing import Any

from x402 import x402Client
from x402.extensions.bazaar import (
    BAZAAR,
    OutputConfig,
    bazaar_resource_server_extension,
    declare_discovery_extension,
)
from x402.http.types import HTTPRequestContext
from x402.mechanisms.evm.exact.register import register_exact_evm_client
from x402.mechanisms.evm.signers import EthAccountSigner
from x402.schemas import PaymentPayload, PaymentRequired, PaymentRequirements, ResourceInfo

from devnet.wallets import payer_account

STATIONS = "http://127.0.0.1:8402/v1/datasets/stations/records"

# What the stations dataset's records route takes and gives, as JSON Schema. Query
# parameters arrive as strings, so numbers are described by their string form.
QUERY_SCHEMA = {
    "properties": {
        "country": {"type": "string"},
        "elevation_m__gte": {"type": "string", "pattern": "^-?[0-9]+$"},
        "_limit": {"type": "string", "pattern": "^[0-9]+$"},
        "_format": {"type": "string", "enum": ["json", "csv", "ndjson"]},
    },
    "additionalProperties": False,
}
ROW_SCHEMA = {
    "properties": {"id": {"type": "string"}, "city": {"type": "string"}, "elevation_m": {"type": "integer"}},
    "required": ["id", "city", "elevation_m"],
}


def declaration(
    query: dict[str, Any] | None = None,
    query_schema: dict[str, Any] | None = None,
    method: str = "GET",
) -> dict[str, Any]:
    """`{"bazaar": ...}` as a resource server puts it in its 402's extensions: declared
    with the SDK and enriched with the request's method by the SDK's server extension."""
    declared = declare_discovery_extension(
        input=query if query is not None else {"country": "JP", "_limit": "10"},
        input_schema=query_schema if query_schema is not None else QUERY_SCHEMA,
        output=OutputConfig(example={"id": "ST-014", "city": "Tokyo", "elevation_m": 40}, schema=ROW_SCHEMA),
    )
    # A static route: the SDK reads only the method (no route pattern, so no adapter).
    request = HTTPRequestContext(adapter=None, path="", method=method)  # type: ignore[arg-type]
    return {BAZAAR.key: bazaar_resource_server_extension.enrich_declaration(declared[BAZAAR.key], request)}


def payment_required(
    requirements: PaymentRequirements,
    url: str = STATIONS,
    *,
    extensions: dict[str, Any] | None = None,
    description: str = "Weather stations: id, city, elevation",
    **resource: Any,
) -> PaymentRequired:
    """A 402 for `url` offering `requirements`, declaring `extensions` (default: the
    stations declaration; pass {} for none)."""
    return PaymentRequired(
        resource=ResourceInfo(url=url, description=description, mime_type="application/json", **resource),
        accepts=[requirements],
        extensions=declaration() if extensions is None else extensions or None,
    )


async def pay(required: PaymentRequired, payer_index: int = 0) -> PaymentPayload:
    """The SDK client's payload for `required`, signed by a devnet payer."""
    client = register_exact_evm_client(x402Client(), EthAccountSigner(payer_account(payer_index)))
    return await client.create_payment_payload(required)
