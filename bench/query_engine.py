"""The gateway's query engine on a million rows.

    python bench/query_engine.py [--rows 1000000] [--iterations 300]

Writes a weather-like CSV of --rows rows into a temporary directory (in a child
process, so its memory does not count), then reports:
- load: seconds and resident-memory growth for loading it as a dataset;
- engine: p50/p99 of a filtered + sorted + limited query (parse, run, render JSON),
  with a different city and threshold each time;
- http: p50/p99 of the free schema route GET /v1/datasets/{name}, the app running
  in-process on port 0 (rate limits off, no sidecar needed).
Target: engine p50 <= 10 ms on 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import gc
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402

from gateway.app import create_app  # noqa: E402
from gateway.config import Settings  # noqa: E402
from gateway.datasets import load_dataset  # noqa: E402
from gateway.query import parse_query, run_query  # noqa: E402
from gateway.render import render  # noqa: E402

CITIES = ("Amsterdam", "Berlin", "Cairo", "Lima", "Madrid", "Mumbai", "Oslo", "Sydney", "Tokyo", "Toronto")
CONDITIONS = ("sunny", "cloudy", "rain", "snow", "fog")
DATASET = "weather"


def write_csv(path: Path, rows: int) -> None:
    rng = random.Random(1)
    first = date(2000, 1, 1)
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(("date", "city", "temp_c", "humidity_pct", "precipitation_mm", "rain", "condition"))
        for i in range(rows):
            wet = rng.random() < 0.35
            writer.writerow(
                (
                    (first + timedelta(days=i // len(CITIES))).isoformat(),
                    CITIES[i % len(CITIES)],
                    f"{rng.gauss(15, 9):.1f}",
                    rng.randrange(20, 100),
                    f"{rng.expovariate(1 / 6):.1f}" if wet else "0.0",
                    "true" if wet else "false",
                    rng.choice(CONDITIONS),
                )
            )


def rss_bytes() -> int:
    """Resident set size now (Linux /proc), else the peak so far."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def percentiles(samples_s: list[float]) -> str:
    ordered = sorted(samples_s)
    p50 = statistics.median(ordered) * 1000
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))] * 1000
    return f"p50 {p50:7.2f} ms   p99 {p99:7.2f} ms   (n={len(ordered)})"


def queries(count: int) -> list[list[tuple[str, str]]]:
    rng = random.Random(2)
    return [
        [
            ("city", rng.choice(CITIES)),
            ("temp_c__gt", f"{rng.uniform(5, 25):.1f}"),
            ("_sort", "-temp_c,date"),
            ("_limit", "100"),
        ]
        for _ in range(count)
    ]


def bench_engine(path: Path, iterations: int) -> None:
    gc.collect()
    before = rss_bytes()
    started = time.perf_counter()
    dataset = load_dataset(path)
    loaded = time.perf_counter() - started
    print(f"load     {loaded:7.2f} s    rss +{(rss_bytes() - before) / 2**20:.0f} MiB   ({dataset.rows:,} rows)")

    plans = queries(iterations + 20)
    samples = []
    matched = []
    for i, params in enumerate(plans):
        started = time.perf_counter()
        plan = parse_query(params, dataset.types)
        result = run_query(dataset.frame, plan)
        render(result, plan, None)
        if i >= 20:  # warm-up excluded
            samples.append(time.perf_counter() - started)
            matched.append(result.total)
    print(f"engine   {percentiles(samples)}   rows matched per query ~{statistics.median(matched):,.0f}")
    print("         query: city=<city>&temp_c__gt=<t>&_sort=-temp_c,date&_limit=100 (parse + run + render JSON)")


async def bench_http(data_dir: Path, iterations: int) -> None:
    app = create_app(Settings(data_dir=data_dir, port=0, free_rate_per_s=0, paid_rate_per_s=0))
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/v1/datasets/{DATASET}"
    samples = []
    try:
        async with aiohttp.ClientSession() as session:
            for i in range(iterations + 20):
                started = time.perf_counter()
                async with session.get(url) as response:
                    await response.read()
                    assert response.status == 200, response.status
                if i >= 20:
                    samples.append(time.perf_counter() - started)
    finally:
        await runner.cleanup()
    print(f"http     {percentiles(samples)}   GET /v1/datasets/{DATASET} (client and server in one process)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--write-csv", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.write_csv:
        write_csv(args.write_csv, args.rows)
        return

    print(f"cpu_count {os.cpu_count()}   python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory(prefix="gateway-bench-") as scratch:
        path = Path(scratch) / f"{DATASET}.csv"
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, __file__, "--rows", str(args.rows), "--write-csv", str(path)], check=True
        )
        size = path.stat().st_size / 2**20
        print(f"csv      {time.perf_counter() - started:7.2f} s to write {args.rows:,} rows ({size:.0f} MiB)")
        bench_engine(path, args.iterations)
        asyncio.run(bench_http(Path(scratch), args.iterations))


if __name__ == "__main__":
    main()
