"""The cost of getting paid: every target side by side, in one run, against one
devnet facilitator (`make bench`).

    python bench/run_all.py [--seconds 10] [--levels 1,8,32,64] [--targets all] [--no-profile] [--no-readme]

Starts PostgreSQL ($DATABASE_URL, a scratch database next to it when allowed, else
an embedded pgserver), the devnet facilitator, the sidecar, the gateway (rate limits
off) and the SDK peers (bench/peer.py, one offering exact, one batch-settlement),
each a process of its own on loopback — only those the chosen targets need. Then,
for each target — the facilitator alone (verify+settle), the sidecar alone (gRPC
Authorize+Settle), the gateway's free route, the gateway's paid route, the exact
peer's paid route, the batch peer's route paid with vouchers, the gateway's route
paid with vouchers — a short warm-up and one level per concurrency, each bounded by
time and by the payments signed for it beforehand, with the CPU time of every
process metered. Last, a second sidecar and gateway run under py-spy while the
paid route is driven, and their busiest code is listed.

Prints the results as Markdown and, when every target ran, writes them into
bench/README.md between its results markers. Logs and raw profiles stay in a
temporary directory it names.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import math
import os
import sys
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import report, services, stack  # noqa: E402
from bench.baselines import (  # noqa: E402
    channel_charges,
    facilitator_share_p50,
    grpc_p50_ms,
    handler_p50_ms,
    postgres_p50,
    postgres_server_pid,
)
from bench.channels import ChannelError, open_lanes  # noqa: E402
from bench.cpu import CpuMeter, with_children  # noqa: E402
from bench.loadgen import LevelResult, run_lanes, run_level  # noqa: E402
from bench.profiling import markdown, py_spy, record_argv, summarise  # noqa: E402
from bench.signing import Signer  # noqa: E402
from bench.targets import (  # noqa: E402
    ChannelTarget,
    FacilitatorTarget,
    HttpTarget,
    SidecarTarget,
    Target,
    TargetSkipped,
)
from bench.tracking_write import database  # noqa: E402
from paysidecar.aiohttp_middleware import RouteSpec  # noqa: E402
from x402.mechanisms.evm.batch_settlement.constants import SCHEME_BATCH_SETTLEMENT  # noqa: E402

# The peer runs the SDK's FastAPI middleware under uvicorn: the `bench` extras.
PEER_MODULES = ("fastapi", "uvicorn", "httpx")

DATASET = "observations"
QUERY = "city=Berlin&_limit=20"
PAID_PATH = f"/v1/datasets/{DATASET}/records?{QUERY}"
FREE_PATH = f"/v1/datasets/{DATASET}"
# The route the gateway sends for PAID_PATH (gateway/payments.py), for the sidecar alone:
# the sidecar's default route, whose terms are the sidecar's.
PAID_ROUTE = RouteSpec(
    key=f"GET /v1/datasets/{DATASET}/records",
    description=f"Records of the {DATASET} dataset",
    mime_type="application/json",
)
# What the sidecar offers: both schemes, as under `make run` (exact first: the exact
# targets pay exact, the voucher targets pick batch-settlement).
SCHEMES = "exact,batch-settlement"
# Targets that need PostgreSQL, the sidecar and the gateway (the facilitator alone
# pays what the sidecar's own challenge asks).
STACK_TARGETS = {report.FACILITATOR, report.SIDECAR, report.FREE, report.PAID, report.VOUCHER}
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
                  args: argparse.Namespace, db_url: str | None = None) -> None:  # fmt: skip
    """Drive `target` level by level. With `db_url` (ours, vouchers), each level's charges
    are counted in PostgreSQL afterwards: every paid answer's charge must be there."""
    try:
        required = await target.challenge()
    except TargetSkipped as skipped:
        run.skipped = str(skipped)
        _progress(f"  {run.label:<38} skipped: {skipped}")
        return
    if required is not None:
        validity = min(option.max_timeout_seconds for option in required.accepts)
        if args.seconds + VALIDITY_MARGIN_S > validity:
            raise SystemExit(f"--seconds {args.seconds:g} is too long: {run.label}'s payments are valid {validity} s")

    async def phase(concurrency: int, count: int, name: str, seconds: float, *, record: bool) -> LevelResult:
        """Make what the phase needs (payments signed, channels opened), then drive it with
        the CPU of every process metered (recorded in `run` for a level, not a warm-up)."""
        prefix = request_ids(run.key, name)
        async with target.connect(concurrency) as send:
            if isinstance(target, ChannelTarget):
                vouchers = max(1, math.ceil(count / concurrency))
                charged_before = await channel_charges(db_url) if record and db_url else None
                try:
                    channels = await open_lanes(target, send, signer, required, concurrency, vouchers, prefix)
                except ChannelError as error:
                    raise SystemExit(f"{run.label}: {error}") from None
                if record:
                    run.channels[concurrency] = channels.describe()

                def drive():
                    return run_lanes(send, channels.lanes, seconds)
            else:
                payments = await signer.sign(required, count) if required is not None else [None] * count
                items = [target.prepare(payment, f"{prefix}{n}") for n, payment in enumerate(payments)]

                def drive():
                    return run_level(send, items, concurrency, seconds)

            before = meter.snapshot()
            level = await drive()
            if record:
                run.cpu_s[concurrency] = meter.spent(before, meter.snapshot())
        if isinstance(target, ChannelTarget) and charged_before is not None:
            # Each deposit and each successful voucher was charged the price before its answer left.
            answered = (concurrency + level.ok) * channels.price
            run.durable[concurrency] = (await channel_charges(db_url) - charged_before, answered)
        return level

    warm = await phase(WARMUP_CONCURRENCY, WARMUP_PAYMENTS if required is not None else args.max_requests,
                       "warm", args.warmup, record=False)  # fmt: skip
    if warm.ok == 0:
        raise SystemExit(f"{run.label}: nothing succeeded in the warm-up: {dict(warm.errors)}")
    rate = warm.throughput
    for concurrency in args.levels:
        count = min(args.max_requests, int(rate * args.seconds * HEADROOM) + 4 * concurrency)
        level = await phase(concurrency, count, f"c{concurrency}", args.seconds, record=True)
        run.levels.append(level)
        rate = max(rate, level.throughput)
        _progress(_line(run.label, level))


