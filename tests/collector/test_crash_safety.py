"""A claim's intent is recorded before its transaction; whatever happens after (an
answer lost, the replica killed mid-claim), the chain decides the outcome:
nothing is claimed twice and nothing is lost (issue 18, item 3)."""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg
import grpc
import pytest

from tests.reliability.observe import eventually, fetch

from .support import PRICE, claimed_on_chain, collect, merchant_balance, open_channels


async def _collections(database_url: str) -> list[asyncpg.Record]:
    return await fetch(database_url, "SELECT * FROM channel_collections ORDER BY created_at")


async def test_a_claim_whose_answers_are_lost_after_it_acted_is_decided_by_the_chain(
    sidecar, chain, facilitator, database_url
):
    channels = await open_channels(sidecar, 2)
    before = merchant_balance(chain)
    # The facilitator claims, then drops the connection: the first attempt and its retry.
    facilitator.arm(stage="settle", mode="drop", after_transfer=True, times=2)

    report = await collect(sidecar)

    (claim,) = report.claims
    assert (claim.state, claim.decided_by) == ("done", "chain")
    assert sorted(claim.channel_ids) == sorted(c.channel_id for c in channels)
    for channel in channels:
        assert claimed_on_chain(chain, channel) == 3 * PRICE  # once: the retry was a no-op
    assert [settle.state for settle in report.settles] == ["done"]
    assert merchant_balance(chain) - before == 6 * PRICE
    # Nothing is due any more: the next run claims nothing and sweeps nothing.
    again = await collect(sidecar)
    assert (list(again.claims), list(again.settles)) == ([], [])
    assert [row["state"] for row in await _collections(database_url)] == ["done", "done"]


async def test_a_claim_the_facilitator_answers_ambiguously_without_acting_is_claimed_again(
    sidecar, chain, facilitator
):
    channels = await open_channels(sidecar, 2)
    facilitator.arm(stage="settle", mode="status", status=502, times=2)  # nothing done on chain

    first = await collect(sidecar)

    (claim,) = first.claims
    assert (claim.state, claim.decided_by, claim.reason) == ("lapsed", "chain", "claim_not_on_chain")
    assert all(claimed_on_chain(chain, channel) == 0 for channel in channels)
    second = await collect(sidecar)
    assert [claim.state for claim in second.claims] == ["done"]
    assert all(claimed_on_chain(chain, channel) == 3 * PRICE for channel in channels)


@pytest.mark.parametrize("acted", [True, False], ids=["claimed_before_the_kill", "killed_before_the_claim"])
async def test_a_replica_killed_mid_claim_leaves_an_intent_the_next_run_decides_from_the_chain(
    spawn_sidecar, make_sidecar, chain, facilitator, database_url, acted
):
    doomed = await spawn_sidecar()
    channels = await open_channels(doomed, 2)
    before = merchant_balance(chain)
    # The claim request hangs at the facilitator (having claimed on chain, or not) ...
    facilitator.arm(stage="settle", mode="hang", after_transfer=acted)
    settles = facilitator.stats.settle_calls  # the deposits'
    running = asyncio.create_task(collect(doomed))
    await eventually(lambda: _collections(database_url), "the claim intent")  # the intent is written before the claim is sent
    if acted:
        await eventually(lambda: all(claimed_on_chain(chain, c) == 3 * PRICE for c in channels), "the claim on chain")
    else:
        await eventually(lambda: facilitator.stats.settle_calls > settles, "the claim at the facilitator")
    # ... and the replica dies: no answer, no outcome written, its lock gone with its connection.
    await doomed.kill()
    with contextlib.suppress(grpc.aio.AioRpcError):
        await running
    (intent,) = await _collections(database_url)
    assert intent["state"] == "pending"
    facilitator.faults.clear()

    survivor = await make_sidecar()
    report = await collect(survivor)

    (resolved,) = report.resolved
    assert resolved.id == str(intent["id"])
    if acted:
        assert (resolved.state, resolved.decided_by) == ("done", "chain")
        assert list(report.claims) == []  # nothing claimed again
    else:
        assert (resolved.state, resolved.decided_by) == ("lapsed", "chain")
        assert [claim.state for claim in report.claims] == ["done"]  # claimed in the same run
    for channel in channels:
        assert claimed_on_chain(chain, channel) == 3 * PRICE
    assert [settle.state for settle in report.settles] == ["done"]
    assert merchant_balance(chain) - before == 6 * PRICE
    assert all(row["state"] in ("done", "lapsed") for row in await _collections(database_url))
