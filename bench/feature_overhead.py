"""What a feature costs a paid request (gateway → sidecar → devnet facilitator):
the same stack with the feature on and off, side by side.

    python bench/feature_overhead.py --feature otel      [--rounds 10] [--seconds 3] [--levels 1,8]
    python bench/feature_overhead.py --feature tracking

otel: OpenTelemetry exporting every span over OTLP/gRPC to an OTLP receiver in
this process (which counts what arrives) vs tracing off (the default).
tracking: tracking records written (the default) vs PAYSIDECAR_TRACKING_ENABLED=false.

Starts PostgreSQL ($DATABASE_URL, a scratch database next to it when allowed, else
an embedded pgserver), one devnet facilitator, and two sidecar+gateway pairs on
one database: "off" and "on". Both pairs run at the same time; rounds alternate
between them, the order flipped every round, so load that comes and goes on the
machine falls on both. Payments are signed before each run. Per concurrency level
it prints p50/p99, throughput and the CPU the sidecar and gateway processes spent
per request, then the p50 overhead: the median over rounds of on/off from
back-to-back runs. Exit status 0 when every level is within the 5 % target, 2
when not, 1 when tracing was measured but no span was exported.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import math
import os
import statistics
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
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


async def start_pair(name: str, db_url: str, facilitator: str, run_dir: Path, env: dict[str, str]) -> tuple:
    """A sidecar and the gateway in front of it, both with the extra `env`."""
    sidecar = await services.start(
        f"{name}-sidecar",
        services.python_module("sidecar.main"),
        services.child_env(
            DATABASE_URL=db_url,
            FACILITATOR_URLS=facilitator,
            CHAIN_RPC_URLS=f"{NETWORK}={facilitator}/rpc",
            PAYSIDECAR_PORT="0",
            PAYSIDECAR_SPOOL_DIR=str(run_dir / f"{name}-spool"),
            **env,
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
            **env,
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
    errors = sum((level.errors for level in levels), start=collections.Counter())
    return LevelResult(levels[0].concurrency, sum(level.elapsed_s for level in levels), latencies, errors)


@dataclass
class Mode:
    """One side of the comparison: its gateway, the processes whose CPU counts, its runs."""

    name: str
    target: HttpTarget
    pids: list[int]
    rate: float = 0.0
    runs: list[LevelResult] = field(default_factory=list)
    cpu_s: float = 0.0

    def report(self, concurrency: int) -> LevelResult:
        level = pooled(self.runs)
        print(
            f"c={concurrency:<3} feature {self.name:<3}  p50 {level.percentile(50):7.2f} ms  "
            f"p99 {level.percentile(99):7.2f} ms  {level.throughput:6.1f} req/s  "
            f"sidecar+gateway CPU {self.cpu_s * 1000 / max(level.ok, 1):5.2f} ms/req  "
            f"n={level.ok}  errors={dict(level.errors)}"
        )
        return level


async def compare(off: Mode, on: Mode, signer: Signer, concurrency: int, args: argparse.Namespace) -> float:
    """Alternating rounds at one concurrency; prints the figures, returns the p50 overhead."""
    for mode in (off, on):
        mode.runs, mode.cpu_s = [], 0.0
    for round_ in range(args.rounds):
        for mode in (off, on) if round_ % 2 == 0 else (on, off):
            count = int(mode.rate * args.seconds * HEADROOM) + 4 * concurrency
            level, spent = await drive(mode.target, signer, concurrency, args.seconds, count, mode.pids)
            mode.runs.append(level)
            mode.cpu_s += spent
    off_all, on_all = off.report(concurrency), on.report(concurrency)
    pooled_overhead = on_all.percentile(50) / off_all.percentile(50) - 1
    # Each round's two runs were back to back: their ratio is the least disturbed
    # by load that comes and goes on the machine.
    paired = statistics.median(b.percentile(50) / a.percentile(50) - 1 for a, b in zip(off.runs, on.runs, strict=True))
    cpu = (on.cpu_s / max(on_all.ok, 1)) / (off.cpu_s / max(off_all.ok, 1)) - 1
    print(
        f"c={concurrency:<3} p50 overhead with the feature on: {paired:+.1%} (median of {args.rounds} paired rounds; "
        f"pooled {pooled_overhead:+.1%}); CPU per request {cpu:+.1%}; target ≤ {TARGET_OVERHEAD:.0%}"
    )
    return paired


async def run(args: argparse.Namespace) -> int:
    run_dir = Path(tempfile.mkdtemp(prefix="paysidecar-feature-bench-"))
    print(f"{args.feature} bench: logs in {run_dir}", file=sys.stderr)
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
        feature_env = {
            "otel": (
                {},
                {
                    "OTEL_TRACES_EXPORTER": "otlp",
                    "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
                    "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                },
            ),
            "tracking": ({"PAYSIDECAR_TRACKING_ENABLED": "false"}, {}),
        }[args.feature]
        modes = []
        for name, env in zip(("off", "on"), feature_env):
            sidecar, gateway = await start_pair(name, db_url, facilitator.url, run_dir, env)
            started += [sidecar, gateway]
            target = HttpTarget(f"gateway-{name}", gateway.url + PAID_PATH, paid=True)
            modes.append(Mode(name, target, [sidecar.pid, gateway.pid]))

        async with Signer() as signer:
            for mode in modes:
                warm, _ = await drive(mode.target, signer, 4, WARMUP_S, 400)
                if warm.ok == 0:
                    raise SystemExit(f"{mode.name}: nothing succeeded in the warm-up: {dict(warm.errors)}")
                mode.rate = warm.throughput
            overheads = [await compare(*modes, signer, concurrency, args) for concurrency in args.levels]
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"feature {args.feature}; spans received by the OTLP receiver: {receiver.received}; "
          f"os.cpu_count() = {os.cpu_count()}; load {load}")
    if args.feature == "otel" and receiver.received == 0:
        print("no span reached the receiver: the 'on' stack did not export", file=sys.stderr)
        return 1
    return 0 if all(overhead <= TARGET_OVERHEAD for overhead in overheads) else 2


def _levels(text: str) -> list[int]:
    levels = [int(part) for part in text.split(",") if part.strip()]
    if not levels or min(levels) < 1:
        raise argparse.ArgumentTypeError("levels are positive integers, e.g. 1,8")
    return levels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feature", choices=("otel", "tracking"), default="otel", help="what to switch on and off")
    parser.add_argument("--rounds", type=int, default=10, help="alternating off/on runs per level")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each run")
    parser.add_argument("--levels", type=_levels, default=[1, 8], help="concurrencies, e.g. 1,8")
    sys.exit(asyncio.run(run(parser.parse_args())))


if __name__ == "__main__":
    main()
