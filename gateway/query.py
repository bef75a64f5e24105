"""The records query language: parse query parameters into a validated plan, then
run it against a dataset's frame. Pure: no HTTP, no I/O.

    col=value                      equality
    col__gt|gte|lt|lte|ne=value    comparisons (not on bool columns)
    col__contains=text             substring, case-sensitive (string columns)
    col__in=a,b,c                  any of the comma-separated values
    _sort=col,-col2                order, '-' for descending
    _limit=n                       1..1000, default 100
    _offset=n                      rows to skip, default 0
    _fields=a,b                    columns to return, in this order
    _format=json|csv|ndjson        or negotiated from the Accept header

Every condition must hold (AND). Values are parsed for the column's type, so a bad
value is refused before anything is asked for or paid.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import polars as pl

from .constants import DEFAULT_LIMIT, MAX_LIMIT
from .datasets import ColumnType

COMPARISONS = ("gt", "gte", "lt", "lte", "ne")
OPERATORS = ("eq", *COMPARISONS, "contains", "in")
FORMATS = ("json", "csv", "ndjson")
RESERVED = ("_sort", "_limit", "_offset", "_fields", "_format")
MAX_OFFSET = 10**9

# Media types we answer with, and the Accept values that select them.
MEDIA_TYPES = {"json": "application/json", "csv": "text/csv", "ndjson": "application/x-ndjson"}
_ACCEPTED_MEDIA = {
    "application/json": "json",
    "text/csv": "csv",
    "application/x-ndjson": "ndjson",
    "application/ndjson": "ndjson",
    "application/jsonl": "ndjson",
}

_INT = re.compile(r"[+-]?\d{1,19}")
_FLOAT = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})
# What a bool column's values are written as (in any letter case).
BOOL_WORDS = tuple(sorted(_TRUE | _FALSE))
_INT64 = (-(2**63), 2**63 - 1)


class QueryError(ValueError):
    """A query we refuse, with a message that says what is allowed."""

    code = "invalid_query"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Condition:
    column: str
    op: str
    # A typed value; a tuple of them for "in".
    value: Any


@dataclass(frozen=True)
class SortKey:
    column: str
    descending: bool


@dataclass(frozen=True)
class QueryPlan:
    conditions: tuple[Condition, ...]
    sort: tuple[SortKey, ...]
    limit: int
    offset: int
    fields: tuple[str, ...]
    format: str


@dataclass(frozen=True)
class QueryResult:
    page: pl.DataFrame
    # Rows matching the conditions, before limit and offset; None when not counted
    # (an answer priced per row tells only what it carries).
    total: int | None


def _allowed(names: Iterable[str]) -> str:
    return ", ".join(names)


# -- values ------------------------------------------------------------------


def _parse_int(text: str) -> int:
    if _INT.fullmatch(text):
        number = int(text)
        if _INT64[0] <= number <= _INT64[1]:
            return number
    raise ValueError("an integer")


def _parse_float(text: str) -> float:
    if _FLOAT.fullmatch(text):
        number = float(text)
        if math.isfinite(number):
            return number
    raise ValueError("a number")


def _parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError("true or false")


def _parse_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError("a date like 2024-01-31") from None


def _parse_datetime(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError("a date-time like 2024-01-31T12:00:00") from None
    # Columns hold naive UTC times; an offset given by the client is honoured.
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment


_PARSERS = {
    ColumnType.INT: _parse_int,
    ColumnType.FLOAT: _parse_float,
    ColumnType.BOOL: _parse_bool,
    ColumnType.DATE: _parse_date,
    ColumnType.DATETIME: _parse_datetime,
    ColumnType.STRING: str,
}


def _typed(column: str, kind: ColumnType, text: str) -> Any:
    try:
        return _PARSERS[kind](text)
    except ValueError as exc:
        raise QueryError(f"{column} is a {kind} column: expected {exc}, got {text!r}") from None


def operators_for(kind: ColumnType) -> tuple[str, ...]:
    """The operators a column of this type takes: contains is for text, and
    true and false have no order."""
    if kind is ColumnType.BOOL:
        return ("eq", "ne", "in")
    if kind is ColumnType.STRING:
        return OPERATORS
    return tuple(op for op in OPERATORS if op != "contains")


def _condition(column: str, op: str, kind: ColumnType, text: str) -> Condition:
    if op not in operators_for(kind):
        if op == "contains":
            raise QueryError(f"{column}__contains: contains works on string columns only; {column} is a {kind} column")
        raise QueryError(f"{column}__{op}: {column} is a bool column; use {column}=true|false or {column}__ne")
    if op == "in":
        items = text.split(",")
        if not text or any(item == "" for item in items):
            raise QueryError(f"{column}__in needs comma-separated values, e.g. {column}__in=a,b")
        return Condition(column, op, tuple(_typed(column, kind, item) for item in items))
    return Condition(column, op, _typed(column, kind, text))


# -- parameters --------------------------------------------------------------


def _column_list(param: str, text: str, types: Mapping[str, ColumnType]) -> list[str]:
    names = [name.strip() for name in text.split(",")]
    if not text or any(not name for name in names):
        raise QueryError(f"{param} needs comma-separated column names; columns: {_allowed(types)}")
    return names


def _check_column(param: str, name: str, types: Mapping[str, ColumnType]) -> None:
    if name not in types:
        raise QueryError(f"{param}: unknown column {name!r}; columns: {_allowed(types)}")


def _parse_sort(text: str, types: Mapping[str, ColumnType]) -> tuple[SortKey, ...]:
    keys = []
    for item in _column_list("_sort", text, types):
        descending = item.startswith("-")
        name = item.lstrip("+-")
        _check_column("_sort", name, types)
        keys.append(SortKey(name, descending))
    return tuple(keys)


def _parse_fields(text: str, types: Mapping[str, ColumnType]) -> tuple[str, ...]:
    names = _column_list("_fields", text, types)
    for name in names:
        _check_column("_fields", name, types)
    if len(set(names)) != len(names):
        raise QueryError("_fields lists a column twice")
    return tuple(names)


def _parse_count(param: str, text: str, low: int, high: int) -> int:
    if not re.fullmatch(r"\d{1,10}", text) or not low <= int(text) <= high:
        raise QueryError(f"{param} must be an integer from {low} to {high}, got {text!r}")
    return int(text)


def format_from_accept(accept: str | None) -> str:
    """The first format the Accept header names that we serve; JSON otherwise."""
    for part in (accept or "").split(","):
        media = part.split(";", 1)[0].strip().lower()
        if media in _ACCEPTED_MEDIA:
            return _ACCEPTED_MEDIA[media]
    return "json"


def parse_query(
    params: Iterable[tuple[str, str]],
    types: Mapping[str, ColumnType],
    *,
    accept: str | None = None,
) -> QueryPlan:
    """A validated plan for the (name, value) query parameters; QueryError if any is wrong."""
    conditions: list[Condition] = []
    reserved: dict[str, str] = {}
    for key, text in params:
        if key.startswith("_") and key not in types:
            if key not in RESERVED:
                raise QueryError(f"unknown parameter {key!r}; parameters: {_allowed(RESERVED)}")
            if key in reserved:
                raise QueryError(f"{key} given more than once")
            reserved[key] = text
            continue
        column, op = key, "eq"
        if key not in types and "__" in key:
            column, op = key.rsplit("__", 1)
            if column in types and op not in OPERATORS[1:]:
                raise QueryError(f"{key}: unknown operator {op!r}; operators: {_allowed(OPERATORS[1:])}")
        _check_column(key, column, types)
        conditions.append(_condition(column, op, types[column], text))

    fmt = reserved.get("_format")
    if fmt is None:
        fmt = format_from_accept(accept)
    elif fmt not in FORMATS:
        raise QueryError(f"_format must be one of {_allowed(FORMATS)}, got {fmt!r}")
    return QueryPlan(
        conditions=tuple(conditions),
        sort=_parse_sort(reserved["_sort"], types) if "_sort" in reserved else (),
        limit=_parse_count("_limit", reserved["_limit"], 1, MAX_LIMIT) if "_limit" in reserved else DEFAULT_LIMIT,
        offset=_parse_count("_offset", reserved["_offset"], 0, MAX_OFFSET) if "_offset" in reserved else 0,
        fields=_parse_fields(reserved["_fields"], types) if "_fields" in reserved else tuple(types),
        format=fmt,
    )


# -- execution ---------------------------------------------------------------


def _expression(condition: Condition) -> pl.Expr:
    column = pl.col(condition.column)
    value = condition.value
    match condition.op:
        case "eq":
            return column == value
        case "ne":
            return column != value
        case "gt":
            return column > value
        case "gte":
            return column >= value
        case "lt":
            return column < value
        case "lte":
            return column <= value
        case "contains":
            return column.str.contains(value, literal=True)
        case "in":
            return column.is_in(list(value))
    raise AssertionError(f"operator {condition.op!r} passed validation")


def run_query(frame: pl.DataFrame, plan: QueryPlan, *, count: bool = True) -> QueryResult:
    matching = frame.lazy()
    if plan.conditions:
        matching = matching.filter(*(_expression(c) for c in plan.conditions))
    page = matching
    if plan.sort:
        # Stable order, so pages of a sorted query never overlap or skip rows.
        page = page.sort(
            [key.column for key in plan.sort],
            descending=[key.descending for key in plan.sort],
            nulls_last=True,
            maintain_order=True,
        )
    page = page.slice(plan.offset, plan.limit).select(plan.fields)
    if not count:
        return QueryResult(page=page.collect(), total=None)
    total, rows = pl.collect_all([matching.select(pl.len()), page])
    return QueryResult(page=rows, total=int(total.item()))


def next_offset(plan: QueryPlan, result: QueryResult) -> int | None:
    """The _offset of the next page, or None on the last one. Uncounted, a full
    page has a next one (which may be empty)."""
    following = plan.offset + result.page.height
    if result.total is None:
        return following if result.page.height == plan.limit else None
    return following if result.page.height and following < result.total else None
