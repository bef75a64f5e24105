"""The query engine against the shipped sample data. Expected rows are computed here
from the CSV files with the csv module, independently of polars."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from typing import Any

import pytest

from gateway.constants import SAMPLE_DATA_DIR
from gateway.datasets import load_dataset
from gateway.query import QueryError, next_offset, parse_query, run_query
from gateway.render import render

# Column -> how to read the CSV text as the JSON value the gateway must answer with.
CONVERTERS: dict[str, dict[str, Callable[[str], Any]]] = {
    "observations": {
        "date": str,
        "city": str,
        "country": str,
        "temp_c": float,
        "humidity_pct": int,
        "precipitation_mm": float,
        "wind_kph": float,
        "rain": lambda text: text == "true",
        "condition": str,
    },
    "stations": {
        "station_id": str,
        "city": str,
        "country": str,
        "latitude": float,
        "longitude": float,
        "elevation_m": int,
        "active": lambda text: text == "true",
        "installed_at": str,
    },
}

Row = dict[str, Any]


def source_rows(name: str) -> list[Row]:
    with (SAMPLE_DATA_DIR / f"{name}.csv").open(encoding="utf-8", newline="") as handle:
        converters = CONVERTERS[name]
        return [{column: converters[column](text) for column, text in row.items()} for row in csv.DictReader(handle)]


def source_text_rows(name: str) -> list[dict[str, str]]:
    with (SAMPLE_DATA_DIR / f"{name}.csv").open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


DATASETS = {name: load_dataset(SAMPLE_DATA_DIR / f"{name}.csv") for name in CONVERTERS}
ROWS = {name: source_rows(name) for name in CONVERTERS}


def run(name: str, params: list[tuple[str, str]], accept: str | None = None) -> tuple[Any, bytes]:
    dataset = DATASETS[name]
    plan = parse_query(params, dataset.types, accept=accept)
    result = run_query(dataset.frame, plan)
    return plan, render(result, plan, None).body


def run_json(name: str, params: list[tuple[str, str]]) -> dict[str, Any]:
    _plan, body = run(name, params)
    return json.loads(body)


# (dataset, query, the same condition in Python)
FILTERS = [
    ("observations", [("city", "Oslo")], lambda r: r["city"] == "Oslo"),
    ("observations", [("temp_c", "20.5")], lambda r: r["temp_c"] == 20.5),
    ("observations", [("humidity_pct", "80")], lambda r: r["humidity_pct"] == 80),
    ("observations", [("rain", "true")], lambda r: r["rain"] is True),
    ("observations", [("date", "2024-02-29")], lambda r: r["date"] == "2024-02-29"),
    ("observations", [("temp_c__gt", "30")], lambda r: r["temp_c"] > 30),
    ("observations", [("humidity_pct__gte", "95")], lambda r: r["humidity_pct"] >= 95),
    ("observations", [("temp_c__lt", "-5")], lambda r: r["temp_c"] < -5),
    ("observations", [("date__lte", "2023-01-03")], lambda r: r["date"] <= "2023-01-03"),
    ("observations", [("condition__ne", "sunny")], lambda r: r["condition"] != "sunny"),
    ("observations", [("city__contains", "o")], lambda r: "o" in r["city"]),
    ("observations", [("city__in", "Oslo,Lima")], lambda r: r["city"] in ("Oslo", "Lima")),
    ("observations", [("humidity_pct__in", "50,60,70")], lambda r: r["humidity_pct"] in (50, 60, 70)),
    ("observations", [("date__in", "2023-06-01,2024-06-01")], lambda r: r["date"] in ("2023-06-01", "2024-06-01")),
    ("observations", [("rain", "false"), ("condition__ne", "sunny")], lambda r: not r["rain"] and r["condition"] != "sunny"),
    (
        "observations",
        [("city", "Tokyo"), ("rain", "true"), ("temp_c__gte", "20")],
        lambda r: r["city"] == "Tokyo" and r["rain"] and r["temp_c"] >= 20,
    ),
    ("observations", [("wind_kph__gt", "10"), ("wind_kph__lt", "10.5")], lambda r: 10 < r["wind_kph"] < 10.5),
    ("stations", [("active", "false")], lambda r: r["active"] is False),
    (
        "stations",
        [("installed_at__gte", "2015-01-01T00:00:00")],
        lambda r: r["installed_at"] >= "2015-01-01T00:00:00",
    ),
    ("stations", [("installed_at__lt", "2012-01-01")], lambda r: r["installed_at"] < "2012-01-01"),
    ("stations", [("elevation_m__ne", "23")], lambda r: r["elevation_m"] != 23),
    ("stations", [("latitude__lte", "0")], lambda r: r["latitude"] <= 0),
]


@pytest.mark.parametrize(("name", "params", "predicate"), FILTERS, ids=[str(f[1]) for f in FILTERS])
def test_filter_returns_exactly_the_matching_rows(name, params, predicate):
    expected = [row for row in ROWS[name] if predicate(row)]
    assert expected, "a filter case must match something to prove anything"
    answer = run_json(name, [*params, ("_limit", "1000")])
    assert answer["meta"]["total"] == len(expected)
    assert answer["data"] == expected[:1000]


def test_sort_with_offset_and_limit_is_a_stable_multi_key_order():
    rows = sorted(ROWS["observations"], key=lambda r: r["city"])
    rows = sorted(rows, key=lambda r: r["temp_c"], reverse=True)
    answer = run_json("observations", [("_sort", "-temp_c,city"), ("_offset", "10"), ("_limit", "50")])
    assert answer["data"] == rows[10:60]
    assert answer["meta"] == {"total": len(rows), "limit": 50, "offset": 10, "next": None}


def test_filtered_sort_ascending_by_date_then_city_descending():
    matching = [r for r in ROWS["observations"] if r["condition"] == "snow"]
    matching = sorted(matching, key=lambda r: r["city"], reverse=True)
    matching = sorted(matching, key=lambda r: r["date"])
    answer = run_json("observations", [("condition", "snow"), ("_sort", "date,-city"), ("_limit", "1000")])
    assert answer["data"] == matching


def test_fields_select_and_order_columns():
    answer = run_json("stations", [("_fields", "country,station_id"), ("_limit", "3")])
    assert answer["data"] == [{"country": r["country"], "station_id": r["station_id"]} for r in ROWS["stations"][:3]]
    assert all(list(row) == ["country", "station_id"] for row in answer["data"])


def test_default_limit_is_100_and_pages_follow_each_other():
    dataset = DATASETS["observations"]
    plan = parse_query([], dataset.types)
    first = run_query(dataset.frame, plan)
    assert plan.limit == 100 and first.page.height == 100
    assert next_offset(plan, first) == 100

    last_plan = parse_query([("_offset", str(len(ROWS["observations"]) - 5))], dataset.types)
    last = run_query(dataset.frame, last_plan)
    assert last.page.height == 5
    assert next_offset(last_plan, last) is None


def test_csv_format_reproduces_the_source_text():
    plan, body = run("observations", [("city", "Lima"), ("_limit", "40"), ("_format", "csv")])
    expected = [r for r in source_text_rows("observations") if r["city"] == "Lima"][:40]
    assert plan.format == "csv"
    assert list(csv.DictReader(io.StringIO(body.decode()))) == expected


def test_csv_datetimes_are_iso_like_the_source():
    _plan, body = run("stations", [("_format", "csv")])
    assert list(csv.DictReader(io.StringIO(body.decode()))) == source_text_rows("stations")


def test_ndjson_format_is_one_typed_row_per_line():
    plan, body = run("stations", [("active", "true"), ("_format", "ndjson")])
    expected = [r for r in ROWS["stations"] if r["active"]]
    assert plan.format == "ndjson"
    assert [json.loads(line) for line in body.decode().splitlines()] == expected


def test_json_format_keeps_datetimes_iso():
    answer = run_json("stations", [("station_id", "ST-002")])
    assert answer["data"][0]["installed_at"] == "2019-09-12T09:57:00"


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        ("text/csv", "csv"),
        ("application/x-ndjson", "ndjson"),
        ("text/html, application/ndjson;q=0.9", "ndjson"),
        ("*/*", "json"),
        (None, "json"),
    ],
)
def test_format_is_negotiated_from_accept(accept, expected):
    plan, _body = run("stations", [], accept=accept)
    assert plan.format == expected


def test_explicit_format_wins_over_accept():
    plan, _body = run("stations", [("_format", "json")], accept="text/csv")
    assert plan.format == "json"


def test_empty_result_has_total_zero_and_no_next():
    answer = run_json("observations", [("temp_c__gt", "100")])
    assert answer == {"data": [], "meta": {"total": 0, "limit": 100, "offset": 0, "next": None}}


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ([("nope", "1")], "unknown column 'nope'; columns: date, city"),
        ([("city__like", "x")], "unknown operator 'like'; operators: gt, gte, lt, lte, ne, contains, in"),
        ([("temp_c__gt", "warm")], "temp_c is a float column: expected a number, got 'warm'"),
        ([("humidity_pct", "1.5")], "humidity_pct is a int column: expected an integer"),
        ([("rain", "maybe")], "rain is a bool column: expected true or false"),
        ([("date", "31/01/2024")], "date is a date column: expected a date like 2024-01-31"),
        ([("temp_c__contains", "1")], "contains works on string columns only"),
        ([("rain__gt", "true")], "rain is a bool column"),
        ([("city__in", "")], "city__in needs comma-separated values"),
        ([("_limit", "0")], "_limit must be an integer from 1 to 1000"),
        ([("_limit", "1001")], "_limit must be an integer from 1 to 1000"),
        ([("_limit", "ten")], "_limit must be an integer from 1 to 1000"),
        ([("_offset", "-1")], "_offset must be an integer from 0"),
        ([("_sort", "city,altitude")], "_sort: unknown column 'altitude'"),
        ([("_fields", "city,,date")], "_fields needs comma-separated column names"),
        ([("_fields", "city,city")], "_fields lists a column twice"),
        ([("_format", "xml")], "_format must be one of json, csv, ndjson"),
        ([("_page", "2")], "unknown parameter '_page'; parameters: _sort, _limit, _offset, _fields, _format"),
        ([("_limit", "5"), ("_limit", "6")], "_limit given more than once"),
        ([("temp_c", "nan")], "expected a number"),
    ],
)
def test_bad_query_is_refused_with_a_message_saying_what_is_allowed(params, message):
    with pytest.raises(QueryError) as refused:
        parse_query(params, DATASETS["observations"].types)
    assert message in refused.value.message
