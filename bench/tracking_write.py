"""Sustained tracking write rate: full lifecycles (START..FINALIZE, five steps
per record) through TrackingWriter into a real PostgreSQL.

    python bench/tracking_write.py --records 50000 [--in-flight 2000] [--step-gap-ms 0]

Uses $DATABASE_URL (a scratch database is created next to it when the user may,
else the tables of that database are used and the bench rows deleted after),
otherwise an embedded pgserver in a temporary directory.

Records are driven like concurrent requests: `--in-flight` records are open at
any time and each tick advances every open record by one step, so steps of many
records interleave. After each tick the answers of those steps wait, in a task
of their own, until the steps are durable (in the journal on local disk), as
the payment servicer's answers do; the producer goes on meanwhile, as other
requests would. The field values (shaped like the sidecar's) are built
before the clock starts, from 1,000 templates, and so are the record ids: the
figure is the writer's rate, not the cost of making up requests. With
`--step-gap-ms 0` ticks follow each other as fast as the process allows; a gap
longer than both the flush interval and `--hold-s` puts every step in a cycle of
its own, the worst case of one row write per step. Every record is checked at
the end: all five steps must have landed.

`--rate R` drives an open loop instead: R records a second started on a fixed
schedule, one step per 10 ms tick, whatever the writer does; it reports how deep
the queue grew and how long the writer took to drain after the last step. A
rate the writer sustains drains within a batch interval or two.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sidecar.config import Settings  # noqa: E402
from sidecar.store.db import create_pool  # noqa: E402
from sidecar.store.migrate import apply_migrations  # noqa: E402
from sidecar.store.tracking import Step, TrackingWriter  # noqa: E402

LIFECYCLE = (Step.START, Step.REQUEST, Step.VERIFICATION, Step.SETTLEMENT, Step.FINALIZE)
NETWORK = "eip155:84532"
ASSET = "0x036CbD53842c5426634e7929541eC2318f3dCF7e"
PAY_TO = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
PAYER = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"


def step_fields(step: Step, n: int, run: str) -> dict:
    """Fields shaped like the sidecar's (sanitised request, payment summary, hashes)."""
    request_id = f"{run}-{n}"
    if step is Step.START:
        return {
            "request_id": request_id,
            "method": "GET",
            "path": "/v1/datasets/weather/records",
            "route_key": "GET /v1/datasets/{name}/records",
            "url": f"http://127.0.0.1:8080/v1/datasets/weather/records?city=Paris&_limit={n % 100}",
            "timestamp": datetime.now(UTC),
            "payment_required": True,
            "request": {
                "method": "GET",
                "headers": {"accept": "application/json", "user-agent": "bench/1.0", "x-request-id": request_id},
                "query": {"city": "Paris", "_limit": str(n % 100)},
                "client_ip": "127.0.0.1",
                "user_agent": "bench/1.0",
            },
            "route_config": {"price": "$0.001", "network": NETWORK, "pay_to": PAY_TO},
            "metadata": {"request_id": request_id, "bench": run},
        }
    if step is Step.REQUEST:
        return {
            "x402_version": 2,
            "payment": {"scheme": "exact", "network": NETWORK, "asset": ASSET, "amount": "1000",
                        "payer": PAYER, "pay_to": PAY_TO},
            "payment_nonce": f"0x{n:064x}",
            "payment_valid_before": "1900000000",
            "payload_hash": f"{n:064x}",
            "requirements_hash": "ab" * 32,
            "payment_signature_hash": f"{n + 1:064x}",
        }
    if step is Step.VERIFICATION:
        return {
            "payment_verified": True,
            "metadata": {"attempts": [{"facilitator": "devnet", "stage": "verify", "outcome": "ok", "latency_ms": 3.2}]},
        }
    if step is Step.SETTLEMENT:
        return {"settlement": {"success": True, "transaction": f"0x{n:064x}", "network": NETWORK, "payer": PAYER,
                               "facilitator": "devnet"}}
    return {"response_status": 200, "response_time_ms": 25, "handler_executed": True,
            "metadata": {"trace_id": f"{n:032x}"}}


