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

# PostgreSQL work on the path of one paid request, read from sidecar/payments/service.py
# and sidecar/store/ledger.py when this was written: three durable commits (the claim's
# COMMIT, the UPDATEs to settling and to settled) and seven plain round trips (the
# ledger read before verify, the claim's BEGIN and INSERT, and the pool's reset query
# on each of the four connection releases).
LEDGER_COMMITS = 3
LEDGER_ROUND_TRIPS = 7

FACILITATOR = "facilitator"
SIDECAR = "sidecar"
FREE = "gateway-free"
PAID = "gateway-paid"
PEER = "peer-paid"


@dataclass
class TargetRun:
    key: str
    label: str
    levels: list[LevelResult] = field(default_factory=list)

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
        for level in run.levels:
            count_mark = " †" if level.stopped_by == "count" else ""
            lines.append(
                f"| {run.label} | {level.concurrency} | {level.throughput:.0f}{count_mark} | {_ms(level.percentile(50))}"
                f" | {_ms(level.percentile(90))} | {_ms(level.percentile(99))} | {level.ok} | {_errors(level)} |"
            )
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


def verdicts(runs: dict[str, TargetRun], info: RunInfo) -> list[str]:
    paid_peak, peer_peak = runs[PAID].peak(), runs[PEER].peak()
    peak_ratio = _ratio(paid_peak.throughput, peer_peak.throughput) if paid_peak and peer_peak else math.nan
    lowest = min(info.levels)
    paid, free = runs[PAID].at(lowest), runs[FREE].at(lowest)
    alone, facilitator = runs[SIDECAR].at(lowest), runs[FACILITATOR].at(lowest)
    facilitator_p50 = facilitator.percentile(50) if facilitator else math.nan
    via_gateway = _diff(paid, free, 50) - facilitator_p50 - info.handler_ms
    sidecar_only = (alone.percentile(50) if alone else math.nan) - facilitator_p50

    def verdict(ok: bool) -> str:
        return "met" if ok else "**missed**"

    lines = [
        f"- Paid route peak throughput, ours / SDK peer: {paid_peak.throughput if paid_peak else math.nan:.0f}"
        f" / {peer_peak.throughput if peer_peak else math.nan:.0f} req/s = **{peak_ratio:.2f}×**"
        f" (target ≥ {THROUGHPUT_TARGET}×: {verdict(peak_ratio >= THROUGHPUT_TARGET)}).",
        f"- Sidecar's added latency over the free route, facilitator excluded (concurrency {lowest}, p50):"
        f" paid − free {_ms(_diff(paid, free, 50))} ms − facilitator verify+settle {_ms(facilitator_p50)} ms"
        f" − records handler {_ms(info.handler_ms)} ms = **{_ms(via_gateway)} ms**"
        f" (target ≤ {ADDED_LATENCY_TARGET_MS} ms: {verdict(via_gateway <= ADDED_LATENCY_TARGET_MS)}).",
        f"- The sidecar alone (gRPC Authorize + Settle, concurrency {lowest}, p50):"
        f" {_ms(alone.percentile(50) if alone else math.nan)} ms − facilitator {_ms(facilitator_p50)} ms"
        f" = **{_ms(sidecar_only)} ms** of its own.",
    ]
    if info.postgres is not None:
        grpc_part = 2 * info.grpc_ms
        pg_part = LEDGER_COMMITS * info.postgres.commit_ms + LEDGER_ROUND_TRIPS * info.postgres.round_trip_ms
        lines.append(
            f"  Of that, by parts timed alone: 2 gRPC round trips ≈ {_ms(grpc_part)} ms"
            f" (bare round trip {_ms(info.grpc_ms)} ms); PostgreSQL ≈ {_ms(pg_part)} ms"
            f" ({LEDGER_COMMITS} durable commits × {_ms(info.postgres.commit_ms)} ms +"
            f" {LEDGER_ROUND_TRIPS} round trips × {_ms(info.postgres.round_trip_ms)} ms);"
            f" the rest, ≈ {_ms(sidecar_only - grpc_part - pg_part)} ms, is the sidecar's own Python work"
            " (decoding, hashing, binding, facilitator client, tracking, logging)."
        )
    lines.append(
        f"- Sidecar-only peak: **{runs[SIDECAR].peak().throughput if runs[SIDECAR].peak() else math.nan:.0f}"
        f" calls/s** (Authorize + Settle pairs); the facilitator alone peaks at"
        f" {runs[FACILITATOR].peak().throughput if runs[FACILITATOR].peak() else math.nan:.0f} payments/s,"
        " the ceiling of every paid target here."
    )
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
        "† the level ran out of pre-signed payments before its time was up (it stopped on count);"
        " its figures stand, over a shorter window. Latency percentiles are over successful exchanges.",
        "",
        "### Ratios",
        "",
        *ratios(by_key, info),
        "",
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
