"""Tracking at scale: ListRecords and GetStats through a real sidecar over gRPC
on millions of records spread over a month of daily partitions, the tracking
writer's UPDATE on that table, and the time retention takes to prune a month.

    python bench/tracking_scale.py [--rows 5000000] [--days 30] [--samples 200]

Uses $DATABASE_URL (a scratch database is created next to it and dropped after),
otherwise an embedded pgserver in a temporary directory. `--keep NAME` loads the
database NAME next to $DATABASE_URL once and keeps it for later runs (then the
prune, which empties it, runs only with `--prune`).

The rows are made by PostgreSQL itself (generate_series), a day at a time, in
time order as the sidecar writes them, shaped like the sidecar's records: 30 %
unpaid challenges, 3 % refused payments, 1 % failed settlements, 1 % released,
65 % settled; 20 paths, two networks, two schemes, 5,000 payers of very unequal
activity. The partitions are the ones the sidecar makes (one per UTC day); then
VACUUM ANALYZE, as autovacuum would have done on a live table.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import grpc
from google.protobuf.timestamp_pb2 import Timestamp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import services  # noqa: E402
from bench.baselines import postgres_server_pid  # noqa: E402
from bench.cpu import CpuMeter, with_children  # noqa: E402
from bench.stack import start_sidecar  # noqa: E402
from bench.tracking_write import database  # noqa: E402
from paysidecar.v1 import tracking_pb2, tracking_pb2_grpc  # noqa: E402
from sidecar.config import Settings  # noqa: E402
from sidecar.store.db import create_pool  # noqa: E402
from sidecar.store.migrate import apply_migrations  # noqa: E402
from sidecar.store.partitions import list_partitions  # noqa: E402
from sidecar.store.tracking_queries import prune  # noqa: E402
from sidecar.store.tracking_sql import arguments, statement  # noqa: E402

CPU_GROUPS = ("sidecar", "postgres")

# One day (or part of one) of records, in time order over [$1, $1 + $2), $3 rows.
LOAD_DAY = """
INSERT INTO resource_call_records (
    id, request_id, method, path, route_key, url, "timestamp", payment_required, payment_verified,
    verification_error, payment, settlement, x402_version, payment_nonce, payment_valid_before,
    payload_hash, requirements_hash, payment_signature_hash, response_status, response_time_ms,
    handler_executed, request, route_config, metadata)
SELECT gen_random_uuid(), rid, 'GET', path, 'GET ' || path, 'http://127.0.0.1:8402' || path || '?_limit=20',
       ts, true, kind >= 2,
       CASE WHEN kind = 1 THEN 'invalid_payment' END,
       CASE WHEN kind >= 1 THEN jsonb_build_object('scheme', scheme, 'network', network, 'asset', asset,
            'amount', '1000', 'payer', payer, 'pay_to', pay_to) END,
       CASE kind
           WHEN 2 THEN jsonb_build_object('success', false, 'status', 'failed', 'network', network, 'payer', payer,
                                          'error_reason', 'settlement_failed', 'facilitator', 'http://facilitator-1')
           WHEN 3 THEN jsonb_build_object('success', false, 'released', true, 'reason', 'handler_status_500',
                                          'ledger_state', 'released')
           WHEN 4 THEN jsonb_build_object('success', true, 'status', 'settled', 'transaction', '0x' || h,
                                          'network', network, 'payer', payer, 'facilitator', 'http://facilitator-1',
                                          'reconciled', false) END,
       CASE WHEN kind >= 1 THEN 2 END,
       CASE WHEN kind >= 1 THEN '0x' || h END,
       CASE WHEN kind >= 1 THEN '1900000000' END,
       CASE WHEN kind >= 1 THEN h END,
       CASE WHEN kind >= 1 THEN md5(path) || md5(network) END,
       CASE WHEN kind >= 1 THEN md5(rid) || md5(h) END,
       CASE kind WHEN 4 THEN 200 WHEN 3 THEN 500 ELSE 402 END,
       response_ms, kind >= 3,
       jsonb_build_object('method', 'GET', 'query', '_limit=20', 'client_ip', client_ip, 'user_agent', 'client/1.0',
                          'headers', jsonb_build_object('accept', 'application/json', 'user-agent', 'client/1.0',
                                                        'x-request-id', rid)),
       jsonb_build_object('key', 'GET ' || path, 'amount', '1000', 'asset', asset, 'network', network,
                          'pay_to', pay_to, 'description', '', 'mime_type', 'application/json', 'facilitators', '[]'::jsonb),
       jsonb_build_object('request_id', rid, 'trace_id', substr(h, 1, 32))
