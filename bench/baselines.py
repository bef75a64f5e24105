"""Parts of a paid request timed on their own, one at a time, to split its
latency: the records handler (the same work in every records target), PostgreSQL
round trips on the database the sidecar uses (its ledger claims and state changes
are commits) and a bare gRPC round trip to the sidecar."""

from __future__ import annotations

import asyncio
import math
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

from .cpu import name, parent

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
    commit_ms: float  # a transaction that writes WAL, so its commit waits for the flush (NaN: not allowed)


# A transactional WAL message: its commit waits for the WAL flush (fsync, under
# synchronous_commit=on) like a ledger INSERT or UPDATE, and it touches no table.
# (txid_current() would not do: a transaction that wrote no WAL skips the flush.)
DURABLE_COMMIT = "SELECT pg_logical_emit_message(true, 'paysidecar-bench', '')"


async def postgres_p50(url: str) -> PostgresTimes:
    conn = await asyncpg.connect(url)
    try:
        round_trip = await _p50_ms(lambda: conn.fetchval("SELECT 1"))
        try:
            commit = await _p50_ms(lambda: conn.fetchval(DURABLE_COMMIT))
        except asyncpg.InsufficientPrivilegeError:
            commit = math.nan
    finally:
        await conn.close()
    return PostgresTimes(round_trip, commit)


async def postgres_server_pid(url: str) -> int | None:
    """The postmaster's pid when the server runs on this machine (None if unseen)."""
    conn = await asyncpg.connect(url)
    try:
        backend = await conn.fetchval("SELECT pg_backend_pid()")
        # A server in a container reports pids of its own namespace: trust the pid
        # only if this machine's process of that id is a PostgreSQL backend. Read
        # while connected: the backend exits with its connection.
        return parent(backend) if name(backend) == "postgres" else None
    finally:
        await conn.close()


async def grpc_p50_ms(target: str) -> float:
    """One gRPC round trip to the sidecar doing nothing (grpc.health.v1 Check)."""
    async with grpc.aio.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return await _p50_ms(lambda: stub.Check(health_pb2.HealthCheckRequest(), timeout=10))


# Per request: the facilitator's verify + settle time as the sidecar timed it
# (the attempts it records in the tracking row's metadata), then the median.
FACILITATOR_SHARE = """
SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY verify + settle) FROM (
    SELECT
        (SELECT sum((a ->> 'latency_ms')::float) FROM jsonb_array_elements(metadata -> 'verify_attempts') a) AS verify,
        (SELECT sum((a ->> 'latency_ms')::float) FROM jsonb_array_elements(metadata -> 'settle_attempts') a) AS settle
    FROM resource_call_records
    WHERE request_id LIKE $1 AND payment_verified
) per_request
WHERE verify IS NOT NULL AND settle IS NOT NULL
"""


async def facilitator_share_p50(url: str, request_id_prefix: str) -> float:
    """p50 of the facilitator's share of the paid requests whose id starts with the prefix
    (NaN when their tracking rows don't hold the attempts)."""
    conn = await asyncpg.connect(url)
    try:
        value = await conn.fetchval(FACILITATOR_SHARE, request_id_prefix.replace("_", r"\_") + "%")
    except asyncpg.PostgresError:
        value = None
    finally:
        await conn.close()
    return math.nan if value is None else float(value)


# What PostgreSQL holds as charged on every channel (ours: the ledger's commits).
CHANNEL_CHARGES = "SELECT coalesce(sum(charged_cumulative), 0)::bigint FROM payment_channels"


async def channel_charges(url: str) -> int:
    """The sum of what every channel was charged, as committed in PostgreSQL."""
    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval(CHANNEL_CHARGES))
    finally:
        await conn.close()