@contextlib.asynccontextmanager
async def database(url: str | None) -> AsyncIterator[str]:
    """A migrated database for the run, dropped afterwards when we created it."""
    if url is None:
        import pgserver

        server = pgserver.get_server(tempfile.mkdtemp(prefix="bench-pg-"), cleanup_mode="delete")
        try:
            async with database(server.get_uri()) as inner:
                yield inner
        finally:
            server.cleanup()
        return
    name = f"bench_{uuid.uuid4().hex[:12]}"
    try:
        admin = await asyncpg.connect(url)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
    except asyncpg.InsufficientPrivilegeError:
        await apply_migrations(url)
        yield url
        return
    scratch = urlunsplit(urlsplit(url)._replace(path=f"/{name}"))
    try:
        await apply_migrations(scratch)
        yield scratch
    finally:
        admin = await asyncpg.connect(url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


TEMPLATES = 1_000


OpenRecord = tuple[uuid.UUID, int, int]  # (id, n, index of the next step)


class Answers:
    """The answers of each tick, each waiting until its steps are durable."""

    def __init__(self, writer: TrackingWriter) -> None:
        self.writer = writer
        self.waits: list[float] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def send(self) -> None:
        task = asyncio.ensure_future(self._wait(time.perf_counter()))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _wait(self, started: float) -> None:
        await self.writer.durable()
        self.waits.append(time.perf_counter() - started)

    async def sent(self) -> None:
        await asyncio.gather(*self._tasks)

    def summary(self) -> str:
        waits = sorted(self.waits)
        if not waits:
            return "no answers"
        p50, p99 = waits[len(waits) // 2], waits[min(len(waits) - 1, int(len(waits) * 0.99))]
        return f"answers waited for the journal: p50 {p50 * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms"


def step_all(answers: Answers, templates: list[list[dict]], open_records: list[OpenRecord]) -> list[OpenRecord]:
    """One tick: every open record takes its next step, then the answers go out;
    the records with steps left stay open."""
    still_open = []
    record = answers.writer.record
    for record_id, n, index in open_records:
        record(record_id, LIFECYCLE[index], templates[n % len(templates)][index])
        if index + 1 < len(LIFECYCLE):
            still_open.append((record_id, n, index + 1))
    answers.send()
    return still_open


async def drive(
    answers: Answers,
    templates: list[list[dict]],
    ids: list[uuid.UUID],
    in_flight: int,
    gap_s: float,
    max_queue: int,
) -> None:
    """Advance `in_flight` open records one step per tick until every one of `ids` completed,
    holding back while more than `max_queue` steps wait for the writer (a rate the
    writer cannot sustain would otherwise only grow memory)."""
    next_n = 0
    open_records: list[OpenRecord] = []
    records = len(ids)
    while open_records or next_n < records:
        while len(open_records) < in_flight and next_n < records:
            open_records.append((ids[next_n], next_n, 0))
            next_n += 1
        open_records = step_all(answers, templates, open_records)
        await asyncio.sleep(gap_s)  # also lets the writer run between ticks, as a server would
        while answers.writer.queue_depth > max_queue:
            await asyncio.sleep(0.005)


TICK_S = 0.01


async def offer(
    answers: Answers, templates: list[list[dict]], ids: list[uuid.UUID], rate: float
) -> tuple[float, int]:
    """Open loop: start `rate` records a second on a fixed schedule, each taking one
    step per 10 ms tick (a 50 ms call), whatever the writer does. Returns how late
    the last tick ran (the producer, sharing the process with the writer, falls
    behind when Python is saturated) and the deepest queue seen."""
    started = time.perf_counter()
    next_n, tick, deepest = 0, 0, 0
    open_records: list[OpenRecord] = []
    late = 0.0
    while open_records or next_n < len(ids):
        due = min(len(ids), int(rate * tick * TICK_S))
        while next_n < due:
            open_records.append((ids[next_n], next_n, 0))
            next_n += 1
        open_records = step_all(answers, templates, open_records)
        deepest = max(deepest, answers.writer.queue_depth)
        tick += 1
        late = time.perf_counter() - (started + tick * TICK_S)
        await asyncio.sleep(max(0.0, -late))
    return max(0.0, late), deepest


async def run(args: argparse.Namespace) -> None:
    run_id = uuid.uuid4().hex[:8]
    async with database(os.environ.get("DATABASE_URL")) as url:
        pool = await create_pool(url, min_size=2, max_size=args.parallelism + 1)
        with tempfile.TemporaryDirectory(prefix="bench-spool-") as spool:
            writer = TrackingWriter(pool, batch_size=args.batch_size, flush_interval_s=args.flush_interval_s,
                                    spool_dir=Path(spool), parallelism=args.parallelism, hold_s=args.hold_s)
            await writer.start()
            templates = [[step_fields(step, n, run_id) for step in LIFECYCLE] for n in range(TEMPLATES)]
            ids = [uuid.uuid4() for _ in range(args.records)]
            answers = Answers(writer)
            started, cpu_started = time.perf_counter(), time.process_time()
            if args.rate:
                late, deepest = await offer(answers, templates, ids, args.rate)
            else:
                await drive(answers, templates, ids, args.in_flight, args.step_gap_ms / 1000, args.max_queue)
            await answers.sent()
            produced = time.perf_counter() - started
            await writer.flush()
            elapsed = time.perf_counter() - started
            cpu = time.process_time() - cpu_started
            await writer.close()

        complete = await pool.fetchval(
            "SELECT count(*) FROM resource_call_records WHERE metadata ->> 'bench' = $1 AND payment_verified"
            " AND settlement ->> 'success' = 'true' AND response_status = 200 AND metadata ? 'trace_id'",
            run_id,
        )
        await pool.execute("DELETE FROM resource_call_records WHERE metadata ->> 'bench' = $1", run_id)
        await pool.close()

    steps = args.records * len(LIFECYCLE)
    print(f"cpu_count={os.cpu_count()} records={args.records} in_flight={args.in_flight} "
          f"step_gap_ms={args.step_gap_ms} batch_size={args.batch_size} parallelism={args.parallelism} hold_s={args.hold_s}")
    print(f"records/s={args.records / elapsed:,.0f} steps/s={steps / elapsed:,.0f} "
          f"elapsed_s={elapsed:.2f} (recording done at {produced:.2f}s) python_cpu_s={cpu:.2f}")
    if args.rate:
        print(f"offered {args.rate:,.0f} records/s: producer late by {late * 1000:.0f} ms at the end, "
              f"deepest queue {deepest:,} steps, drained {(elapsed - produced) * 1000:.0f} ms after the last step")
    print(answers.summary())
    print(f"complete_records={complete}/{args.records} spooled={writer.spool_records} "
          f"missing={writer.missing_rows} rejected={writer.rejected_rows}")
    if complete != args.records:
        raise SystemExit("FAILED: not every record has all its steps")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--in-flight", type=int, default=2_000)
    parser.add_argument("--step-gap-ms", type=float, default=0.0)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--flush-interval-s", type=float, default=0.05)
    parser.add_argument("--parallelism", type=int, default=2)
    parser.add_argument("--hold-s", type=float, default=Settings.model_fields["tracking_hold_s"].default,
                        help="how long a record of a call under way may wait to be written whole (the sidecar's default)")
    parser.add_argument("--max-queue", type=int, default=100_000, help="steps waiting before the driver holds back")
    parser.add_argument("--rate", type=float, default=0.0,
                        help="open loop: offer this many records/s on a fixed schedule instead (--in-flight, "
                             "--step-gap-ms and --max-queue then do not apply)")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
