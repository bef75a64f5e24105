"""Serialise a query result as JSON ({data, meta}), CSV or NDJSON. Pure: no HTTP."""

from __future__ import annotations

import json
from dataclasses import dataclass

import polars as pl

from .query import MEDIA_TYPES, QueryPlan, QueryResult

CONTENT_TYPES = {
    "json": "application/json",
    "csv": f"{MEDIA_TYPES['csv']}; charset=utf-8",
    "ndjson": MEDIA_TYPES["ndjson"],
}


@dataclass(frozen=True)
class Rendered:
    body: bytes
    content_type: str


def _iso_datetimes(page: pl.DataFrame) -> pl.DataFrame:
    """Date-times as ISO 8601 text ("2024-01-31T12:00:00"), the same in every format;
    polars would write a space in JSON and a 'T' in CSV."""
    datetimes = [name for name, dtype in page.schema.items() if isinstance(dtype, pl.Datetime)]
    if not datetimes:
        return page
    return page.with_columns(pl.col(datetimes).dt.to_string("%Y-%m-%dT%H:%M:%S%.f"))


def render(result: QueryResult, plan: QueryPlan, next_url: str | None) -> Rendered:
    page = _iso_datetimes(result.page)
    if plan.format == "csv":
        return Rendered(page.write_csv().encode(), CONTENT_TYPES["csv"])
    if plan.format == "ndjson":
        return Rendered(page.write_ndjson().encode(), CONTENT_TYPES["ndjson"])
    meta = {"total": result.total, "limit": plan.limit, "offset": plan.offset, "next": next_url}
    # polars writes the rows; only the small envelope goes through json.
    body = b'{"data":' + page.write_json().encode() + b',"meta":' + json.dumps(meta).encode() + b"}"
    return Rendered(body, CONTENT_TYPES["json"])
