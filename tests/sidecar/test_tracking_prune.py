"""Prune cannot delete the present: a cutoff in the future, or younger than the
minimum retention, is INVALID_ARGUMENT and deletes nothing; a cutoff old enough
deletes what is older, and no cutoff means the retention period."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import ValidationError

from paysidecar.v1 import tracking_pb2
from sidecar.config import Settings
from sidecar.store.tracking import Step

AGES_DAYS = (0, 1, 6, 8, 30, 120)  # one record of each age


def _prune(older_than: datetime | None) -> tracking_pb2.PruneRequest:
    if older_than is None:
        return tracking_pb2.PruneRequest()
    stamp = Timestamp()
    stamp.FromDatetime(older_than)
    return tracking_pb2.PruneRequest(older_than=stamp)


async def _ages(database_url: str, now: datetime) -> list[int]:
    conn = await asyncpg.connect(database_url)
    try:
        stamps = await conn.fetch('SELECT "timestamp" FROM resource_call_records')
    finally:
        await conn.close()
    return sorted(round((now - row["timestamp"]) / timedelta(days=1)) for row in stamps)


@pytest.fixture
async def aged_records(make_sidecar, database_url):
    """A sidecar (7 days minimum retention, 90 days retention) and records of AGES_DAYS."""
    sidecar = await make_sidecar(min_retention_days=7, retention_days=90)
    now = datetime.now(UTC)
    for days in AGES_DAYS:
        sidecar.sidecar.writer.record(uuid.uuid4(), Step.START, {"path": "/p", "timestamp": now - timedelta(days=days)})
    await sidecar.sidecar.writer.flush()
    assert await _ages(database_url, now) == list(AGES_DAYS)
    yield sidecar, now
    await sidecar.stop()


@pytest.mark.parametrize(
    "cutoff",
    [timedelta(days=1), timedelta(seconds=1), timedelta(0), -timedelta(hours=1), -timedelta(days=6, hours=23)],
    ids=["in-a-day", "in-a-second", "now", "an-hour-ago", "inside-the-minimum"],
)
async def test_a_cutoff_in_the_future_or_inside_the_minimum_retention_deletes_nothing(
    aged_records, database_url, cutoff
):
    sidecar, now = aged_records
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await sidecar.tracking.Prune(_prune(datetime.now(UTC) + cutoff))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.details().startswith("invalid_prune_cutoff: ")
    assert await _ages(database_url, now) == list(AGES_DAYS)


async def test_a_cutoff_past_the_minimum_retention_deletes_what_is_older(aged_records, database_url):
    sidecar, now = aged_records
    answer = await sidecar.tracking.Prune(_prune(now - timedelta(days=7)))
    assert answer.deleted == 3
    assert await _ages(database_url, now) == [0, 1, 6]


async def test_no_cutoff_deletes_past_the_retention_period(aged_records, database_url):
    sidecar, now = aged_records
    assert (await sidecar.tracking.Prune(_prune(None))).deleted == 1
    assert await _ages(database_url, now) == [0, 1, 6, 8, 30]


def test_a_retention_below_the_minimum_is_refused_at_start():
    with pytest.raises(ValidationError, match="retention_days \\(3\\) is below min_retention_days \\(7\\)"):
        Settings(retention_days=3, min_retention_days=7)
    assert Settings(retention_days=7, min_retention_days=7).retention_days == 7
