"""Batched statements of the tracking writer.

A batch holds row writes that set different sets of columns (each lifecycle
step sets its own), so the statements are built per column set from the
column list of sidecar/store/schema.py and cached; the identifiers come from
that list only, the values always travel as parameters. Every column is sent
as one array and the rows are rebuilt with unnest(), so a batch of any size is
one round trip per column set.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from functools import lru_cache
from typing import Any

from .schema import COLUMNS, COLUMNS_BY_NAME, TABLE
from .tracking_rows import KEY_TIME, METADATA


_POSITION = {column.name: i for i, column in enumerate(COLUMNS)}


def _array_type(column: str) -> str:
    sql_type = COLUMNS_BY_NAME[column].sql_type
    if sql_type == "jsonb":
        return "text[]"  # sent as JSON text (RowWrite.encoded), cast back below
    if sql_type.startswith("character varying"):
        return "text[]"
    if sql_type == "timestamp with time zone":
        return "timestamptz[]"
    return f"{sql_type}[]"


def _from_unnest(column: str) -> str:
    cast = "::jsonb" if COLUMNS_BY_NAME[column].sql_type == "jsonb" else ""
    return f'u."{column}"{cast}'


def _unnest(columns: tuple[str, ...]) -> str:
    arrays = ", ".join(f"${i}::{_array_type(c)}" for i, c in enumerate(columns, start=1))
    names = ", ".join(f'"{c}"' for c in columns)
    return f"unnest({arrays}) AS u({names})"


def _merge_metadata(new: str) -> str:
    return f"{METADATA} = coalesce(t.{METADATA}, '{{}}'::jsonb) || coalesce({new}, '{{}}'::jsonb)"


@lru_cache(maxsize=256)
def statement(start: bool, columns: frozenset[str]) -> tuple[str, tuple[str, ...]]:
    """The statement for row writes that set `columns` (besides id), and the
    column order its parameters follow."""
    ordered = tuple(sorted(columns, key=_POSITION.__getitem__))
    return (_upsert_sql(ordered) if start else _update_sql(ordered)), ordered


def _upsert_sql(columns: tuple[str, ...]) -> str:
    # A row that exists already (a spool or journal written again) gets the
    # same columns set, so applying the write again is harmless. Its timestamp
    # stays: a retried Authorize of the call (a START again) keeps the time the
    # call began. A row is its id and that time (the primary key: the time is
    # the partition key), which a write that starts the record always carries.
    every = ("id", *columns)
    names = ", ".join(f'"{c}"' for c in every)
    values = ", ".join(_from_unnest(c) for c in every)
    sets = ", ".join(
        _merge_metadata("EXCLUDED.metadata") if c == METADATA else f'"{c}" = EXCLUDED."{c}"'
        for c in columns
        if c != KEY_TIME
    )
    conflict = f"DO UPDATE SET {sets}" if sets else "DO NOTHING"
    return (
        f"INSERT INTO {TABLE} AS t ({names}) SELECT {values} FROM {_unnest(every)} "
        f'ON CONFLICT (id, "{KEY_TIME}") {conflict}'
    )


def _update_sql(columns: tuple[str, ...]) -> str:
    # A later step never changes "timestamp": when a write carries it, it is the
    # record's START time (StartTimes, tracking_rows.py), and matching on it too
    # lets PostgreSQL look in that one partition instead of in every one.
    # RETURNING tells which rows existed.
    sets = ", ".join(
        _merge_metadata(_from_unnest(c)) if c == METADATA else f'"{c}" = {_from_unnest(c)}'
        for c in columns
        if c != KEY_TIME
    )
    match = f't.id = u.id AND t."{KEY_TIME}" = u."{KEY_TIME}"' if KEY_TIME in columns else "t.id = u.id"
    return f"UPDATE {TABLE} AS t SET {sets} FROM {_unnest(('id', *columns))} WHERE {match} RETURNING t.id"


# The rows that the STARTs of a chunk continue: a retried Authorize starts its
# call's record again, maybe on another replica (whose clock may differ a little)
# or after a restart, a moment after the first attempt did. Parameters: the ids,
# and the range of their times widened by CONTINUE_WITHIN on both sides.
CONTINUED = f"""
SELECT id, "{KEY_TIME}" FROM {TABLE}
WHERE id = ANY($1::uuid[]) AND "{KEY_TIME}" >= $2 AND "{KEY_TIME}" <= $3
"""
CONTINUE_WITHIN = timedelta(days=1)


def arguments(rows: list[tuple[uuid.UUID, dict[str, Any]]], columns: tuple[str, ...]) -> list[list[Any]]:
    """One array per parameter: the ids, then each column's values (RowWrite.encoded())."""
    return [[record_id for record_id, _ in rows], *([values[c] for _, values in rows] for c in columns)]
