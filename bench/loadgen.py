"""The load generator: drive one target at a fixed concurrency, bounded in count
(the prepared items, e.g. pre-signed payments) and in time, and record throughput,
latency percentiles and errors.

A target is a `Send`: an async callable taking one prepared item and returning
None on success or a short error label. Everything it needs (signatures, request
bodies) is made before the clock starts, so only the exchange is measured.
Latency is the full exchange as the client sees it, answer body read.

Items come from one pool every worker draws from (`run_level`: pre-signed exact
payments, any of which any client may send), or from one lane per worker
(`run_lanes`: the vouchers of one payment channel per client).
"""

from __future__ import annotations

import asyncio
import collections
import ipaddress
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

Send = Callable[[Any], Awaitable[str | None]]


def require_loopback(url: str) -> str:
    """`url` if its host is a loopback address; the benchmarks never load anything else."""
    host = urlsplit(url if "://" in url else f"//{url}").hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"refusing to load {url!r}: benchmarks target loopback addresses only")
    return url


@dataclass
class LevelResult:
    concurrency: int
    elapsed_s: float
    latencies_ms: list[float]  # successful exchanges only, sorted
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    # "time" when the deadline ended the level, "count" when the items ran out first.
    stopped_by: str = "time"

    @property
    def ok(self) -> int:
        return len(self.latencies_ms)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def throughput(self) -> float:
        """Successful exchanges per second."""
        return self.ok / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def percentile(self, q: float) -> float:
        """Nearest-rank percentile of the successful latencies (NaN if none)."""
        if not self.latencies_ms:
            return math.nan
        rank = max(1, math.ceil(q / 100 * len(self.latencies_ms)))
        return self.latencies_ms[rank - 1]


async def run_level(send: Send, items: Iterable[Any], concurrency: int, seconds: float) -> LevelResult:
    """Keep `concurrency` exchanges in flight until `seconds` pass or `items` run out.
    Exchanges in flight at the deadline finish and count (their own timeouts bound them)."""
    shared = iter(items)
    return await _drive(send, [shared] * concurrency, seconds, stop_lane_on_error=False)


async def run_lanes(send: Send, lanes: Sequence[Iterable[Any]], seconds: float) -> LevelResult:
    """One worker per lane, each sending only its own items, in order, one at a time:
    e.g. the vouchers of one payment channel, where each item is valid only after the
    one before it was accepted. So a worker whose exchange fails stops (the rest of its
    lane would be refused, and counting those would hide the first error), and the
    whole level ends on count as soon as one lane runs out, so the concurrency stays
    what it says until the end."""
    return await _drive(send, [iter(lane) for lane in lanes], seconds, stop_lane_on_error=True)


async def _drive(send: Send, sources: list[Iterator[Any]], seconds: float, *, stop_lane_on_error: bool) -> LevelResult:
    latencies: list[float] = []
    errors: collections.Counter[str] = collections.Counter()
    exhausted = False
    started = time.perf_counter()
    deadline = started + seconds

    async def worker(source: Iterator[Any]) -> None:
        nonlocal exhausted
        while not exhausted and time.perf_counter() < deadline:
            item = next(source, _END)
            if item is _END:
                exhausted = True
                return
            begun = time.perf_counter()
            try:
                error = await send(item)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a failed exchange is a data point, not the end of the run
                error = type(exc).__name__
            if error is None:
                latencies.append((time.perf_counter() - begun) * 1000)
            else:
                errors[error] += 1
                if stop_lane_on_error:
                    return

    await asyncio.gather(*(worker(source) for source in sources))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return LevelResult(len(sources), elapsed, latencies, errors, "count" if exhausted else "time")


_END = object()
