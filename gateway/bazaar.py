"""The Bazaar discovery declaration of each dataset's records route (x402 `bazaar`
extension), built once at start with the SDK's helpers and checked with its
validator: what the route takes, the query language of query.py as JSON Schema
(a filter per column and operator, with the column's type; `_sort`, `_fields`,
`_limit`, `_offset`, `_format`), and what a row of its answer looks like (the
dataset's columns and types). The examples hold no data: a 402 is free, so its
example row is made of placeholders of each column's type.

The sidecar puts it in the route's 402 (v1: `outputSchema`), and a facilitator
with the extension catalogues it once a payment settles, so that agents can find
the datasets and query them without reading our docs.

Query values arrive as text, so each is described as a string, numbers, dates and
booleans by the pattern of their text. A 402 header carries the declaration, and
aiohttp and many HTTP stacks refuse a header over 8 KiB, so it is kept short: the
value schemas are named once in the query schema's `$defs` (`$anchor`) and
referred to, and a column's comparisons share one `patternProperties` entry
(`^col__(gt|gte|lt|lte|ne)$`) beside its named `col` and `col__in`."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from x402.extensions.bazaar import (
    BAZAAR,
    OutputConfig,
    bazaar_resource_server_extension,
    declare_discovery_extension,
    validate_discovery_extension,
)
from x402.http.types import HTTPRequestContext

from .constants import DEFAULT_LIMIT, MAX_LIMIT
from .datasets import ColumnType, Dataset
from .query import BOOL_WORDS, FORMATS, MAX_OFFSET, operators_for

logger = logging.getLogger(__name__)

# The sidecar refuses a larger declaration, and a facilitator would not list it.
MAX_DECLARATION_BYTES = 64 * 1024
# Past this, the 402's PAYMENT-REQUIRED header (base64, with the rest of the 402)
# outgrows the 8 KiB many HTTP clients take: said at start.
HEADER_BUDGET_BYTES = 5 * 1024

_DIGITS = "[0-9]"
_DATE = f"{_DIGITS}{{4}}-{_DIGITS}{{2}}-{_DIGITS}{{2}}"
# The text of a value of each type (without anchors), as query.py parses it.
_VALUE_TEXT = {
    ColumnType.INT: f"[+-]?{_DIGITS}{{1,19}}",
    ColumnType.FLOAT: f"[+-]?({_DIGITS}+([.]{_DIGITS}*)?|[.]{_DIGITS}+)([eE][+-]?{_DIGITS}+)?",
    ColumnType.BOOL: "(" + "|".join(BOOL_WORDS) + ")",
    ColumnType.DATE: _DATE,
    ColumnType.DATETIME: f"{_DATE}([T ]{_DIGITS}{{2}}:{_DIGITS}{{2}}(:{_DIGITS}{{2}}([.]{_DIGITS}{{1,6}})?)?)?"
    f"(Z|[+-]{_DIGITS}{{2}}:{_DIGITS}{{2}})?",
    ColumnType.STRING: "[^,]+",  # an item of a list; a single value may be any text
}
# A placeholder of each type, as a JSON answer writes it.
_PLACEHOLDERS = {
    ColumnType.INT: 0,
    ColumnType.FLOAT: 0.5,
    ColumnType.BOOL: True,
    ColumnType.DATE: "2024-01-31",
    ColumnType.DATETIME: "2024-01-31T12:00:00",
    ColumnType.STRING: "text",
}
# What a row's value of each type is in a JSON answer.
_JSON_TYPES = {
    ColumnType.INT: {"type": "integer"},
    ColumnType.FLOAT: {"type": "number"},
    ColumnType.BOOL: {"type": "boolean"},
    ColumnType.DATE: {"type": "string", "format": "date"},
    ColumnType.DATETIME: {"type": "string", "description": "ISO 8601 date-time, UTC"},
    ColumnType.STRING: {"type": "string"},
}
# Regular-expression syntax characters (ECMA-262, which JSON Schema patterns use):
# only these may be escaped, in every dialect.
_SYNTAX = set("^$\\.*+?()[]{}|/")


def _escape(text: str) -> str:
    return "".join("\\" + char if char in _SYNTAX else char for char in text)


def _value(kind: ColumnType) -> dict[str, Any]:
    if kind is ColumnType.STRING:
        return {"type": "string"}
    return {"type": "string", "pattern": f"^{_VALUE_TEXT[kind]}$"}


def _values(kind: ColumnType) -> dict[str, Any]:
    item = _VALUE_TEXT[kind]
    return {"type": "string", "pattern": f"^{item}(,{item})*$", "description": "comma-separated values"}


def _count(low: int, high: int) -> str:
    """The pattern of the whole numbers low..high, written plainly; high is a
    power of ten, low 0 or 1 (the query's bounds)."""
    zeros = len(str(high)) - 1
    if high != 10**zeros or low not in (0, 1):
        raise ValueError(f"no pattern for {low}..{high}")
    return f"^({'0|' if low == 0 else ''}[1-9]{_DIGITS}{{0,{zeros - 1}}}|{high})$"


def query_schema(dataset: Dataset) -> dict[str, Any]:
    """The query parameters the dataset's records route takes, as JSON Schema."""
    kinds = sorted({column.type for column in dataset.columns})
    defs: dict[str, Any] = {}
    for kind in kinds:
        defs[str(kind)] = {"$anchor": str(kind), **_value(kind)}
        defs[f"{kind}_list"] = {"$anchor": f"{kind}_list", **_values(kind)}
    properties: dict[str, Any] = {}
    compared: dict[str, Any] = {}
    for column in dataset.columns:
        value = {"$ref": f"#{column.type}"}
        properties[column.name] = value
        properties[f"{column.name}__in"] = {"$ref": f"#{column.type}_list"}
        others = [op for op in operators_for(column.type) if op not in ("eq", "in")]
        compared[f"^{_escape(column.name)}__({'|'.join(others)})$"] = value
    names = "(" + "|".join(_escape(column.name) for column in dataset.columns) + ")"
    properties.update(
        {
            "_sort": {
                "type": "string",
                "pattern": f"^[+-]?{names}(,[+-]?{names})*$",
                "description": "columns to order by; '-' for descending",
            },
            "_fields": {"type": "string", "pattern": f"^{names}(,{names})*$", "description": "columns to return"},
            "_limit": {"type": "string", "pattern": _count(1, MAX_LIMIT), "description": f"default {DEFAULT_LIMIT}"},
            "_offset": {"type": "string", "pattern": _count(0, MAX_OFFSET)},
            "_format": {"type": "string", "enum": list(FORMATS), "description": "default: from Accept, else json"},
        }
    )
    return {"$defs": defs, "properties": properties, "patternProperties": compared, "additionalProperties": False}


def row_schema(dataset: Dataset) -> dict[str, Any]:
    """A row of the JSON answer: the dataset's columns (all, or those `_fields` names)."""
    nullable = {name for name, count in zip(dataset.frame.columns, dataset.frame.null_count().row(0)) if count}
    properties = {}
    for column in dataset.columns:
        shape = dict(_JSON_TYPES[column.type])
        if column.name in nullable:
            shape["type"] = [shape["type"], "null"]
        properties[column.name] = shape
    return {"properties": properties, "additionalProperties": False}


def example_row(dataset: Dataset) -> dict[str, Any]:
    """A row as the JSON answer gives it, of placeholders (no data leaves unpaid)."""
    return {column.name: _PLACEHOLDERS[column.type] for column in dataset.columns}


def example_query(dataset: Dataset) -> dict[str, str]:
    """A query the route takes: the first ten rows in the first column's order."""
    return {"_sort": dataset.columns[0].name, "_limit": "10"}


def declaration(dataset: Dataset) -> dict[str, Any]:
    """The route's `extensions.bazaar`, enriched with its method (GET), as the SDK
    makes it. No route pattern: each dataset is a resource of its own."""
    declared = declare_discovery_extension(
        input=example_query(dataset),
        input_schema=query_schema(dataset),
        output=OutputConfig(example=example_row(dataset), schema=row_schema(dataset)),
    )
    request = HTTPRequestContext(adapter=None, path=f"/v1/datasets/{dataset.name}/records", method="GET")  # type: ignore[arg-type]
    enriched = bazaar_resource_server_extension.enrich_declaration(declared[BAZAAR.key], request)
    checked = validate_discovery_extension(enriched)
    if not checked.valid:
        raise ValueError(f"dataset {dataset.name}: its discovery declaration is invalid: {checked.errors}")
    return enriched


def declarations(datasets: Mapping[str, Dataset]) -> dict[str, str]:
    """Each dataset's declaration as the JSON text the sidecar takes; a dataset
    whose declaration is too large is served undeclared (and said so)."""
    texts = {}
    for name, dataset in datasets.items():
        text = json.dumps(declaration(dataset), separators=(",", ":"))
        size = len(text.encode())
        if size > MAX_DECLARATION_BYTES:
            logger.warning("dataset %s: discovery declaration over %d bytes; not declared", name, MAX_DECLARATION_BYTES)
            continue
        if size > HEADER_BUDGET_BYTES:
            logger.warning(
                "dataset %s: discovery declaration of %d bytes; its 402 header may be over the 8 KiB some clients take",
                name,
                size,
            )
        texts[name] = text
    return texts
