"""What tracing costs a paid request: gateway → sidecar → devnet facilitator with
OpenTelemetry exporting every span over OTLP/gRPC, against the same stack with
tracing off (the default).

    python bench/otel_overhead.py [--rounds 6] [--seconds 4] [--levels 1,8]

Starts PostgreSQL ($DATABASE_URL, a scratch database next to it when allowed, else
an embedded pgserver), one devnet facilitator, and two sidecar+gateway pairs on
one database: "off" (no OTEL_* set) and "on" (OTEL_TRACES_EXPORTER=otlp to an
OTLP receiver in this process, which counts what arrives). Both pairs share the
machine at the same time; rounds alternate between them (order flipped every
round) so drift in the machine's load falls on both. Payments are signed before
each level starts. Prints p50/p99 and throughput per level, the p50 overhead (on
vs off, over all rounds pooled), the spans received and os.cpu_count().
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import services  # noqa: E402
from bench.loadgen import LevelResult, run_level  # noqa: E402
from bench.signing import Signer  # noqa: E402
from bench.targets import HttpTarget  # noqa: E402
from bench.tracking_write import database  # noqa: E402
from devnet.chain import NETWORK  # noqa: E402
from devnet.up import FACILITATOR_READY, GATEWAY_READY, SIDECAR_READY  # noqa: E402
from tests.telemetry.otlp_receiver import otlp_receiver  # noqa: E402

PAID_PATH = "/v1/datasets/observations/records?city=Berlin&_limit=20"
WARMUP_S = 2.0
TARGET_OVERHEAD = 0.05
# Payments signed per level: the rate seen in the warm-up × seconds × this, plus a margin.
HEADROOM = 2.0


async def start_pair(name: str, db_url: str, facilitator: str, run_dir: Path, otel: dict[str, str]) -> tuple:
    """A sidecar and the gateway in front of it, both with the `otel` environment."""
    sidecar = await services.start(
        f"{name}-sidecar",
        services.python_module("sidecar.main"),
        services.child_env(
            DATABASE_URL=db_url,
            FACILITATOR_URLS=facilitator,
            CHAIN_RPC_URLS=f"{NETWORK}={facilitator}/rpc",
            PAYSIDECAR_PORT="0",
            PAYSIDECAR_SPOOL_DIR=str(run_dir / f"{name}-spool"),
            **otel,
        ),
        SIDECAR_READY,
        run_dir,
    )
    gateway = await services.start(
        f"{name}-gateway",
        services.python_module("gateway.main"),
        services.child_env(
            GATEWAY_PORT="0",
            GATEWAY_SIDECAR_TARGET=f"127.0.0.1:{sidecar.port}",
            GATEWAY_PAID_RATE_PER_S="0",
            GATEWAY_FREE_RATE_PER_S="0",
            **otel,
        ),
        GATEWAY_READY,
        run_dir,
    )
    return sidecar, gateway


def cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used so far (Linux /proc; NaN elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return math.nan


async def drive(
    target: HttpTarget, signer: Signer, concurrency: int, seconds: float, count: int, pids: Sequence[int] = ()
) -> tuple[LevelResult, float]:
    """One level; and the CPU seconds the processes `pids` spent on it."""
    required = await target.challenge()
    items = [target.prepare(payment) for payment in await signer.sign(required, count)]
    async with target.connect(concurrency) as send:
        before = sum(cpu_s(pid) for pid in pids)
        level = await run_level(send, items, concurrency, seconds)
        return level, sum(cpu_s(pid) for pid in pids) - before


def pooled(levels: Sequence[LevelResult]) -> LevelResult:
    latencies = sorted(ms for level in levels for ms in level.latencies_ms)
    errors = sum((level.errors for level in levels), start=type(levels[0].errors)())
    return LevelResult(levels[0].concurrency, sum(level.elapsed_s for level in levels), latencies, errors)


async def run(args: argparse.Namespace) -> int:
    run_dir = Path(tempfile.mkdtemp(prefix="paysidecar-otel-bench-"))
    print(f"otel bench: logs in {run_dir}; os.cpu_count() = {os.cpu_count()}", file=sys.stderr)
    started: list[services.Service] = []
    async with (
        database(os.environ.get("DATABASE_URL")) as db_url,
        otlp_receiver(keep=False) as (receiver, endpoint),
        contextlib.AsyncExitStack() as stack,
    ):

        async def stop_all() -> None:
            for service in reversed(started):
                await services.stop(service)

        stack.push_async_callback(stop_all)
        facilitator = await services.start(
            "facilitator",
            services.python_module("devnet.facilitator", "--port", "0"),
            services.child_env(),
            FACILITATOR_READY,
            run_dir,
        )
        started.append(facilitator)
        tracing_on = {
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        }
        pairs = {
            "off": await start_pair("off", db_url, facilitator.url, run_dir, {}),
            "on": await start_pair("on", db_url, facilitator.url, run_dir, tracing_on),
        }
        started.extend(service for pair in pairs.values() for service in pair)
        targets = {mode: HttpTarget(f"gateway-{mode}", gateway.url + PAID_PATH, paid=True) for mode, (_, gateway) in pairs.items()}

        async with Signer() as signer:
            rates = {}
            for mode, target in targets.items():
                warm, _ = await drive(target, signer, 4, WARMUP_S, 400)
                if warm.ok == 0:
                    raise SystemExit(f"{mode}: nothing succeeded in the warm-up: {dict(warm.errors)}")
                rates[mode] = warm.throughput
            overheads = []
            for concurrency in args.levels:
                results: dict[str, list[LevelResult]] = {"off": [], "on": []}
                cpu = {"off": 0.0, "on": 0.0}
                for round_ in range(args.rounds):
                    order = ("off", "on") if round_ % 2 == 0 else ("on", "off")
                    for mode in order:
                        count = int(rates[mode] * args.seconds * HEADROOM) + 4 * concurrency
                        pids = [service.pid for service in pairs[mode]]
                        level, spent = await drive(targets[mode], signer, concurrency, args.seconds, count, pids)
                        results[mode].append(level)
                        cpu[mode] += spent
                off, on = pooled(results["off"]), pooled(results["on"])
                overhead = on.percentile(50) / off.percentile(50) - 1
                overheads.append(overhead)
                for mode, level in (("off", off), ("on", on)):
                    print(
                        f"c={concurrency:<3} tracing {mode:<3}  p50 {level.percentile(50):7.2f} ms  "
                        f"p99 {level.percentile(99):7.2f} ms  {level.throughput:6.1f} req/s  "
                        f"sidecar+gateway CPU {cpu[mode] * 1000 / max(level.ok, 1):5.2f} ms/req  "
                        f"n={level.ok}  errors={dict(level.errors)}"
                    )
                print(f"c={concurrency:<3} p50 overhead with export on: {overhead:+.1%} (target ≤ {TARGET_OVERHEAD:.0%})")
    print(f"spans received by the OTLP receiver: {receiver.received}; os.cpu_count() = {os.cpu_count()}")
    if receiver.received == 0:
        print("no span reached the receiver: the 'on' stack did not export", file=sys.stderr)
        return 1
    return 0 if all(o <= TARGET_OVERHEAD for o in overheads) else 2


def _levels(text: str) -> list[int]:
    levels = [int(part) for part in text.split(",") if part.strip()]
    if not levels or min(levels) < 1:
        raise argparse.ArgumentTypeError("levels are positive integers, e.g. 1,8")
    return levels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6, help="alternating off/on runs per level")
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each run")
    parser.add_argument("--levels", type=_levels, default=[1, 8], help="concurrencies, e.g. 1,8")
    sys.exit(asyncio.run(run(parser.parse_args())))


if __name__ == "__main__":
    main()
