"""Listing, stats and pruning of tracking records, checked against figures the
test computes itself from the rows it inserted."""

from __future__ import annotations

import asyncio
import random
import statistics
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from sidecar.payments.errors import InvalidRequest
from sidecar.store.retention import run_retention
from sidecar.store.tracking_queries import get_record, get_stats, list_records, prune

BASE = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
NETWORKS = ["eip155:84532", "eip155:8453", None]
ASSETS = ["0x036CbD53842c5426634e7929541eC2318f3dCF7e", "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"]
PAYERS = ["0x1111111111111111111111111111111111111111", "0x2222222222222222222222222222222222222222"]
SETTLEMENTS = [
    None,
    {"success": True, "transaction": "0xabc"},
    {"success": False, "error_reason": "insufficient_funds"},
    {"transaction": "0xdef"},  # no success key: not a settlement attempt outcome
]

INSERT = """
INSERT INTO resource_call_records (id, "timestamp", path, payment_required, payment_verified, payment,
                                   settlement, response_time_ms, request)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, '{}')
"""


def make_rows(count: int, seed: int = 402) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        network = rng.choice(NETWORKS)
        payment = None
        if network is not None:
            payment = {
                "scheme": "exact",
                "network": network,
                "asset": rng.choice(ASSETS),
                "payer": rng.choice(PAYERS),
                # beyond float precision on purpose: volumes must stay exact
                "amount": str(rng.randrange(10**24, 10**25)),
            }
        rows.append({
            "id": uuid.uuid4(),
            "timestamp": BASE + timedelta(seconds=i // 4),  # four rows share each timestamp
            "path": rng.choice(["/v1/records", "/v1/datasets/a/records", None]),
            "payment_required": rng.random() < 0.8,
            "payment_verified": rng.random() < 0.6,
            "payment": payment,
            "settlement": rng.choice(SETTLEMENTS),
            "response_time_ms": rng.choice([None, *range(0, 500, 7)]),
        })
    return rows


async def insert(pool, rows: list[dict]) -> None:
    await pool.executemany(INSERT, [
        (r["id"], r["timestamp"], r["path"], r["payment_required"], r["payment_verified"], r["payment"],
         r["settlement"], r["response_time_ms"]) for r in rows
    ])


@pytest.fixture
async def rows(pool):
    rows = make_rows(130)
    await insert(pool, rows)
    return rows


async def all_pages(pool, **query) -> list[uuid.UUID]:
    seen, cursor = [], None
    while True:
        page = await list_records(pool, limit=7, cursor=cursor, **query)
        seen += [record["id"] for record in page.records]
        assert len(page.records) <= 7
        if not page.has_more:
            assert page.next_cursor is None
            return seen
        cursor = page.next_cursor


async def test_pages_return_every_row_exactly_once_in_order(pool, rows):
    newest_first = sorted(rows, key=lambda r: (r["timestamp"], r["id"]), reverse=True)
    assert await all_pages(pool) == [r["id"] for r in newest_first]

    fastest_first = sorted(rows, key=lambda r: (r["response_time_ms"] or 0, r["id"]))
    assert await all_pages(pool, sort_by="response_time", ascending=True) == [r["id"] for r in fastest_first]


async def test_filters_select_the_matching_rows(pool, rows):
    def settled(r):
        return bool(r["settlement"]) and r["settlement"].get("success") is True

    cases = [
        ({"network": "eip155:8453"}, lambda r: r["payment"] and r["payment"]["network"] == "eip155:8453"),
        ({"payer": PAYERS[0], "scheme": "exact"}, lambda r: r["payment"] and r["payment"]["payer"] == PAYERS[0]),
        ({"path": "/v1/records", "verified": True}, lambda r: r["path"] == "/v1/records" and r["payment_verified"]),
        ({"settled": True}, settled),
        ({"settled": False, "verified": False}, lambda r: not settled(r) and not r["payment_verified"]),
        ({"start": BASE + timedelta(seconds=5), "end": BASE + timedelta(seconds=9)},
         lambda r: BASE + timedelta(seconds=5) <= r["timestamp"] < BASE + timedelta(seconds=9)),
    ]
    for query, matches in cases:
        expected = {r["id"] for r in rows if matches(r)}
        assert expected, query
        page = await list_records(pool, limit=100, **query)
        assert page.total == len(expected), query
        assert set(await all_pages(pool, **query)) == expected, query


async def test_limit_is_clamped_and_defaults_to_fifty(pool, rows):
    assert len((await list_records(pool)).records) == 50
    assert len((await list_records(pool, limit=1000)).records) == 100
    page = await list_records(pool, limit=0)
    assert len(page.records) == 1 and page.total == len(rows) and page.has_more


async def test_bad_cursor_is_the_callers_error_and_a_bad_sort_ours(pool, rows):
    page = await list_records(pool, limit=5)
    for cursor in ("not-base64!", "e30", page.next_cursor[:-3]):
        with pytest.raises(InvalidRequest, match="invalid cursor"):
            await list_records(pool, cursor=cursor)
    with pytest.raises(InvalidRequest, match="invalid cursor"):
        await list_records(pool, cursor=page.next_cursor, sort_by="response_time")
    with pytest.raises(ValueError, match="sort_by"):
        await list_records(pool, sort_by="amount")


async def test_get_record(pool, rows):
    record = await get_record(pool, str(rows[3]["id"]))
    assert record["id"] == rows[3]["id"] and record["payment"] == rows[3]["payment"]
    assert await get_record(pool, uuid.uuid4()) is None
    with pytest.raises(ValueError, match="UUID"):
        await get_record(pool, "nope")


def expected_stats(rows: list[dict]) -> dict:
    def has_success_key(r):
        return r["settlement"] is not None and "success" in r["settlement"]

    succeeded = [r for r in rows if has_success_key(r) and r["settlement"]["success"] is True]
    times = sorted(r["response_time_ms"] for r in rows if r["response_time_ms"] is not None)
    position = 0.95 * (len(times) - 1)
    low = int(position)
    high = min(low + 1, len(times) - 1)
    volume_network, volume_asset = Counter(), Counter()
    for r in succeeded:
        if r["payment"]:
            volume_network[r["payment"]["network"]] += int(r["payment"]["amount"])
            volume_asset[f"{r['payment']['network']}:{r['payment']['asset']}"] += int(r["payment"]["amount"])
    return {
        "total_requests": len(rows),
        "payment_required_requests": sum(r["payment_required"] for r in rows),
        "verified_payments": sum(r["payment_verified"] for r in rows),
        "successful_settlements": len(succeeded),
        "failed_settlements": sum(has_success_key(r) and r["settlement"]["success"] is not True for r in rows),
        "avg_response_time_ms": pytest.approx(statistics.fmean(times)),
        "p95_response_time_ms": pytest.approx(times[low] + (times[high] - times[low]) * (position - low)),
        "by_path": dict(Counter(r["path"] or "" for r in rows)),
        "by_network": dict(Counter(r["payment"]["network"] for r in rows if r["payment"])),
        "by_scheme": dict(Counter(r["payment"]["scheme"] for r in rows if r["payment"])),
        "volume_by_network": {k: str(v) for k, v in volume_network.items()},
        "volume_by_network_asset": {k: str(v) for k, v in volume_asset.items()},
    }


async def test_stats_match_the_rows(pool, rows):
    stats = await get_stats(pool)
    assert vars(stats) == expected_stats(rows)
    assert stats.failed_settlements > 0 and stats.volume_by_network

    start, end = BASE + timedelta(seconds=3), BASE + timedelta(seconds=20)
    window = [r for r in rows if start <= r["timestamp"] < end]
    assert vars(await get_stats(pool, start, end)) == expected_stats(window)


async def test_stats_of_an_empty_range_are_zero(pool, rows):
    stats = await get_stats(pool, BASE - timedelta(days=2), BASE - timedelta(days=1))
    assert (stats.total_requests, stats.avg_response_time_ms, stats.by_path, stats.volume_by_network) == (0, 0.0, {}, {})


def aged(rows: list[dict], now: datetime) -> tuple[set[uuid.UUID], set[uuid.UUID]]:
    for i, row in enumerate(rows):
        row["timestamp"] = now - timedelta(days=120 if i % 3 == 0 else 30, seconds=i)
    return {r["id"] for r in rows if r["timestamp"] < now - timedelta(days=90)}, {
        r["id"] for r in rows if r["timestamp"] >= now - timedelta(days=90)
    }


async def test_prune_deletes_only_old_rows(pool):
    now = datetime.now(UTC)
    rows = make_rows(40)
    old, recent = aged(rows, now)
    await insert(pool, rows)
    assert await prune(pool, now - timedelta(days=90), batch_size=3) == len(old)
    assert set(await pool.fetchval("SELECT array_agg(id) FROM resource_call_records")) == recent


async def test_retention_job_prunes_until_stopped(pool):
    rows = make_rows(20)
    old, recent = aged(rows, datetime.now(UTC))
    await insert(pool, rows)
    stop = asyncio.Event()
    job = asyncio.create_task(run_retention(pool, retention_days=90, interval_s=3600, stop=stop, min_retention_days=7))
    async with asyncio.timeout(10):
        while await pool.fetchval("SELECT count(*) FROM resource_call_records") != len(recent):
            await asyncio.sleep(0.02)
    stop.set()
    await asyncio.wait_for(job, 5)
    assert set(await pool.fetchval("SELECT array_agg(id) FROM resource_call_records")) == recent


@pytest.fixture
async def recent_rows(pool):
    """Rows over the last three weeks, denser lately, and two a few hours ahead
    (a clock running fast): pages by time look in a day, then a week, then further."""
    now = datetime.now(UTC)
    rows = make_rows(150, seed=7)
    for i, row in enumerate(rows):
        row["timestamp"] = now - timedelta(minutes=(i * 8) ** 1.45 // 1) + (timedelta(hours=5) if i < 2 else timedelta())
    await pool.execute(
        "SELECT resource_call_records_create_partitions('day', $1, $2)", now - timedelta(days=25), now
    )
    await insert(pool, rows)
    return rows


async def test_pages_by_time_cross_days_and_weeks_exactly_once(pool, recent_rows):
    now = datetime.now(UTC)
    assert recent_rows[-1]["timestamp"] < now - timedelta(days=14)

    def ordered(rows, ascending=False):
        return [r["id"] for r in sorted(rows, key=lambda r: (r["timestamp"], r["id"]), reverse=not ascending)]

    assert await all_pages(pool) == ordered(recent_rows)
    assert await all_pages(pool, ascending=True) == ordered(recent_rows, ascending=True)
    start, end = now - timedelta(days=10), now - timedelta(hours=2)
    window = [r for r in recent_rows if start <= r["timestamp"] < end]
    assert await all_pages(pool, start=start, end=end) == ordered(window)
    assert await all_pages(pool, start=start, ascending=True) == ordered(
        [r for r in recent_rows if r["timestamp"] >= start], ascending=True
    )
    rare = [r for r in recent_rows if r["payment"] and r["payment"]["payer"] == PAYERS[1] and r["payment_verified"]]
    assert await all_pages(pool, payer=PAYERS[1], verified=True) == ordered(rare)


async def test_total_is_exact_up_to_the_bound_then_estimated(pool, rows, monkeypatch):
    from sidecar.store import tracking_queries

    await pool.execute("ANALYZE resource_call_records")
    monkeypatch.setattr(tracking_queries, "EXACT_TOTAL_UP_TO", 20)
    start, end = BASE + timedelta(seconds=3), BASE + timedelta(seconds=7)  # four seconds, four rows each
    assert (await list_records(pool, limit=5, start=start, end=end)).total == 16
    everything = await list_records(pool, limit=5)
    assert everything.total > 20 and everything.total == pytest.approx(len(rows), rel=0.5)  # the planner's estimate


async def test_stats_of_a_range_read_in_parts_match_the_rows(pool, recent_rows):
    now = datetime.now(UTC)
    start, end = now - timedelta(days=9), now + timedelta(hours=6)  # long enough to be read in parts
    window = [r for r in recent_rows if start <= r["timestamp"] < end]
    assert vars(await get_stats(pool, start, end)) == expected_stats(window)


async def test_average_and_95th_percentile_are_postgresqls_own(pool):
    rng = random.Random(95)
    rows = make_rows(400, seed=95)
    for row in rows:
        row["response_time_ms"] = rng.choice([None, rng.randrange(0, 40), rng.randrange(0, 100_000)])
    await insert(pool, rows)
    expected = await pool.fetchrow(
        "SELECT avg(response_time_ms)::float8 AS avg, percentile_cont(0.95) WITHIN GROUP (ORDER BY response_time_ms)"
        " AS p95 FROM resource_call_records"
    )
    stats = await get_stats(pool)
    assert (stats.avg_response_time_ms, stats.p95_response_time_ms) == (
        pytest.approx(expected["avg"], rel=1e-12), expected["p95"]
    )


async def test_volume_counts_only_plain_integer_amounts_of_1_to_78_digits(pool):
    largest = "9" * 78
    amounts = ["1000", largest, "9" * 79, "", "1e3", "-5", " 7", "12.5", "0x10", "٣"]
    rows = make_rows(len(amounts), seed=3)
    for row, amount in zip(rows, amounts, strict=True):
        row["payment"] = {"scheme": "exact", "network": "eip155:8453", "asset": ASSETS[0], "amount": amount}
        row["settlement"] = {"success": True}
    await insert(pool, rows)
    stats = await get_stats(pool)
    assert stats.volume_by_network == {"eip155:8453": str(1000 + int(largest))}
    assert stats.successful_settlements == len(amounts)
