"""The x402 `bazaar` discovery extension on our side: a route's declaration, as
its caller sends it, checked once (routes.py caches priced routes) with the SDK's
validators; the v1 form of it (`outputSchema`); and the Bazaar service metadata
of the 402's `resource`.

The declaration is the route's, never the payer's: a payload echoes it back
unsigned, so what the facilitator catalogues is the route's own (binding.py)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from x402.extensions.bazaar import validate_discovery_extension, validate_discovery_extension_spec

from ..constants import Reason
from .errors import RouteError

# What a facilitator catalogues of one resource is bounded (the devnet's Bazaar:
# 64 KiB an entry); a declaration of a dataset's filters and row is a few KiB.
MAX_DECLARATION_BYTES = 64 * 1024
# The Bazaar's limits on a resource's service metadata (x402 specs/extensions/bazaar.md).
MAX_TAGS = 5
_METADATA_TEXT = re.compile(r"[\x20-\x7e]{1,32}")


def _refuse(message: str) -> RouteError:
    return RouteError(Reason.INVALID_ROUTE, message)


def parse_declaration(text: str) -> dict[str, Any] | None:
    """The route's `extensions.bazaar` from its JSON text (None for ""), or a
    RouteError: it must be an HTTP declaration that names its method, fits in
    MAX_DECLARATION_BYTES and validates against its own schema."""
    if not text:
        return None
    if len(text.encode("utf-8")) > MAX_DECLARATION_BYTES:
        raise _refuse(f"the route's discovery declaration is over {MAX_DECLARATION_BYTES} bytes")
    try:
        declaration = json.loads(text)
    except (ValueError, RecursionError):
        raise _refuse("the route's discovery declaration is not JSON") from None
    if not isinstance(declaration, dict) or set(declaration) - {"info", "schema", "routeTemplate"}:
        raise _refuse("the route's discovery declaration must be an object of info, schema (and routeTemplate)")
    for check in (validate_discovery_extension_spec, validate_discovery_extension):
        result = check(declaration)
        if not result.valid:
            raise _refuse(f"the route's discovery declaration is invalid: {'; '.join(result.errors)[:300]}")
    declared_input = declaration["info"]["input"]
    if declared_input.get("type") != "http" or not declared_input.get("method"):
        raise _refuse("the route's discovery declaration must be an HTTP one that names its method")
    return declaration


def check_service_metadata(tags: Sequence[str], service_name: str) -> None:
    """Tags and a service name the Bazaar keeps as given, or a RouteError."""
    if len(tags) > MAX_TAGS:
        raise _refuse(f"a route has at most {MAX_TAGS} tags")
    for text in (*tags, *([service_name] if service_name else [])):
        if not _METADATA_TEXT.fullmatch(text):
            raise _refuse("tags and service_name are 1-32 printable ASCII characters")


def v1_output_schema(declaration: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The declaration as x402 v1 carried discovery, in the requirements'
    `outputSchema`: the method, the query parameters with their JSON Schema each
    (v1 has no schema document to refer into, so a `$ref` to an `$anchor` of the
    query's `$defs` is replaced by what it names), and the output's schema (for
    us, a row's)."""
    if declaration is None:
        return None
    declared = declaration["info"]["input"]
    properties = declaration["schema"].get("properties", {})
    query = properties.get("input", {}).get("properties", {}).get("queryParams", {})
    output = properties.get("output", {}).get("properties", {}).get("example", {})
    described: dict[str, Any] = {"type": "http", "method": declared["method"]}
    if query.get("properties"):
        anchored = {
            "#" + shape["$anchor"]: {k: v for k, v in shape.items() if k != "$anchor"}
            for shape in query.get("$defs", {}).values()
            if isinstance(shape, dict) and isinstance(shape.get("$anchor"), str)
        }
        described["queryParams"] = {
            name: anchored.get(shape.get("$ref"), shape) if isinstance(shape, dict) else shape
            for name, shape in query["properties"].items()
        }
    shape: dict[str, Any] = {"input": described}
    if output:
        shape["output"] = output
    return shape
