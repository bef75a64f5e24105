"""The results of one run as Markdown: the table per target and concurrency, the
ratios the targets are judged by, and the profile summaries; and the README
section they replace."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .baselines import PostgresTimes
from .loadgen import LevelResult

START = "<!-- bench:results:start -->"
END = "<!-- bench:results:end -->"

# The targets of issue 9, as README figures state them.
THROUGHPUT_TARGET = 1.5  # ours / peer, paid route, peak req/s
ADDED_LATENCY_TARGET_MS = 1.5  # sidecar over the free route at p50, facilitator excluded
# The targets for the voucher path (batch-settlement), peak req/s and p50 at the lowest level.
VOUCHER_OVER_EXACT_PEER_TARGET = 3.0  # ours, vouchers / the SDK peer, exact
VOUCHER_OVER_BATCH_PEER_TARGET = 1.0  # ours, vouchers / the SDK peer, batch-settlement
VOUCHER_ADDED_P50_TARGET_MS = 3.0  # ours, vouchers − the gateway's free route

# PostgreSQL work on the path of one paid request, read from sidecar/payments/service.py
# and sidecar/store/ledger.py when this was written: three durable commits (the claim's
# COMMIT, the UPDATEs to settling and to settled) and seven plain round trips (the
# ledger read before verify, the claim's BEGIN and INSERT, and the pool's reset query
# on each of the four connection releases).
LEDGER_COMMITS = 3
LEDGER_ROUND_TRIPS = 7

# Process groups whose CPU is metered (bench/cpu.py), in table order.
CPU_GROUPS = ("gateway", "sidecar", "postgres", "peer", "batch peer", "facilitator")
OURS = ("gateway", "sidecar", "postgres")

FACILITATOR = "facilitator"
SIDECAR = "sidecar"
FREE = "gateway-free"
PAID = "gateway-paid"
PEER = "peer-paid"
PEER_BATCH = "peer-batch"
VOUCHER = "gateway-voucher"
# Every target, in the order a run measures and reports them.
TARGETS = (FACILITATOR, SIDECAR, FREE, PAID, PEER, PEER_BATCH, VOUCHER)
# What the exact ratios and verdicts compare.
EXACT_TARGETS = (FACILITATOR, SIDECAR, FREE, PAID, PEER)


@dataclass
class TargetRun:
    key: str
    label: str
    levels: list[LevelResult] = field(default_factory=list)
    # concurrency -> process group -> CPU seconds spent during that level
    cpu_s: dict[int, dict[str, float]] = field(default_factory=dict)
    # concurrency -> p50 of the facilitator's share of a paid request, as the sidecar timed it
    facilitator_share_ms: dict[int, float] = field(default_factory=dict)
    # concurrency -> the channels a batch-settlement level paid through (bench/channels.py)
    channels: dict[int, str] = field(default_factory=dict)
    # concurrency -> (charges PostgreSQL holds for the level, charges its answers carried), in
    # atomic units: the level's deposits and successful vouchers, each charged the price.
    durable: dict[int, tuple[int, int]] = field(default_factory=dict)
    # Why the target was not measured (e.g. its 402 does not offer the scheme), if it wasn't.
    skipped: str | None = None

    def cpu_ms_per_request(self, concurrency: int, *groups: str) -> float:
        level, spent = self.at(concurrency), self.cpu_s.get(concurrency, {})
        if level is None or not level.ok or any(group not in spent for group in groups):
            return math.nan
        return 1000 * sum(spent[group] for group in groups) / level.ok

    def at(self, concurrency: int) -> LevelResult | None:
        return next((level for level in self.levels if level.concurrency == concurrency), None)

    def peak(self) -> LevelResult | None:
        return max(self.levels, key=lambda level: level.throughput, default=None)


@dataclass
class RunInfo:
    date: str
    cpu_count: int | None
    load_average: tuple[float, float, float]
    command: str
    seconds: float
    levels: Sequence[int]
    handler_ms: float  # the records query + render, measured in-process (p50)
    postgres: PostgresTimes | None = None
    grpc_ms: float = math.nan  # a bare gRPC round trip to the sidecar (p50)


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.2f}"


def _diff(a: LevelResult | None, b: LevelResult | None, q: float) -> float:
    if a is None or b is None:
        return math.nan
    return a.percentile(q) - b.percentile(q)


def _ratio(a: float, b: float) -> float:
    return a / b if b else math.nan


def _errors(level: LevelResult) -> str:
    if not level.errors:
        return "0"
    kinds = ", ".join(f"{kind}×{count}" for kind, count in level.errors.most_common(3))
    return f"{level.error_count} ({kinds})"


def table(runs: Sequence[TargetRun]) -> list[str]:
    lines = [
        "| target | concurrency | req/s | p50 ms | p90 ms | p99 ms | ok | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for run in runs:
        if run.skipped is not None:
            lines.append(f"| {run.label} | | | | | | | skipped: {run.skipped} |")
        for level in run.levels:
            count_mark = " †" if level.stopped_by == "count" else ""
            percentiles = " | ".join(_ms(level.percentile(q)) for q in (50, 90, 99))
            lines.append(
                f"| {run.label} | {level.concurrency} | {level.throughput:.0f}{count_mark} | {percentiles}"
                f" | {level.ok} | {_errors(level)} |"
            )
    return lines


def cpu_table(runs: Sequence[TargetRun]) -> list[str]:
    lines = [
        "| target | concurrency | " + " | ".join(CPU_GROUPS) + " |",
        "|---|---:|" + "---:|" * len(CPU_GROUPS),
    ]
    for run in runs:
        for level in run.levels:
            cells = " | ".join(_ms(run.cpu_ms_per_request(level.concurrency, group)) for group in CPU_GROUPS)
            lines.append(f"| {run.label} | {level.concurrency} | {cells} |")
    return lines


def ratios(runs: dict[str, TargetRun], info: RunInfo) -> list[str]:
    free, paid, peer = runs[FREE], runs[PAID], runs[PEER]
    sidecar, facilitator = runs[SIDECAR], runs[FACILITATOR]
    lines = [
        "| concurrency | paid − free p50 ms | paid − free p99 ms | ours / peer req/s | sidecar-only calls/s"
        " | facilitator-only payments/s |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for concurrency in info.levels:
        ours, theirs = paid.at(concurrency), peer.at(concurrency)
        ratio = _ratio(ours.throughput, theirs.throughput) if ours and theirs else math.nan
        alone = sidecar.at(concurrency)
        direct = facilitator.at(concurrency)
        lines.append(
            f"| {concurrency} | {_ms(_diff(ours, free.at(concurrency), 50))}"
            f" | {_ms(_diff(ours, free.at(concurrency), 99))} | {ratio:.2f}×"
            f" | {alone.throughput if alone else math.nan:.0f} | {direct.throughput if direct else math.nan:.0f} |"
        )
    lines.append("")
    lines += verdicts(runs, info)
    return lines


def _p50(run: TargetRun | None, concurrency: int) -> float:
    level = run.at(concurrency) if run else None
    return level.percentile(50) if level else math.nan


def _peak_rate(run: TargetRun | None) -> float:
    peak = run.peak() if run else None
    return peak.throughput if peak else math.nan


def _rate(run: TargetRun | None, concurrency: int) -> float:
    level = run.at(concurrency) if run else None
    return level.throughput if level else math.nan


def _times(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.2f}×"


def _per_s(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.0f}"


def batch_settlement(runs: dict[str, TargetRun], info: RunInfo) -> list[str]:
    """The voucher-paid targets next to the SDK peer's exact route and the free route."""
    batch, ours = runs.get(PEER_BATCH), runs.get(VOUCHER)
    exact, free = runs.get(PEER), runs.get(FREE)
    lines = [
        "| concurrency | SDK batch peer req/s | SDK batch / SDK exact req/s | SDK batch − free p50 ms"
        " | ours, vouchers req/s | ours / SDK exact | ours / SDK batch | ours − free p50 ms |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in info.levels:
        cells = [
            _per_s(_rate(batch, c)),
            _times(_ratio(_rate(batch, c), _rate(exact, c))),
            _ms(_p50(batch, c) - _p50(free, c)),
            _per_s(_rate(ours, c)),
            _times(_ratio(_rate(ours, c), _rate(exact, c))),
            _times(_ratio(_rate(ours, c), _rate(batch, c))),
            _ms(_p50(ours, c) - _p50(free, c)),
        ]
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    low, top = min(info.levels), max(info.levels)
    lines.append("")
    if batch is not None:
        lines += [
            f"- SDK batch peer peak {_per_s(_peak_rate(batch))} req/s ="
            f" **{_times(_ratio(_peak_rate(batch), _peak_rate(exact)))}** the SDK exact peer's peak"
            f" ({_per_s(_peak_rate(exact))} req/s); at concurrency {low} its p50 is"
            f" {_ms(_p50(batch, low) - _p50(free, low))} ms over the gateway's free route.",
            f"- CPU per paid request at concurrency {top}: the SDK batch peer"
            f" **{_ms(batch.cpu_ms_per_request(top, 'batch peer'))} ms**, the facilitator meanwhile"
            f" {_ms(batch.cpu_ms_per_request(top, 'facilitator'))} ms; the SDK exact peer"
            f" **{_ms(exact.cpu_ms_per_request(top, 'peer')) if exact else '-'} ms** plus the facilitator's"
            f" {_ms(exact.cpu_ms_per_request(top, 'facilitator')) if exact else '-'} ms.",
        ]
    if ours is None or ours.skipped is not None:
        why = ours.skipped if ours is not None else "not selected (--targets)"
        lines.append(f"- Ours, voucher path: not measured: {why}.")
    else:
        lines += _voucher_verdicts(ours, exact, batch, free, low, top)
    if ours is not None and ours.durable:
        held = "; ".join(f"c={c}: {durable} of {answered}" for c, (durable, answered) in sorted(ours.durable.items()))
        every = all(durable == answered for durable, answered in ours.durable.values())
        lines.append(
            f"- Every charge durable (ours): what PostgreSQL holds as charged after each level, of what the"
            f" level's paid answers were charged (atomic units, deposits included): {held}"
            f" (**{'all there' if every else 'MISSING CHARGES'}**)."
        )
    paid = runs.get(PAID)
    if ours is not None and paid is not None and ours.at(low) and paid.at(low):
        lines.append(
            f"- Through the gateway at concurrency {low}, p50: voucher-paid **{_ms(_p50(ours, low))} ms**,"
            f" exact-paid **{_ms(_p50(paid, low))} ms** (free route {_ms(_p50(free, low))} ms)."
        )
    for run in (batch, ours):
        if run is not None and run.channels:
            opened = "; ".join(f"c={c}: {text}" for c, text in sorted(run.channels.items()))
            lines.append(f"- Channels opened for {run.label} (channels × vouchers each): {opened}.")
    return lines


def _voucher_verdicts(ours: TargetRun, exact: TargetRun | None, batch: TargetRun | None, free: TargetRun | None,
                      low: int, top: int) -> list[str]:  # fmt: skip
    over_exact = _ratio(_peak_rate(ours), _peak_rate(exact))
    over_batch = _ratio(_peak_rate(ours), _peak_rate(batch))
    added = _p50(ours, low) - _p50(free, low)
    return [
        f"- Voucher path peak throughput, ours / SDK exact peer: {_per_s(_peak_rate(ours))}"
        f" / {_per_s(_peak_rate(exact))} req/s = **{_times(over_exact)}** (target"
        f" ≥ {VOUCHER_OVER_EXACT_PEER_TARGET:g}×: {_verdict(over_exact >= VOUCHER_OVER_EXACT_PEER_TARGET)});"
        f" ours / SDK batch peer: {_per_s(_peak_rate(ours))} / {_per_s(_peak_rate(batch))} req/s"
        f" = **{_times(over_batch)}** (target ≥ {VOUCHER_OVER_BATCH_PEER_TARGET:g}×:"
        f" {_verdict(over_batch >= VOUCHER_OVER_BATCH_PEER_TARGET)}).",
        f"- Voucher path − free route, p50 at concurrency {low}: {_ms(_p50(ours, low))} − {_ms(_p50(free, low))}"
        f" = **{_ms(added)} ms** (target ≤ {VOUCHER_ADDED_P50_TARGET_MS:g} ms:"
        f" {_verdict(added <= VOUCHER_ADDED_P50_TARGET_MS)}).",
        f"- CPU per voucher request at concurrency {top}: ours (gateway + sidecar + PostgreSQL)"
        f" **{_ms(ours.cpu_ms_per_request(top, *OURS))} ms**.",
    ]


def _verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def _facilitator_share(run: TargetRun, concurrency: int, fallback: float) -> tuple[float, str]:
    """The facilitator's p50 share of `run`'s paid requests as the sidecar timed them,
    else `fallback` (the facilitator driven alone)."""
    share = run.facilitator_share_ms.get(concurrency, math.nan)
    if math.isnan(share):
        return fallback, "verify+settle driven alone"
    return share, "verify+settle as the sidecar timed them"


def verdicts(runs: dict[str, TargetRun], info: RunInfo) -> list[str]:
    low, top = min(info.levels), max(info.levels)
    paid, free, peer, alone = runs[PAID], runs[FREE], runs[PEER], runs[SIDECAR]
    direct = _p50(runs[FACILITATOR], low)
    peak_ratio = _ratio(_peak_rate(paid), _peak_rate(peer))
    paid_share, paid_share_how = _facilitator_share(paid, low, direct)
    added = _p50(paid, low) - _p50(free, low) - paid_share - info.handler_ms
    alone_share, alone_share_how = _facilitator_share(alone, low, direct)
    own = _p50(alone, low) - alone_share
    lines = [
        f"- Paid route peak throughput, ours / SDK peer: {_peak_rate(paid):.0f} / {_peak_rate(peer):.0f} req/s"
        f" = **{peak_ratio:.2f}×** (target ≥ {THROUGHPUT_TARGET}×: {_verdict(peak_ratio >= THROUGHPUT_TARGET)}).",
        f"- Sidecar's added latency over the free route, facilitator excluded (concurrency {low}, p50):"
        f" paid {_ms(_p50(paid, low))} − free {_ms(_p50(free, low))} − facilitator {_ms(paid_share)}"
        f" ({paid_share_how}) − records handler {_ms(info.handler_ms)} = **{_ms(added)} ms**"
        f" (target ≤ {ADDED_LATENCY_TARGET_MS} ms: {_verdict(added <= ADDED_LATENCY_TARGET_MS)}).",
        f"- The sidecar alone (gRPC Authorize + Settle, concurrency {low}, p50): {_ms(_p50(alone, low))}"
        f" − facilitator {_ms(alone_share)} ({alone_share_how}; driven alone: {_ms(direct)})"
        f" = **{_ms(own)} ms** of its own.",
    ]
    if info.postgres is not None:
        grpc_part = 2 * info.grpc_ms
        pg_part = LEDGER_COMMITS * info.postgres.commit_ms + LEDGER_ROUND_TRIPS * info.postgres.round_trip_ms
        cpu = alone.cpu_ms_per_request(low, "sidecar")
        lines.append(
            f"  Parts of it timed alone at the start of the run: 2 gRPC round trips ≈ {_ms(grpc_part)} ms;"
            f" PostgreSQL ≈ {_ms(pg_part)} ms ({LEDGER_COMMITS} durable commits × {_ms(info.postgres.commit_ms)} ms"
            f" + {LEDGER_ROUND_TRIPS} round trips × {_ms(info.postgres.round_trip_ms)} ms); the sidecar's CPU"
            f" ≈ {_ms(cpu)} ms per request (CPU table). Left over: {_ms(own - grpc_part - pg_part - cpu)} ms"
            " (waits the parts don't show, e.g. commits slower under load than alone)."
        )
    ours_cpu = paid.cpu_ms_per_request(top, *OURS)
    peer_cpu = peer.cpu_ms_per_request(top, "peer")
    lines += [
        f"- CPU per paid request at concurrency {top}: ours (gateway + sidecar + PostgreSQL) **{_ms(ours_cpu)} ms**,"
        f" the SDK peer **{_ms(peer_cpu)} ms**, plus the devnet facilitator's"
        f" {_ms(paid.cpu_ms_per_request(top, 'facilitator'))} ms for either. With the facilitator on other"
        f" machines, as in production, CPU bounds throughput: on the same cores ours would serve"
        f" **{_ratio(peer_cpu, ours_cpu):.2f}×** the peer's paid requests (a projection from CPU, not a measurement).",
        f"- Sidecar-only peak: **{_peak_rate(alone):.0f} calls/s** (Authorize + Settle pairs); the facilitator"
        f" alone peaks at {_peak_rate(runs[FACILITATOR]):.0f} payments/s on this machine: a bound on every paid"
        " target here, each of which also shares the cores with it.",
    ]
    return lines


def results_markdown(
    runs: Sequence[TargetRun], info: RunInfo, profiles: Sequence[str], profile_note: str
) -> str:
    by_key = {run.key: run for run in runs}
    load = ", ".join(f"{value:.2f}" for value in info.load_average)
    lines = [
        f"Run of {info.date}: `os.cpu_count()` = {info.cpu_count}, load average at start {load},"
        f" {info.seconds:g} s per level, concurrency {', '.join(map(str, info.levels))}.",
        f"Command: `{info.command}`",
        "",
        "### Throughput and latency",
        "",
        *table(runs),
        "",
        "† the level ran out of pre-signed payments (with channels: one client's vouchers) before its time was"
        " up (it stopped on count); its figures stand, over a shorter window. Latency percentiles are over"
        " successful exchanges.",
        "",
        "### CPU per successful request (ms)",
        "",
        "Process CPU time (user + system, from /proc) spent during the level, divided by its successful requests."
        " PostgreSQL is the server's postmaster and backends; on a shared machine idle background work of a"
        " process is charged too.",
        "",
        *cpu_table(runs),
        "",
    ]
    if all(key in by_key for key in EXACT_TARGETS):
        lines += ["### Ratios", "", *ratios(by_key, info), ""]
    if PEER_BATCH in by_key or VOUCHER in by_key:
        lines += [
            "### Batch settlement (vouchers)",
            "",
            "One payment channel per concurrent client, opened and funded through the target before each level"
            " (not measured); each request pays with the channel's next voucher, pre-signed. Free = the gateway's"
            " free route.",
            "",
            *batch_settlement(by_key, info),
            "",
        ]
    lines += [
        "### Profile of the paid path",
        "",
        profile_note,
    ]
    for profile in profiles:
        lines += ["", profile]
    return "\n".join(lines) + "\n"


def replace_section(readme: Path, body: str) -> None:
    """Put `body` between the results markers of `readme` (appended when absent)."""
    text = readme.read_text() if readme.exists() else ""
    section = f"{START}\n{body}{END}"
    pattern = re.compile(re.escape(START) + r".*?" + re.escape(END), re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text)
    else:
        text = text.rstrip("\n") + ("\n\n" if text else "") + section + "\n"
    readme.write_text(text)
