"""Reliability soak (`make reliability`): the whole stack on loopback under mixed
traffic for a bounded time while the devnet facilitator misbehaves on purpose,
then the money invariants checked end to end.

    python bench/reliability.py [--seconds 60] [--concurrency 12] [--fault-every 3] [--no-fuzz]

Starts PostgreSQL ($DATABASE_URL, a scratch database next to it when allowed, else
an embedded pgserver), the devnet facilitator, the sidecar and the gateway, each a
process of its own (bench/stack.py). Drives paid (fresh pre-signed payments),
unpaid, replayed, malformed and free requests at a fixed concurrency (bench/soak.py)
and arms a facilitator fault every few seconds (503s, dropped connections, money
moved but the answer lost, hangs, truncated answers). Then it waits for the
sidecar's recovery to resolve every interrupted settle and checks, from the devnet
chain's transactions and the sidecar's TrackingService:

- served on failure: a 200 whose payment the chain does not show        (must be 0)
- double settles: a payment nonce transferred more than once            (must be 0)
- served twice: one payment answered 200 more than once                 (must be 0)
- records lost: a request to the paid route without a tracking record   (must be 0)
- 500s and requests with no HTTP answer at all                          (must be 0)
- memory: resident size of the sidecar and the gateway after warm-up vs at the end

Last, unless --no-fuzz, it runs the hostile-input test module and reports its
case count and 5xx. Prints Markdown tables; exits 1 when an invariant is broken.
Service logs stay in the temporary directory it names.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import asyncpg
from google.protobuf import json_format
from x402.http.utils import decode_payment_required_header
from x402.schemas import PaymentRequired

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import services, soak, stack  # noqa: E402
from bench.loadgen import require_loopback  # noqa: E402
from bench.signing import Signer  # noqa: E402
from bench.tracking_write import database  # noqa: E402
from paysidecar.client import SidecarClient  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# Short settle timeouts and a frequent recovery, so interrupted settles resolve within the run.
SIDECAR_ENV = {
    "PAYSIDECAR_VERIFY_TIMEOUT_S": "2",
    "PAYSIDECAR_SETTLE_TIMEOUT_S": "2",
    "PAYSIDECAR_RECONCILE_WINDOW_S": "2",
    "PAYSIDECAR_RECOVERY_INTERVAL_S": "2",
}
INITIAL_PAYMENTS = 1500
REFILL_BELOW, REFILL_BATCH = 500, 500
RESOLVE_TIMEOUT_S = 60.0
RSS_EVERY_S = 2.0
# Growth past warm-up tolerated as noise (allocator, caches filling): the larger of the two.
RSS_FLAT_MIB, RSS_FLAT_SHARE = 16.0, 0.15
FUZZ_MODULE = "tests/reliability/test_hostile_input.py"
UNRESOLVED = ("settling", "unknown", "verified", "redeeming")


@dataclass
class Findings:
    rows: list[tuple[str, str, str]] = field(default_factory=list)  # check, value, expected
    broken: list[str] = field(default_factory=list)

    def add(self, check: str, value: object, expected: str = "", ok: bool = True) -> None:
        self.rows.append((check, str(value), expected))
        if not ok:
            self.broken.append(check)


async def _challenge(http: aiohttp.ClientSession, gateway_url: str) -> PaymentRequired:
    async with http.get(f"{gateway_url}/v1/records?_limit=5") as response:
        if response.status != 402:
            raise SystemExit(f"reliability: the paid route answered {response.status}, not 402")
        return decode_payment_required_header(response.headers["PAYMENT-REQUIRED"])


async def _refill(signer: Signer, required: PaymentRequired, payments: collections.deque, stop: asyncio.Event) -> None:
    while not stop.is_set():
        if len(payments) < REFILL_BELOW:
            payments.extend(await signer.sign(required, REFILL_BATCH))
        else:
            await asyncio.sleep(0.2)


async def _unresolved(db_url: str) -> dict[str, int]:
    conn = await asyncpg.connect(db_url)
    try:
        rows = await conn.fetch("SELECT state, count(*) AS n FROM payment_ledger GROUP BY state")
    finally:
        await conn.close()
    return {row["state"]: row["n"] for row in rows}


async def _wait_resolved(db_url: str) -> dict[str, int]:
    """Ledger states once no settle is left unresolved (recovery runs every 2 s)."""
    deadline = time.monotonic() + RESOLVE_TIMEOUT_S
    while True:
        states = await _unresolved(db_url)
        if not any(states.get(state) for state in UNRESOLVED) or time.monotonic() > deadline:
            return states
        await asyncio.sleep(0.5)


async def _records(sidecar_target: str) -> dict[str, dict]:
    """Every tracking record, by request id, through the TrackingService."""
    found: dict[str, dict] = {}
    async with SidecarClient(sidecar_target, timeout_s=30) as client:
        cursor = ""
        while True:
            page = await client.list_records(limit=100, cursor=cursor)
            for record in page.records:
                found[record.request_id] = json_format.MessageToDict(record, preserving_proto_field_name=True)
            if not page.has_more:
                return found
            cursor = page.next_cursor


async def _transfers(http: aiohttp.ClientSession, facilitator_url: str) -> collections.Counter[str]:
    async with http.get(f"{facilitator_url}/_devnet/transactions") as response:
        return collections.Counter(tx["nonce"].lower() for tx in await response.json())


async def _fuzz() -> dict:
    """Run the hostile-input tests; their case counts and failures."""
    report = Path(tempfile.mkstemp(prefix="paysidecar-fuzz-", suffix=".json")[1])
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pytest", FUZZ_MODULE, "-q", "-p", "no:cacheprovider",
        cwd=ROOT, env={**services.child_env(), "PAYSIDECAR_FUZZ_REPORT": str(report)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await child.communicate()
    try:
        counts = json.loads(report.read_text() or "{}")
    finally:
        report.unlink(missing_ok=True)
    last = output.decode(errors="replace").strip().splitlines()[-1:] or [""]
    return {"exit": child.returncode, "summary": last[0], **counts}


def _growth(samples: list[tuple[float, float]], warmup_s: float) -> tuple[float, float] | None:
    """(MiB after warm-up, MiB at the end)."""
    after = [mib for at, mib in samples if at >= warmup_s]
    return (after[0], after[-1]) if len(after) >= 2 else None


def _settled(record: dict) -> bool:
    return bool((record.get("settlement") or {}).get("success"))


def _redeem(record: dict) -> bool:
    return "redeem" in (record.get("metadata") or {})


def check(
    answers: list[soak.Answer],
    transfers: collections.Counter[str],
    records: dict[str, dict],
    states: dict[str, int],
) -> Findings:
    findings = Findings()
    served = collections.Counter(a.nonce for a in answers if a.status == 200 and a.nonce)
    paid_200 = [a for a in answers if a.status == 200 and a.kind in ("paid", "replayed")]
    unpaid_200 = [a for a in paid_200 if not a.nonce or not transfers.get(a.nonce)]
    findings.add("served on failure (200 not on chain)", len(unpaid_200), "0", not unpaid_200)
    # A redeem's own record carries no settlement (service.py records it on the
    # first request's record): it is counted apart, from its metadata.
    untracked_200 = [
        a for a in paid_200 if not _settled(records.get(a.request_id, {})) and not _redeem(records.get(a.request_id, {}))
    ]
    findings.add("served without a settled record", len(untracked_200), "0", not untracked_200)
    doubled = [nonce for nonce, count in transfers.items() if count > 1]
    findings.add("double settles (transfers per nonce > 1)", len(doubled), "0", not doubled)
    twice = [nonce for nonce, count in served.items() if count > 1]
    findings.add("served twice (200s per payment > 1)", len(twice), "0", not twice)
    charged_unserved = [nonce for nonce in transfers if nonce not in served]
    findings.add("charged, not served (left redeemable)", len(charged_unserved), "info")
    lost = [a for a in answers if a.tracked and a.status and a.request_id not in records]
    findings.add("records lost (paid-route request, no record)", len(lost), "0", not lost)
    redeems = sum(1 for a in paid_200 if _redeem(records.get(a.request_id, {})))
    findings.add("redeemed (replay of a charged, unserved payment)", redeems, "info")
    left = {state: states.get(state, 0) for state in UNRESOLVED if states.get(state)}
    findings.add("ledger rows left unresolved", left or 0, "0", not left)
    errors = collections.Counter(a.status for a in answers if a.status >= 500 and a.status != 503 or a.status == 0)
    findings.add("5xx other than 503 / no HTTP answer", dict(errors) or 0, "0", not errors)
    return findings


def _class_table(answers: list[soak.Answer], seconds: float) -> list[str]:
    statuses = sorted({a.status for a in answers})
    lines = [
        "| class | requests | " + " | ".join(str(s) for s in statuses) + " | p50 ms |",
        "|---|---:|" + "---:|" * len(statuses) + "---:|",
    ]
    for kind in [*soak.CLASSES, "all"]:
        chosen = [a for a in answers if kind in ("all", a.kind)]
        if not chosen:
            continue
        counts = collections.Counter(a.status for a in chosen)
        p50 = sorted(a.ms for a in chosen)[len(chosen) // 2]
        cells = " | ".join(str(counts.get(s, "")) for s in statuses)
        lines.append(f"| {kind} | {len(chosen)} | {cells} | {p50:.0f} |")
    served = sum(1 for a in answers if a.status == 200 and a.kind in ("paid", "replayed"))
    lines.append("")
    lines.append(f"Throughput: {len(answers) / seconds:.1f} requests/s, {served / seconds:.1f} paid answers served/s.")
    return lines


def _print(title: str, lines: list[str]) -> None:
    print(f"\n### {title}\n")
    print("\n".join(lines))


async def run(args: argparse.Namespace) -> int:
    run_dir = Path(tempfile.mkdtemp(prefix="paysidecar-soak-"))
    rng = random.Random(args.seed)
    print(f"reliability soak: {args.seconds:.0f} s at concurrency {args.concurrency}; logs in {run_dir}", flush=True)
    started: list[services.Service] = []
    async with database(os.environ.get("DATABASE_URL")) as db_url:
        try:
            facilitator = await stack.start_facilitator(run_dir)
            started.append(facilitator)
            sidecar = await stack.start_sidecar("sidecar", db_url, facilitator.url, run_dir, **SIDECAR_ENV)
            started.append(sidecar)
            gateway = await stack.start_gateway("gateway", sidecar.port, run_dir)
            started.append(gateway)
            for service in started:
                require_loopback(service.url)
            sidecar_target = f"127.0.0.1:{sidecar.port}"

            timeout = aiohttp.ClientTimeout(total=soak.REQUEST_TIMEOUT_S)
            connector = aiohttp.TCPConnector(limit=args.concurrency + 4)
            async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http, Signer(processes=1) as signer:
                required = await _challenge(http, gateway.url)
                payments = collections.deque(await signer.sign(required, INITIAL_PAYMENTS))
                traffic = soak.Traffic(gateway.url, payments, rng)
                stop = traffic.stop
                refill = asyncio.ensure_future(_refill(signer, required, payments, stop))
                faults = asyncio.ensure_future(soak.inject_faults(http, facilitator.url, args.fault_every, stop, rng))
                memory = asyncio.ensure_future(
                    soak.sample_rss({"sidecar": sidecar.pid, "gateway": gateway.pid}, RSS_EVERY_S, stop)
                )
                began = time.monotonic()
                workers = [asyncio.ensure_future(traffic.worker(http)) for _ in range(args.concurrency)]
                await asyncio.sleep(args.seconds)
                stop.set()
                await asyncio.gather(*workers)
                elapsed = time.monotonic() - began
                armed, samples = await faults, await memory
                refill.cancel()
                async with http.delete(f"{facilitator.url}/_devnet/faults") as response:
                    response.raise_for_status()
                print("load done; waiting for the ledger to resolve interrupted settles", flush=True)
                states = await _wait_resolved(db_url)
                transfers = await _transfers(http, facilitator.url)
                records = await _records(sidecar_target)
        finally:
            codes = {service.name: await services.stop(service) for service in reversed(started)}

    answers = traffic.answers
    findings = check(answers, transfers, records, states)
    findings.add("faults injected", f"{sum(armed.values())} ({', '.join(f'{k} {v}' for k, v in sorted(armed.items()))})", "info")
    warmup = min(10.0, args.seconds / 4)
    for name, series in samples.items():
        growth = _growth(series, warmup)
        if growth is None:
            findings.add(f"memory {name} (RSS)", "not measured", "flat")
            continue
        first, last = growth
        flat = last - first <= max(RSS_FLAT_MIB, first * RSS_FLAT_SHARE)
        findings.add(f"memory {name} (RSS after {warmup:.0f} s → end)", f"{first:.0f} → {last:.0f} MiB", "flat", flat)
    findings.add("service exit codes (SIGTERM)", codes, "all 0", all(code == 0 for code in codes.values()))

    if args.fuzz:
        print(f"running {FUZZ_MODULE} for the fuzz figures", flush=True)
        fuzz = await _fuzz()
        cases = sum(fuzz.get("cases", {}).values())
        failures = sum(fuzz.get("server_errors", {}).values())
        findings.add("fuzz cases (hostile-input tests)", f"{cases} ({fuzz['summary']})", ">= 10000", cases >= 10_000)
        findings.add("fuzz 5xx (HTTP) and failed fuzz tests", f"{failures}, exit {fuzz['exit']}", "0, exit 0", failures == 0 and fuzz["exit"] == 0)

    _print(f"Requests by class and status ({elapsed:.0f} s, concurrency {args.concurrency})", _class_table(answers, elapsed))
    _print("Checks", ["| check | value | expected |", "|---|---|---|", *(f"| {c} | {v} | {e} |" for c, v, e in findings.rows)])
    if findings.broken:
        print(f"\nBROKEN: {', '.join(findings.broken)}")
        return 1
    print("\nAll invariants held.")
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="load duration (default 60)")
    parser.add_argument("--concurrency", type=int, default=12, help="clients in flight (default 12)")
    parser.add_argument("--fault-every", type=float, default=3.0, help="seconds between injected faults (default 3)")
    parser.add_argument("--seed", type=int, default=None, help="random seed of the traffic and fault mix")
    parser.add_argument("--no-fuzz", dest="fuzz", action="store_false", help="skip the hostile-input test run")
    sys.exit(asyncio.run(run(parser.parse_args())))


if __name__ == "__main__":
    main()