FROM (
    SELECT ts, rid, h, path, scheme, network, payer, response_ms, client_ip,
           CASE WHEN r < 0.30 THEN 0 WHEN r < 0.33 THEN 1 WHEN r < 0.34 THEN 2 WHEN r < 0.35 THEN 3 ELSE 4 END AS kind,
           '0x036CbD53842c5426634e7929541eC2318f3dCF7e' AS asset,
           '0x70997970C51812dc3A010C7d01b50e0d17dc79C8' AS pay_to
    FROM (
        SELECT $1::timestamptz + (g - 1) * ($2::interval / $3) AS ts,
               'req-' || md5(random()::text) AS rid,
               md5(random()::text) || md5(random()::text) AS h,
               '/v1/datasets/dataset' || floor(20 * random() ^ 2)::int || '/records' AS path,
               CASE WHEN random() < 0.8 THEN 'exact' ELSE 'batch-settlement' END AS scheme,
               CASE WHEN random() < 0.7 THEN 'eip155:84532' ELSE 'eip155:8453' END AS network,
               '0x' || lpad(to_hex(floor(5000 * random() ^ 3)::int), 40, '0') AS payer,
               (5 + 60 * random() ^ 2)::int AS response_ms,
               '10.0.' || (g % 250) || '.' || (g % 199) AS client_ip,
               random() AS r
        FROM generate_series(1, $3) g
    ) raw
) s
"""


@contextlib.asynccontextmanager
async def kept_database(url: str, name: str) -> AsyncIterator[str]:
    """The database NAME next to `url`, created and migrated when missing, kept after."""
    admin = await asyncpg.connect(url)
    try:
        if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    kept = urlunsplit(urlsplit(url)._replace(path=f"/{name}"))
    await apply_migrations(kept)
    yield kept


async def load(pool: asyncpg.Pool, rows: int, days: int, end: datetime) -> float:
    """`rows` records over the `days` days before `end`, two days at a time (the
    machine's two cores); returns the seconds it took."""
    begun = time.perf_counter()
    start = end - timedelta(days=days)
    ahead = timedelta(days=Settings.model_fields["tracking_partition_ahead_days"].default)
    await pool.execute("SELECT resource_call_records_create_partitions('day', $1, $2)", start, end + ahead)
    per_day = rows // days
    left = list(range(days))

    async def load_days() -> None:
        while left:
            day = left.pop(0)
            count = per_day if day < days - 1 else rows - per_day * (days - 1)
            await pool.execute(LOAD_DAY, start + timedelta(days=day), timedelta(days=1), count)
            print(f"  loaded day {day + 1}/{days} ({time.perf_counter() - begun:.0f} s)", flush=True)

    await asyncio.gather(load_days(), load_days())
    async with pool.acquire() as conn:
        await conn.execute("VACUUM ANALYZE resource_call_records")
    return time.perf_counter() - begun

def _stamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def _percentiles(times_ms: list[float]) -> tuple[float, float]:
    ordered = sorted(times_ms)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


@dataclass
class Timed:
    p50_ms: float
    p99_ms: float
    cpu_ms: dict[str, float]  # CPU per call by process group
    answer: object  # the last one


async def _timed(call: Callable[[], Awaitable[object]], samples: int, meter: CpuMeter | None = None) -> Timed:
    """`samples` calls after two warm-up calls, one at a time."""
    for _ in range(2):
        answer = await call()
    times = []
    before = meter.snapshot() if meter else {}
    for _ in range(samples):
        begun = time.perf_counter()
        answer = await call()
        times.append((time.perf_counter() - begun) * 1000)
    spent = CpuMeter.spent(before, meter.snapshot()) if meter else {}
    return Timed(*_percentiles(times), {group: s * 1000 / samples for group, s in spent.items()}, answer)


async def _payers(pool: asyncpg.Pool, since: datetime) -> tuple[str, str]:
    """A busy payer (about 1 % of the paid records) and a rare one (a few a day)."""
    rows = await pool.fetch(
        """SELECT payment ->> 'payer' AS payer, count(*) AS n FROM resource_call_records
           WHERE "timestamp" >= $1 AND payment ? 'payer' GROUP BY 1 ORDER BY 2 DESC""",
        since,
    )
    total = sum(r["n"] for r in rows)
    busy = min(rows, key=lambda r: abs(r["n"] / total - 0.01))["payer"]
    rare = min(rows, key=lambda r: abs(r["n"] - 5))["payer"]
    return busy, rare


async def list_cases(stub: tracking_pb2_grpc.TrackingServiceStub, pool: asyncpg.Pool, now: datetime):
    """(name, request) of the ListRecords pages measured; the deep page follows
    the cursors of the four pages before it."""
    busy, rare = await _payers(pool, now - timedelta(days=1))
    path = "/v1/datasets/dataset3/records"
    request = tracking_pb2.ListRecordsRequest
    cases = [
        ("newest 50, no filter", request()),
        ("path + settled", request(path=path, settled=True)),
        ("payer (1 % of paid records)", request(payer=busy)),
        ("payer (a few records a day)", request(payer=rare)),
        ("network + scheme", request(network="eip155:8453", scheme="batch-settlement")),
        ("verified, not settled (2 %)", request(verified=True, settled=False)),
        ("path, last hour", request(path=path, start=_stamp(now - timedelta(hours=1)))),
        ("one day, a week ago", request(start=_stamp(now - timedelta(days=8)), end=_stamp(now - timedelta(days=7)))),
        ("slowest first, last hour", request(start=_stamp(now - timedelta(hours=1)),
                                             sort_by=tracking_pb2.SORT_FIELD_RESPONSE_TIME)),
    ]
    deep = request(path=path, settled=True)
    for _ in range(4):
        deep.cursor = (await stub.ListRecords(deep)).next_cursor
    cases.append(("path + settled, 5th page (cursor)", deep))
    return cases


async def measure_updates(pool: asyncpg.Pool, now: datetime, samples: int, meter: CpuMeter) -> dict[str, Timed]:
    """The writer's UPDATE of 500 rows (a later step of 500 records started a
    few minutes ago) with and without the START time in its key; rolled back."""
    rows = await pool.fetch(
        """SELECT id, "timestamp" FROM resource_call_records WHERE "timestamp" >= $1 LIMIT 500""",
        now - timedelta(minutes=30),
    )
    figures = {}
    for name, keyed in (("keyed by id and START time", True), ("keyed by id only", False)):
        writes = [(r["id"], {"response_status": 200, **({"timestamp": r["timestamp"]} if keyed else {})}) for r in rows]
        sql, order = statement(False, frozenset(writes[0][1]))
        args = arguments(writes, order)

        async def update() -> None:
            async with pool.acquire() as conn:
                transaction = conn.transaction()
                await transaction.start()
                try:
                    assert len(await conn.fetch(sql, *args)) == len(rows)
                finally:
                    await transaction.rollback()

        figures[name] = await _timed(update, samples, meter)
    # The rolled-back row versions would slow the next run's newest pages until autovacuum came by.
    for partition in await pool.fetch(
        "SELECT DISTINCT tableoid::regclass::text AS name FROM resource_call_records WHERE id = ANY($1)",
        [r["id"] for r in rows],
    ):
        await pool.execute(f"VACUUM {partition['name']}")
    return figures


@contextlib.asynccontextmanager
async def tracking_service(db_url: str) -> AsyncIterator[tuple[tracking_pb2_grpc.TrackingServiceStub, int]]:
    """A real sidecar process on the database (its TrackingService is what is
    measured, over gRPC on loopback). Nothing here pays, so its facilitator URL
    points nowhere."""
    with tempfile.TemporaryDirectory(prefix="bench-tracking-scale-") as run_dir:
        sidecar = await start_sidecar("sidecar", db_url, "http://127.0.0.1:9", Path(run_dir))
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{sidecar.port}")
        try:
            yield tracking_pb2_grpc.TrackingServiceStub(channel), sidecar.pid
        finally:
            await channel.close()
            await services.stop(sidecar)


def _row(name: str, timed: Timed, note: str = "") -> str:
    cpu = " | ".join(f"{timed.cpu_ms.get(group, math.nan):.1f}" for group in CPU_GROUPS)
    return f"| {name} | {timed.p50_ms:.1f} | {timed.p99_ms:.1f} | {cpu} | {note} |"


def _header(what: str, note: str) -> str:
    cpu = " | ".join(f"CPU ms {group}" for group in CPU_GROUPS)
    return f"| {what} | p50 ms | p99 ms | {cpu} | {note} |\n|---|---:|---:|{'---:|' * len(CPU_GROUPS)}---|"


async def run(args: argparse.Namespace) -> None:
    url = os.environ.get("DATABASE_URL")
    if args.keep and not url:
        raise SystemExit("--keep needs DATABASE_URL")
    opened = kept_database(url, args.keep) if args.keep else database(url)
    async with opened as db_url:
        pool = await create_pool(db_url, min_size=2, max_size=4)
        try:
            await report(pool, db_url, args)
        finally:
            await pool.close()


async def report(pool: asyncpg.Pool, db_url: str, args: argparse.Namespace) -> None:
    rows = await pool.fetchval("SELECT count(*) FROM resource_call_records")
    if rows == 0:
        print(f"loading {args.rows:,} records over {args.days} days ...", flush=True)
        load_s = await load(pool, args.rows, args.days, datetime.now(UTC))
        rows = await pool.fetchval("SELECT count(*) FROM resource_call_records")
        print(f"loaded in {load_s:.0f} s ({rows / load_s:,.0f} records/s, every index maintained)")
    now = await pool.fetchval('SELECT max("timestamp") FROM resource_call_records')
    partitions = await list_partitions(pool)
    size = await pool.fetchval(
        "SELECT pg_size_pretty(sum(pg_total_relation_size(partition))) FROM resource_call_records_partitions"
    )
    settings = {r["name"]: r["setting"] for r in await pool.fetch(
        "SELECT name, current_setting(name) AS setting FROM pg_settings"
        " WHERE name IN ('server_version', 'shared_buffers', 'work_mem', 'max_parallel_workers_per_gather')"
    )}
    print(f"\nos.cpu_count()={os.cpu_count()} load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}; "
          f"PostgreSQL {settings['server_version']}, shared_buffers {settings['shared_buffers']}, "
          f"work_mem {settings['work_mem']}, max_parallel_workers_per_gather "
          f"{settings['max_parallel_workers_per_gather']}")
    print(f"rows {rows:,}; partitions {len(partitions)} ({sum(not p.is_default for p in partitions)} daily + default); "
          f"table and indexes {size}; {args.samples} samples per figure\n")

    async with tracking_service(db_url) as (stub, sidecar_pid):
        postmaster = await postgres_server_pid(db_url)
        meter = CpuMeter({
            "sidecar": lambda: [sidecar_pid],
            "postgres": lambda: with_children(postmaster) if postmaster else [],
        })
        print(_header("ListRecords (gRPC, limit 50)", "records, total"))
        for name, request in await list_cases(stub, pool, now):
            timed = await _timed(lambda request=request: stub.ListRecords(request), args.samples, meter)
            print(_row(name, timed, f"{len(timed.answer.records)}, {timed.answer.total:,}"), flush=True)
        print()
        print(_header("GetStats (gRPC)", "total_requests"))
        for name, span in (("one day (the last 24 h)", timedelta(days=1)), ("one hour", timedelta(hours=1))):
            stats_request = tracking_pb2.GetStatsRequest(start=_stamp(now - span), end=_stamp(now))
            timed = await _timed(lambda r=stats_request: stub.GetStats(r), args.stats_samples, meter)
            print(_row(name, timed, f"{timed.answer.total_requests:,}"), flush=True)
        middle = await pool.fetchval(
            'SELECT id FROM resource_call_records WHERE "timestamp" <= $1 ORDER BY "timestamp" DESC LIMIT 1',
            now - timedelta(days=args.days / 2),
        )
        get = tracking_pb2.GetRecordRequest(id=str(middle))
        timed = await _timed(lambda: stub.GetRecord(get), args.samples, meter)
        print(_row("GetRecord by id (every partition's primary key)", timed))

    print()
    print(_header("tracking writer UPDATE of 500 rows", ""))
    for name, timed in (await measure_updates(pool, now, args.stats_samples, meter)).items():
        print(_row(name, timed))
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")

    if args.keep and not args.prune:
        return
    print()
    day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    begun = time.perf_counter()
    older = await pool.fetchval('SELECT count(*) FROM resource_call_records WHERE "timestamp" < $1', day_start)
    count_s = time.perf_counter() - begun
    print(f"counting the {older:,} records before today's UTC midnight: {count_s:.2f} s")
    for name, cutoff in (("a month (whole partitions)", day_start), ("the rest of today up to an hour ago", now - timedelta(hours=1))):
        before = len(await list_partitions(pool))
        begun = time.perf_counter()
        deleted = await prune(pool, cutoff)
        elapsed = time.perf_counter() - begun
        print(f"prune {name}: {deleted:,} records in {elapsed:.2f} s, {before - len(await list_partitions(pool))} "
              "partitions dropped", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--samples", type=int, default=200, help="calls per ListRecords figure")
    parser.add_argument("--stats-samples", type=int, default=30, help="calls per GetStats and UPDATE figure")
    parser.add_argument("--keep", metavar="NAME", help="load the database NAME next to $DATABASE_URL once, keep it")
    parser.add_argument("--prune", action="store_true", help="with --keep: prune too (empties the database)")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
