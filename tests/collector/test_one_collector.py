"""One collector runs at a time across replicas on one database (an advisory
lock): a second replica's run waits for the first or reports it busy, and no
channel is claimed by two runs."""

from __future__ import annotations

import asyncio
import collections

from tests.reliability.observe import eventually

from .support import PRICE, claimed_on_chain, collect, open_channels


async def test_a_second_replica_does_not_collect_while_the_first_one_runs(make_sidecar, chain, facilitator):
    first, second = await make_sidecar(), await make_sidecar()
    channels = await open_channels(first, 2)
    facilitator.arm(stage="settle", mode="delay", delay_ms=1500, times=1)  # the first run's claim takes a while
    settles = facilitator.stats.settle_calls  # the deposits'

    running = asyncio.create_task(collect(first))
    await eventually(lambda: facilitator.stats.settle_calls > settles, "the first claim at the facilitator")  # its claim is at the facilitator
    busy = await collect(second, wait_seconds=0)
    done = await running

    assert not busy.ran and "another replica" in busy.message
    assert (list(busy.claims), list(busy.settles)) == ([], [])
    assert [claim.state for claim in done.claims] == ["done"]
    assert all(claimed_on_chain(chain, channel) == 3 * PRICE for channel in channels)


async def test_replicas_collecting_at_once_claim_each_channel_in_one_run_only(make_sidecar, chain):
    replicas = [await make_sidecar() for _ in range(3)]
    channels = await open_channels(replicas[0], 4)

    reports = await asyncio.gather(*(collect(replica, wait_seconds=30) for replica in replicas))

    assert all(report.ran for report in reports)
    claimed = collections.Counter(
        channel_id for report in reports for claim in report.claims if claim.state == "done" for channel_id in claim.channel_ids
    )
    assert claimed == {channel.channel_id: 1 for channel in channels}
    assert sum(len(report.claims) for report in reports) == 1  # the others found nothing due
    assert all(claimed_on_chain(chain, channel) == 3 * PRICE for channel in channels)
