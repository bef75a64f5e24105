"""What a feature costs a paid request (gateway → sidecar → devnet facilitator):
the same stack with the feature on and off, side by side.

    python bench/feature_overhead.py --feature otel      [--rounds 10] [--seconds 3] [--levels 1,8]
    python bench/feature_overhead.py --feature otel --protocol http/protobuf --on-env OTEL_BSP_SCHEDULE_DELAY=1000
    python bench/feature_overhead.py --feature tracking

otel: OpenTelemetry exporting every span over OTLP (gRPC, or HTTP/protobuf with
--protocol) to an OTLP receiver in this process (which counts what arrives) vs
tracing off (the default); it also prints how many spans a paid request's trace
has. --on-env adds variables to the "on" side (batch processor settings,
samplers, ...).
tracking: tracking records written (the default) vs PAYSIDECAR_TRACKING_ENABLED=false.

Starts PostgreSQL ($DATABASE_URL, a scratch database next to it when allowed, else
an embedded pgserver), one devnet facilitator, and two sidecar+gateway pairs on
one database: "off" and "on". Both pairs run at the same time; rounds alternate
between them, the order flipped every round, so load that comes and goes on the
machine falls on both. Payments are signed before each run. Per concurrency level
it prints p50/p99, throughput and the CPU the sidecar and gateway processes spent
per request, then the p50 overhead: the median over rounds of on/off from
back-to-back runs. Exit status 0 when every level is within its targets (TARGETS:
otel p50 5 % at concurrency 1, 8 % above, CPU per request 12 %; tracking p50 5 %),
2 when not, 1 when tracing was measured but no span was exported.
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
# Payments signed per level: the rate seen in the warm-up × seconds × this, plus a margin.
HEADROOM = 2.0


@dataclass(frozen=True)
class Targets:
    """The overhead a feature may add: p50 at concurrency 1 and above it, CPU per request."""

    p50_alone: float
    p50_concurrent: float
    cpu: float = math.inf

    def p50(self, concurrency: int) -> float:
        return self.p50_alone if concurrency == 1 else self.p50_concurrent


TARGETS = {"otel": Targets(0.05, 0.08, cpu=0.12), "tracking": Targets(0.05, 0.05)}


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
) -> tuple[LevelResult, list[float]]:
    """One level; and the CPU seconds the processes `pids` spent on it, one figure each."""
    required = await target.challenge()
    items = [target.prepare(payment) for payment in await signer.sign(required, count)]
    async with target.connect(concurrency) as send:
        before = [cpu_s(pid) for pid in pids]
        level = await run_level(send, items, concurrency, seconds)
        return level, [cpu_s(pid) - spent for pid, spent in zip(pids, before, strict=True)]


def pooled(levels: Sequence[LevelResult]) -> LevelResult:
    latencies = sorted(ms for level in levels for ms in level.latencies_ms)
    errors = sum((level.errors for level in levels), start=collections.Counter())
    return LevelResult(levels[0].concurrency, sum(level.elapsed_s for level in levels), latencies, errors)


@dataclass
class Mode:
    """One side of the comparison: its gateway, the processes whose CPU counts
    (sidecar, gateway), its runs."""

    name: str
    target: HttpTarget
    pids: list[int]
    rate: float = 0.0
    runs: list[LevelResult] = field(default_factory=list)
    cpu_s: list[float] = field(default_factory=lambda: [0.0, 0.0])
    served: int = 0  # successful paid requests over the whole run, warm-up included

    def report(self, concurrency: int) -> LevelResult:
        level = pooled(self.runs)
        print(
            f"c={concurrency:<3} feature {self.name:<3}  p50 {level.percentile(50):7.2f} ms  "
            f"p99 {level.percentile(99):7.2f} ms  {level.throughput:6.1f} req/s  "
            f"sidecar+gateway CPU {self.cpu_per_request(level):5.2f} ms/req "
            f"({' + '.join(f'{s * 1000 / max(level.ok, 1):.2f}' for s in self.cpu_s)})  "
            f"n={level.ok}  errors={dict(level.errors)}"
        )
        return level

    def cpu_per_request(self, level: LevelResult) -> float:
        """Milliseconds of CPU, sidecar and gateway together, per successful request."""
        return sum(self.cpu_s) * 1000 / max(level.ok, 1)


async def compare(off: Mode, on: Mode, signer: Signer, concurrency: int, args: argparse.Namespace) -> bool:
    """Alternating rounds at one concurrency; prints the figures; whether they met the targets."""
    for mode in (off, on):
        mode.runs, mode.cpu_s = [], [0.0] * len(mode.pids)
    for round_ in range(args.rounds):
        for mode in (off, on) if round_ % 2 == 0 else (on, off):
            count = int(mode.rate * args.seconds * HEADROOM) + 4 * concurrency
            level, spent = await drive(mode.target, signer, concurrency, args.seconds, count, mode.pids)
            mode.runs.append(level)
            mode.cpu_s = [total + more for total, more in zip(mode.cpu_s, spent, strict=True)]
            mode.served += level.ok
    off_all, on_all = off.report(concurrency), on.report(concurrency)
    pooled_overhead = on_all.percentile(50) / off_all.percentile(50) - 1
    # Each round's two runs were back to back: their ratio is the least disturbed
    # by load that comes and goes on the machine.
    paired = statistics.median(b.percentile(50) / a.percentile(50) - 1 for a, b in zip(off.runs, on.runs, strict=True))
    cpu = on.cpu_per_request(on_all) / off.cpu_per_request(off_all) - 1
    targets = TARGETS[args.feature]
    print(
        f"c={concurrency:<3} p50 overhead with the feature on: {paired:+.1%} (median of {args.rounds} paired rounds; "
        f"pooled {pooled_overhead:+.1%}); CPU per request {cpu:+.1%}; "
        f"targets p50 ≤ {targets.p50(concurrency):.0%}, CPU ≤ {targets.cpu:.0%}"
    )
    return paired <= targets.p50(concurrency) and cpu <= targets.cpu


async def run(args: argparse.Namespace) -> int:
    run_dir = Path(tempfile.mkdtemp(prefix="paysidecar-feature-bench-"))
    print(f"{args.feature} bench: logs in {run_dir}", file=sys.stderr)
    started: list[services.Service] = []
    async with (
        database(os.environ.get("DATABASE_URL")) as db_url,
        otlp_receiver(keep=False, protocol=args.protocol) as (receiver, endpoint),
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
                    "OTEL_EXPORTER_OTLP_PROTOCOL": args.protocol,
                },
            ),
            "tracking": ({"PAYSIDECAR_TRACKING_ENABLED": "false"}, {}),
        }[args.feature]
        feature_env[1].update(args.on_env)
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
                mode.served = warm.ok
            met = [await compare(*modes, signer, concurrency, args) for concurrency in args.levels]
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"feature {args.feature}; {', '.join(f'{k}={v}' for k, v in args.on_env.items()) or 'no extra env'}; "
          f"os.cpu_count() = {os.cpu_count()}; load {load}")
    if args.feature == "otel":
        if receiver.received == 0:
            print("no span reached the receiver: the 'on' stack did not export", file=sys.stderr)
            return 1
        print(spans_report(receiver.trace_sizes, receiver.received, modes[1].served))
    return 0 if all(met) else 2


def spans_report(trace_sizes: collections.Counter[bytes], received: int, paid: int) -> str:
    """Spans in a paid request's trace (the most common trace size: the bench sends
    little else), and every span exported per paid request (challenges and the
    tracking writer's batch traces included)."""
    sizes = collections.Counter(trace_sizes.values())
    size, traces = sizes.most_common(1)[0]
    return (
        f"spans received: {received} in {len(trace_sizes)} traces; a paid request's trace: {size} spans "
        f"({traces} traces of that size); all spans per paid request: {received / max(paid, 1):.2f}"
    )


def _env(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError("NAME=VALUE")
    return name, value


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
    parser.add_argument(
        "--protocol", choices=("grpc", "http/protobuf"), default="grpc", help="OTLP transport (otel only)"
    )
    parser.add_argument(
        "--on-env", type=_env, action="append", default=[], metavar="NAME=VALUE",
        help="a variable for the 'on' side only (repeatable)",
    )  # fmt: skip
    args = parser.parse_args()
    args.on_env = dict(args.on_env)
    sys.exit(asyncio.run(run(args)))


if __name__ == "__main__":
    main()
