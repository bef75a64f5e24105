"""Parts of a paid request timed on their own, one at a time, to split its
latency: the records handler (the same work in every records target), PostgreSQL
round trips on the database the sidecar uses (its ledger claims and state changes
are commits) and a bare gRPC round trip to the sidecar."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.constants import SAMPLE_DATA_DIR
from gateway.datasets import load_datasets
from gateway.query import parse_query, run_query
from gateway.render import render

SAMPLES = 200


async def _p50_ms(step: Callable[[], Awaitable[object]], samples: int = SAMPLES) -> float:
    times = []
    for _ in range(samples):
        begun = time.perf_counter()
        await step()
        times.append((time.perf_counter() - begun) * 1000)
    return statistics.median(times)


async def handler_p50_ms(dataset_name: str, query: str) -> float:
    """The records handler's own work for `query`: parse, query in a thread (as the
    gateway runs it), render."""
    dataset = load_datasets(SAMPLE_DATA_DIR)[dataset_name]
    params = [tuple(part.split("=", 1)) for part in query.split("&")]

    async def handle() -> None:
        plan = parse_query(params, dataset.types)
        render(await asyncio.to_thread(run_query, dataset.frame, plan), plan, None)

    return await _p50_ms(handle)


@dataclass(frozen=True)
class PostgresTimes:
    round_trip_ms: float  # SELECT 1
    commit_ms: float  # a transaction that gets an id and so waits for its WAL flush


async def postgres_p50(url: str) -> PostgresTimes:
    conn = await asyncpg.connect(url)
    try:
        round_trip = await _p50_ms(lambda: conn.fetchval("SELECT 1"))
        # txid_current() assigns a transaction id, so its commit is durable (fsync
        # under synchronous_commit=on) like a ledger INSERT or UPDATE, touching no table.
        commit = await _p50_ms(lambda: conn.fetchval("SELECT txid_current()"))
    finally:
        await conn.close()
    return PostgresTimes(round_trip, commit)


async def grpc_p50_ms(target: str) -> float:
    """One gRPC round trip to the sidecar doing nothing (grpc.health.v1 Check)."""
    async with grpc.aio.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return await _p50_ms(lambda: stub.Check(health_pb2.HealthCheckRequest(), timeout=10))
