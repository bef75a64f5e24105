"""Fresh rows of the tracking table as COPY data (PostgreSQL's text format).

A row write that starts a record (its START step is in the batch) almost always
makes a new row, and COPY inserts new rows for far less than the upsert
statement costs, on both sides of the connection. COPY has no ON CONFLICT: a
row that exists already (a spool replayed twice) fails the whole COPY with a
unique violation, and the writer then upserts instead (sidecar/store/tracking.py).

The text format and not asyncpg's binary records: the pool's json/jsonb codecs
are text codecs (sidecar/store/db.py), which binary COPY cannot use; and the
jsonb values are JSON text already (RowWrite.encoded()).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from .schema import COLUMNS_BY_NAME

_NULL = "\\N"
_BOOLEAN = {True: "t", False: "f", None: _NULL}


def _escaped(values: list[Any], escape: Callable[[str], str]) -> list[str]:
    """`escape` applied to every value, NULL for None: one call over the whole
    column joined by U+0000 (which no value holds: RowWrite cleans it out),
    instead of one call per value."""
    nulls = None in values
    texts = ["" if v is None else v for v in values] if nulls else values
    escaped = escape("\x00".join(texts)).split("\x00")
    if len(escaped) != len(values):  # a value held U+0000 after all: value by value
        escaped = [escape(v) for v in texts]
    if nulls:
        return [_NULL if v is None else e for v, e in zip(values, escaped, strict=True)]
    return escaped


def _text_escape(value: str) -> str:
    # The text format's escapes: backslash first, then the separators it uses.
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _json_escape(value: str) -> str:
    # JSON text has its control characters escaped already; only backslashes remain.
    return value.replace("\\", "\\\\")


def _text(values: list[Any]) -> list[str]:
    return _escaped(values, _text_escape)


def _json(values: list[Any]) -> list[str]:
    return _escaped(values, _json_escape)


def _boolean(values: list[Any]) -> list[str]:
    return [_BOOLEAN[v] for v in values]


def _timestamp(values: list[Any]) -> list[str]:
    return [_NULL if v is None else v.isoformat() for v in values]


def _integer(values: list[Any]) -> list[str]:
    return [_NULL if v is None else str(v) for v in values]


def _encoder(sql_type: str) -> Callable[[list[Any]], list[str]]:
    if sql_type == "text" or sql_type.startswith("character varying"):
        return _text
    return {"jsonb": _json, "boolean": _boolean, "timestamp with time zone": _timestamp, "integer": _integer}[sql_type]


# Column by column, each with its type's encoder: one comprehension per column
# instead of a type test per value (this runs for every row the writer inserts).
_ENCODERS = {c.name: _encoder(c.sql_type) for c in COLUMNS_BY_NAME.values() if c.name != "id"}


def copy_data(rows: list[tuple[uuid.UUID, dict[str, Any]]], columns: tuple[str, ...]) -> bytes:
    """COPY data for ("id", *columns) of the rows (RowWrite.encoded())."""
    fields = [[str(record_id) for record_id, _ in rows]]
    fields.extend(_ENCODERS[c]([values[c] for _, values in rows]) for c in columns)
    text = "".join("\t".join(row) + "\n" for row in zip(*fields))
    # A lone surrogate goes through as the bytes it stands for: PostgreSQL then
    # refuses the row as invalid UTF-8 (a DataError, isolated like any other),
    # where a strict encode here would fail the whole batch in Python.
    return text.encode("utf-8", "surrogatepass")


async def source(data: bytes) -> AsyncIterator[bytes]:
    """The data as asyncpg's copy_to_table takes it without a worker thread."""
    yield data
