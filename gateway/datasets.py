"""Datasets: every `*.csv` of the data directory, loaded once at start into a typed
polars DataFrame. Column types are inferred from the whole file."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import polars as pl

logger = logging.getLogger(__name__)

_DATASET_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_INFER_ROWS = 10_000
# What an ISO 8601 date or date-time starts with.
_ISO_DATE_START = re.compile(r"\d{4}-\d{2}-\d{2}")


class ColumnType(StrEnum):
    INT = "int"
    FLOAT = "float"
    BOOL = "bool"
    DATE = "date"
    DATETIME = "datetime"
    STRING = "string"


class DatasetError(Exception):
    """A data file that cannot be served; raised at start, never per request."""


@dataclass(frozen=True)
class Column:
    name: str
    type: ColumnType


@dataclass(frozen=True)
class Dataset:
    name: str
    frame: pl.DataFrame
    columns: tuple[Column, ...]

    @property
    def rows(self) -> int:
        return self.frame.height

    @property
    def types(self) -> dict[str, ColumnType]:
        return {column.name: column.type for column in self.columns}


def _column_type(dtype: pl.DataType) -> ColumnType:
    if dtype.is_integer():
        return ColumnType.INT
    if dtype.is_float():
        return ColumnType.FLOAT
    if dtype == pl.Boolean:
        return ColumnType.BOOL
    if dtype == pl.Date:
        return ColumnType.DATE
    if isinstance(dtype, pl.Datetime):
        return ColumnType.DATETIME
    return ColumnType.STRING


def _as_temporal(column: pl.Series) -> pl.Series | None:
    """The text column as dates or date-times when every value parses, else None.
    Date-times with an offset become naive UTC, like everything the engine compares."""
    sample = column.drop_nulls().head(1).to_list()
    # Checked first because a failed parse attempt costs far more than a successful one.
    if not sample or not _ISO_DATE_START.match(sample[0]):
        return None
    attempts = (
        lambda text: text.str.to_date("%Y-%m-%d", strict=True),
        lambda text: text.str.to_datetime(strict=True, time_unit="us"),
    )
    for attempt in attempts:
        try:
            parsed = attempt(column)
        except pl.exceptions.PolarsError:
            continue
        if isinstance(parsed.dtype, pl.Datetime) and parsed.dtype.time_zone is not None:
            parsed = parsed.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
        return parsed
    return None


def _read_csv(path: Path) -> pl.DataFrame:
    """Types inferred from the first rows; when a later value does not fit them the
    read fails, and the types are inferred from every row instead (several times
    slower on big files). Dates are recognised afterwards, column by column: polars'
    own date inference is slower still."""
    try:
        return pl.read_csv(path, infer_schema_length=_INFER_ROWS)
    except pl.exceptions.ComputeError:
        return pl.read_csv(path, infer_schema_length=None)


def load_dataset(path: Path) -> Dataset:
    name = path.stem
    if not _DATASET_NAME.fullmatch(name):
        raise DatasetError(f"{path}: dataset names may use letters, digits, '_' and '-' (1-64 chars)")
    try:
        frame = _read_csv(path)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DatasetError(f"{path}: cannot read CSV: {exc}") from exc
    if frame.width == 0:
        raise DatasetError(f"{path}: no columns")
    temporal = {}
    for column, dtype in frame.schema.items():
        if dtype == pl.String:
            parsed = _as_temporal(frame[column])
            if parsed is not None:
                temporal[column] = parsed
    frame = frame.with_columns(**temporal) if temporal else frame
    columns = tuple(Column(column, _column_type(dtype)) for column, dtype in frame.schema.items())
    # Anything polars typed beyond our six kinds (e.g. all-empty columns) is served
    # as text, so the query engine deals with exactly those six.
    text = [c.name for c in columns if c.type is ColumnType.STRING and frame.schema[c.name] != pl.String]
    if text:
        frame = frame.with_columns(pl.col(text).cast(pl.String))
    return Dataset(name=name, frame=frame.rechunk(), columns=columns)


def load_datasets(data_dir: Path) -> dict[str, Dataset]:
    """Every CSV of `data_dir`, by name (sorted)."""
    paths = sorted(data_dir.glob("*.csv"))
    if not paths:
        raise DatasetError(f"no *.csv files in {data_dir}")
    datasets = {}
    for path in paths:
        dataset = load_dataset(path)
        datasets[dataset.name] = dataset
        logger.info("dataset %s: %d rows, %d columns", dataset.name, dataset.rows, len(dataset.columns))
    return datasets
