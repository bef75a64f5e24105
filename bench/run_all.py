"""The cost of getting paid: every target side by side, in one run, against one
devnet facilitator (`make bench`).

    python bench/run_all.py [--seconds 10] [--levels 1,8,32,64] [--no-profile] [--no-readme]

Starts PostgreSQL ($DATABASE_URL, a scratch database next to it when allowed, else
an embedded pgserver), the devnet facilitator, the sidecar, the gateway (rate limits
off) and the SDK peer (bench/peer.py), each a process of its own on loopback. Then,
for each target — the facilitator alone (verify+settle), the sidecar alone (gRPC
Authorize+Settle), the gateway's free route, the gateway's paid route, the peer's
paid route — a short warm-up and one level per concurrency, each bounded by time
and by the payments signed for it beforehand, with the CPU time of every process
metered. Last, a second sidecar and gateway run under py-spy while the paid route
is driven, and their busiest code is listed.

Prints the results as Markdown and writes them into bench/README.md between its
results markers. Logs and raw profiles stay in a temporary directory it names.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import os
import sys
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import report, services, stack  # noqa: E402
from bench.baselines import (  # noqa: E402
    facilitator_share_p50,
    grpc_p50_ms,
    handler_p50_ms,
    postgres_p50,
    postgres_server_pid,
)
from bench.cpu import CpuMeter, with_children  # noqa: E402
from bench.loadgen import LevelResult, run_level  # noqa: E402
from bench.profiling import markdown, py_spy, record_argv, summarise  # noqa: E402
from bench.signing import Signer  # noqa: E402
from bench.targets import FacilitatorTarget, HttpTarget, SidecarTarget, Target  # noqa: E402
from bench.tracking_write import database  # noqa: E402
from gateway.constants import BASE_SEPOLIA, DEFAULT_PRICE, DEVNET_PAY_TO  # noqa: E402
from paysidecar.aiohttp_middleware import RouteSpec  # noqa: E402

# The peer runs the SDK's FastAPI middleware under uvicorn: the `bench` extras.
PEER_MODULES = ("fastapi", "uvicorn", "httpx")

DATASET = "observations"
QUERY = "city=Berlin&_limit=20"
PAID_PATH = f"/v1/datasets/{DATASET}/records?{QUERY}"
FREE_PATH = f"/v1/datasets/{DATASET}"
# The route the gateway sends for PAID_PATH (gateway/paywall.py), for the sidecar alone.
PAID_ROUTE = RouteSpec(
    key=f"GET /v1/datasets/{DATASET}/records",
    price=DEFAULT_PRICE,
    pay_to=DEVNET_PAY_TO,
    network=BASE_SEPOLIA,
    description=f"Records of the {DATASET} dataset",
    mime_type="application/json",
)
WARMUP_CONCURRENCY = 8
WARMUP_PAYMENTS = 300
# Payments signed per level: the rate seen so far × seconds × this, plus a margin.
HEADROOM = 1.5
# A level must end well before the first of its payments expires (validBefore).
VALIDITY_MARGIN_S = 15


def _progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _line(label: str, level: LevelResult) -> str:
    return (
        f"  {label:<38} c={level.concurrency:<3} {level.throughput:7.0f} req/s  p50 {level.percentile(50):7.2f}"
        f"  p99 {level.percentile(99):7.2f} ms  errors {level.error_count}  ({level.stopped_by})"
    )


def request_ids(key: str, phase: str) -> str:
    """The prefix of the request ids of one level, to find its tracking rows."""
    return f"{key}.{phase}."


async def measure(target: Target, signer: Signer, meter: CpuMeter, run: report.TargetRun,
                  args: argparse.Namespace) -> None:  # fmt: skip
    required = await target.challenge()
    if required is not None:
        validity = min(option.max_timeout_seconds for option in required.accepts)
        if args.seconds + VALIDITY_MARGIN_S > validity:
            raise SystemExit(f"--seconds {args.seconds:g} is too long: {run.label}'s payments are valid {validity} s")

    async def items(count: int, phase: str) -> list:
        payments = await signer.sign(required, count) if required is not None else [None] * count
        prefix = request_ids(run.key, phase)
        return [target.prepare(payment, f"{prefix}{n}") for n, payment in enumerate(payments)]

    warm_items = await items(WARMUP_PAYMENTS if required is not None else args.max_requests, "warm")
    async with target.connect(WARMUP_CONCURRENCY) as send:
        warm = await run_level(send, warm_items, WARMUP_CONCURRENCY, args.warmup)
    if warm.ok == 0:
        raise SystemExit(f"{run.label}: nothing succeeded in the warm-up: {dict(warm.errors)}")
    rate = warm.throughput
    for concurrency in args.levels:
        count = min(args.max_requests, int(rate * args.seconds * HEADROOM) + 4 * concurrency)
        level_items = await items(count, f"c{concurrency}")
        async with target.connect(concurrency) as send:
            before = meter.snapshot()
            level = await run_level(send, level_items, concurrency, args.seconds)
            run.cpu_s[concurrency] = meter.spent(before, meter.snapshot())
        run.levels.append(level)
        rate = max(rate, level.throughput)
        _progress(_line(run.label, level))


async def profile_paid_path(
    db_url: str, facilitator: str, signer: Signer, run_dir: Path, args: argparse.Namespace
) -> tuple[list[str], str]:
    """A second sidecar and gateway under py-spy while the paid route is driven."""
    executable = py_spy()
    if executable is None:
        return [], "Not profiled: py-spy is not installed (`pip install -e '.[bench]'`)."
    outputs = {name: run_dir / f"{name}.pyspy.txt" for name in ("sidecar", "gateway")}

    def under_py_spy(name: str) -> stack.Wrap:
        return lambda argv: record_argv(executable, outputs[name], argv)

    started: list[services.Service] = []
    try:
        sidecar = await stack.start_sidecar("sidecar-profiled", db_url, facilitator, run_dir,
                                            wrap=under_py_spy("sidecar"))  # fmt: skip
        started.append(sidecar)
        gateway = await stack.start_gateway("gateway-profiled", sidecar.port, run_dir, wrap=under_py_spy("gateway"))
        started.append(gateway)
        target = HttpTarget("gateway paid (profiled)", gateway.url + PAID_PATH, paid=True)
        payments = await signer.sign(await target.challenge(), args.profile_payments)
        async with target.connect(args.profile_concurrency) as send:
            level = await run_level(
                send, [target.prepare(p) for p in payments], args.profile_concurrency, args.profile_seconds
            )
        _progress(_line(target.name, level))
    finally:
        for service in reversed(started):
            await services.stop(service)
    note = (
        f"py-spy (sampling, {args.profile_seconds:g} s at concurrency {args.profile_concurrency}, {level.ok} paid"
        f" requests at {level.throughput:.0f} req/s while profiled) on a second sidecar and gateway started for it;"
        " idle, waiting and import-time samples left out. Self time is where the CPU was (in a C extension,"
        " the Python frame that called it, e.g. `Handle._run` for gRPC's and asyncpg's callbacks); inclusive"
        " time is what our code spent including what it called."
    )
    profiles = []
    for name, path in outputs.items():
        if path.exists():
            profiles.append(markdown(summarise(f"{name} process", path.read_text())))
        else:
            profiles.append(f"**{name} process** — py-spy wrote no profile; see {run_dir}/{name}-profiled.log")
    return profiles, note


async def run(args: argparse.Namespace) -> str:
    run_dir = Path(tempfile.mkdtemp(prefix="paysidecar-bench-"))
    _progress(f"bench: logs and raw profiles in {run_dir}")
    info = report.RunInfo(
        date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        cpu_count=os.cpu_count(),
        load_average=os.getloadavg(),
        command="python bench/run_all.py " + " ".join(sys.argv[1:]),
        seconds=args.seconds,
        levels=args.levels,
        handler_ms=await handler_p50_ms(DATASET, QUERY),
    )
    started: list[services.Service] = []

    async def keep(service: services.Service) -> services.Service:
        started.append(service)
        return service

    async def stop_all() -> None:
        for service in reversed(started):
            await services.stop(service)

    async with database(os.environ.get("DATABASE_URL")) as db_url, contextlib.AsyncExitStack() as cleanup:
        cleanup.push_async_callback(stop_all)
        info.postgres = await postgres_p50(db_url)
        facilitator = await keep(await stack.start_facilitator(run_dir))
        sidecar = await keep(await stack.start_sidecar("sidecar", db_url, facilitator.url, run_dir))
        info.grpc_ms = await grpc_p50_ms(f"127.0.0.1:{sidecar.port}")
        gateway = await keep(await stack.start_gateway("gateway", sidecar.port, run_dir))
        peer = await keep(await stack.start_peer(facilitator.url, run_dir))
        _progress(f"bench: facilitator {facilitator.url}, sidecar {sidecar.url}, gateway {gateway.url},"
                  f" peer {peer.url}")

        sidecar_target = SidecarTarget("sidecar", f"127.0.0.1:{sidecar.port}", gateway.url + PAID_PATH, PAID_ROUTE)
        targets: list[tuple[str, str, Target]] = [
            (report.FACILITATOR, "facilitator alone (verify+settle)",
             FacilitatorTarget("facilitator", facilitator.url, sidecar_target.challenge)),
            (report.SIDECAR, "sidecar alone (gRPC Authorize+Settle)", sidecar_target),
            (report.FREE, "gateway free route", HttpTarget("gateway-free", gateway.url + FREE_PATH, paid=False)),
            (report.PAID, "gateway paid route (ours)", HttpTarget("gateway-paid", gateway.url + PAID_PATH, paid=True)),
            (report.PEER, "SDK FastAPI peer, paid", HttpTarget("peer-paid", peer.url + PAID_PATH, paid=True)),
        ]  # fmt: skip
        postmaster = await postgres_server_pid(db_url)
        meter = CpuMeter({
            "gateway": lambda: [gateway.pid],
            "sidecar": lambda: [sidecar.pid],
            "postgres": lambda: with_children(postmaster) if postmaster else [],
            "peer": lambda: [peer.pid],
            "facilitator": lambda: [facilitator.pid],
        })  # fmt: skip
        runs = []
        async with Signer() as signer:
            for key, label, target in targets:
                run = report.TargetRun(key, label)
                runs.append(run)
                await measure(target, signer, meter, run, args)
            if args.no_profile:
                profiles, note = [], "Not profiled in this run (--no-profile)."
            else:
                profiles, note = await profile_paid_path(db_url, facilitator.url, signer, run_dir, args)
        for run in runs:
            if run.key in (report.SIDECAR, report.PAID):
                for concurrency in args.levels:
                    share = await facilitator_share_p50(db_url, request_ids(run.key, f"c{concurrency}"))
                    run.facilitator_share_ms[concurrency] = share
    return report.results_markdown(runs, info, profiles, note)


def _levels(text: str) -> Sequence[int]:
    levels = [int(part) for part in text.split(",") if part.strip()]
    if not levels or min(levels) < 1:
        raise argparse.ArgumentTypeError("levels are positive integers, e.g. 1,8,32,64")
    return levels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per concurrency level (default 10)")
    parser.add_argument("--levels", type=_levels, default=[1, 8, 32, 64], help="concurrency levels (1,8,32,64)")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds per target (default 2)")
    parser.add_argument("--max-requests", type=int, default=50_000, help="cap on requests per level")
    parser.add_argument("--profile-seconds", type=float, default=10.0)
    parser.add_argument("--profile-concurrency", type=int, default=32)
    parser.add_argument("--profile-payments", type=int, default=4_000, help="payments signed for the profile")
    parser.add_argument("--no-profile", action="store_true", help="skip the py-spy profile")
    parser.add_argument("--no-readme", action="store_true", help="print only; leave bench/README.md alone")
    args = parser.parse_args()
    missing = [name for name in PEER_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise SystemExit(f"bench: {', '.join(missing)} missing; install the extras: pip install -e '.[bench]'")
    results = asyncio.run(run(args))
    print(results)
    if not args.no_readme:
        readme = Path(__file__).with_name("README.md")
        report.replace_section(readme, results)
        _progress(f"bench: results written to {readme}")


if __name__ == "__main__":
    main()