async def profile_paid_path(
    db_url: str, facilitator: str, signer: Signer, run_dir: Path, args: argparse.Namespace
) -> tuple[list[str], str]:
    """A second sidecar and gateway under py-spy while the paid route is driven, paid
    exact or (`--profile-path voucher`) with vouchers, one channel per client."""
    executable = py_spy()
    if executable is None:
        return [], "Not profiled: py-spy is not installed (`pip install -e '.[bench]'`)."
    outputs = {name: run_dir / f"{name}.pyspy.txt" for name in ("sidecar", "gateway")}

    def under_py_spy(name: str) -> stack.Wrap:
        return lambda argv: record_argv(executable, outputs[name], argv)

    started: list[services.Service] = []
    try:
        sidecar = await stack.start_sidecar("sidecar-profiled", db_url, facilitator, run_dir,
                                            wrap=under_py_spy("sidecar"), PAYSIDECAR_SCHEMES=SCHEMES)  # fmt: skip
        started.append(sidecar)
        gateway = await stack.start_gateway("gateway-profiled", sidecar.port, run_dir, wrap=under_py_spy("gateway"))
        started.append(gateway)
        clients = args.profile_concurrency
        if args.profile_path == "voucher":
            target = ChannelTarget("gateway voucher (profiled)", gateway.url + PAID_PATH)
            required = await target.challenge()
            async with target.connect(clients) as send:
                vouchers = math.ceil(args.profile_payments / clients)
                lanes = await open_lanes(target, send, signer, required, clients, vouchers, "profile.")
                level = await run_lanes(send, lanes.lanes, args.profile_seconds)
        else:
            target = HttpTarget("gateway paid (profiled)", gateway.url + PAID_PATH, paid=True)
            payments = await signer.sign(await target.challenge(), args.profile_payments)
            async with target.connect(clients) as send:
                level = await run_level(send, [target.prepare(p) for p in payments], clients, args.profile_seconds)
        _progress(_line(target.name, level))
    finally:
        for service in reversed(started):
            await services.stop(service)
    paid_with = "vouchers" if args.profile_path == "voucher" else "exact payments"
    note = (
        f"py-spy (sampling, {args.profile_seconds:g} s at concurrency {args.profile_concurrency}, {level.ok} paid"
        f" requests ({paid_with}) at {level.throughput:.0f} req/s while profiled) on a second sidecar and gateway"
        " started for it;"
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
    selected = [key for key in report.TARGETS if key in args.targets]
    with_stack = bool(STACK_TARGETS.intersection(selected))
    started: list[services.Service] = []

    async def keep(service: services.Service) -> services.Service:
        started.append(service)
        return service

    async def stop_all() -> None:
        for service in reversed(started):
            await services.stop(service)

    def pids(service: services.Service | None) -> list[int]:
        return [service.pid] if service is not None else []

    stack_db = database(os.environ.get("DATABASE_URL")) if with_stack else contextlib.nullcontext(None)
    async with stack_db as db_url, contextlib.AsyncExitStack() as cleanup:
        cleanup.push_async_callback(stop_all)
        facilitator = await keep(await stack.start_facilitator(run_dir))
        sidecar = gateway = peer = batch_peer = None
        postmaster = None
        if with_stack:
            info.postgres = await postgres_p50(db_url)
            postmaster = await postgres_server_pid(db_url)
            sidecar = await keep(
                await stack.start_sidecar("sidecar", db_url, facilitator.url, run_dir, PAYSIDECAR_SCHEMES=SCHEMES)
            )
            info.grpc_ms = await grpc_p50_ms(f"127.0.0.1:{sidecar.port}")
            gateway = await keep(await stack.start_gateway("gateway", sidecar.port, run_dir))
        if report.PEER in selected:
            peer = await keep(await stack.start_peer(facilitator.url, run_dir))
        if report.PEER_BATCH in selected:
            batch_peer = await keep(
                await stack.start_peer(facilitator.url, run_dir, name="peer-batch", scheme=SCHEME_BATCH_SETTLEMENT)
            )
        _progress("bench: " + ", ".join(f"{service.name} {service.url}" for service in started))

        def target(key: str) -> tuple[str, Target]:
            # Built on demand: each needs only the services its own key started.
            if key == report.FACILITATOR:
                return "facilitator alone (verify+settle)", FacilitatorTarget(
                    "facilitator", facilitator.url, sidecar_target().challenge
                )
            if key == report.SIDECAR:
                return "sidecar alone (gRPC Authorize+Settle)", sidecar_target()
            if key == report.FREE:
                return "gateway free route", HttpTarget("gateway-free", gateway.url + FREE_PATH, paid=False)
            if key == report.PAID:
                return "gateway paid route (ours)", HttpTarget("gateway-paid", gateway.url + PAID_PATH, paid=True)
            if key == report.PEER:
                return "SDK FastAPI peer, paid", HttpTarget("peer-paid", peer.url + PAID_PATH, paid=True)
            if key == report.PEER_BATCH:
                return "SDK FastAPI peer, vouchers", ChannelTarget("peer-batch", batch_peer.url + PAID_PATH)
            # Ours, paid with vouchers: measured once the gateway's 402 offers batch-settlement.
            return "gateway voucher path (ours)", ChannelTarget("gateway-voucher", gateway.url + PAID_PATH)

        def sidecar_target() -> SidecarTarget:
            return SidecarTarget("sidecar", f"127.0.0.1:{sidecar.port}", gateway.url + PAID_PATH, PAID_ROUTE)

        meter = CpuMeter({
            "gateway": lambda: pids(gateway),
            "sidecar": lambda: pids(sidecar),
            "postgres": lambda: with_children(postmaster) if postmaster else [],
            "peer": lambda: pids(peer),
            "batch peer": lambda: pids(batch_peer),
            "facilitator": lambda: [facilitator.pid],
        })  # fmt: skip
        runs = []
        async with Signer() as signer:
            for key in selected:
                label, measured = target(key)
                run = report.TargetRun(key, label)
                runs.append(run)
                await measure(measured, signer, meter, run, args, db_url if key == report.VOUCHER else None)
            profiled = report.VOUCHER if args.profile_path == "voucher" else report.PAID
            if args.no_profile or profiled not in selected:
                why = "--no-profile" if args.no_profile else f"{profiled} was not among --targets"
                profiles, note = [], f"Not profiled in this run ({why})."
            else:
                profiles, note = await profile_paid_path(db_url, facilitator.url, signer, run_dir, args)
        for run in runs:
            if run.key in (report.SIDECAR, report.PAID):
                for concurrency in args.levels:
                    share = await facilitator_share_p50(db_url, request_ids(run.key, f"c{concurrency}"))
                    run.facilitator_share_ms[concurrency] = share
    return report.results_markdown(runs, info, profiles, note)


def _targets(text: str) -> set[str]:
    if text == "all":
        return set(report.TARGETS)
    keys = {part.strip() for part in text.split(",") if part.strip()}
    unknown = keys.difference(report.TARGETS)
    if not keys or unknown:
        raise argparse.ArgumentTypeError(f"targets are 'all' or some of {', '.join(report.TARGETS)}")
    return keys


def _levels(text: str) -> Sequence[int]:
    levels = [int(part) for part in text.split(",") if part.strip()]
    if not levels or min(levels) < 1:
        raise argparse.ArgumentTypeError("levels are positive integers, e.g. 1,8,32,64")
    return levels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per concurrency level (default 10)")
    parser.add_argument("--levels", type=_levels, default=[1, 8, 32, 64], help="concurrency levels (1,8,32,64)")
    parser.add_argument(
        "--targets", type=_targets, default=set(report.TARGETS),
        help=f"'all' (default) or a comma list of: {', '.join(report.TARGETS)}",
    )  # fmt: skip
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds per target (default 2)")
    parser.add_argument("--max-requests", type=int, default=50_000, help="cap on requests per level")
    parser.add_argument("--profile-seconds", type=float, default=10.0)
    parser.add_argument("--profile-concurrency", type=int, default=32)
    parser.add_argument("--profile-payments", type=int, default=4_000, help="payments signed for the profile")
    parser.add_argument(
        "--profile-path", choices=("paid", "voucher"), default="paid",
        help="profile the gateway's route paid exact (default) or with vouchers",
    )  # fmt: skip
    parser.add_argument("--no-profile", action="store_true", help="skip the py-spy profile")
    parser.add_argument(
        "--no-readme", action="store_true", help="print only; leave bench/README.md alone (always so with --targets)"
    )  # fmt: skip
    args = parser.parse_args()
    missing = [name for name in PEER_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise SystemExit(f"bench: {', '.join(missing)} missing; install the extras: pip install -e '.[bench]'")
    results = asyncio.run(run(args))
    print(results)
    if args.targets != set(report.TARGETS):
        _progress("bench: not every target ran; bench/README.md left as it was")
    elif not args.no_readme:
        readme = Path(__file__).with_name("README.md")
        report.replace_section(readme, results)
        _progress(f"bench: results written to {readme}")


if __name__ == "__main__":
    main()
