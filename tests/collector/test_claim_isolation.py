"""A channel whose claim would revert is left out with its reason, and the other
channels are claimed in the same run (issue 18, item 2). The contract reverts a
whole batch for one bad row: the SDK's server claims every channel in one batch,
so one withdrawn payer stops everyone's revenue."""

from __future__ import annotations

import asyncpg
import pytest
from x402.mechanisms.evm.batch_settlement.client import sign_voucher
from x402.mechanisms.evm.signers import EthAccountSigner

from devnet.chain import NETWORK
from devnet.wallets import payer_account

from .support import PRICE, claimed_on_chain, collect, merchant_balance, open_channels, withdraw


@pytest.mark.parametrize("watched", [False, True], ids=["mirror_stale", "withdrawal_seen_by_the_watch"])
async def test_a_withdrawn_channel_is_left_out_and_the_others_are_claimed_in_the_same_run(
    sidecar, chain, facilitator, database_url, watched
):
    channels = await open_channels(sidecar, 3)
    healthy = [channels[0], channels[2]]
    gone = channels[1]
    await withdraw(facilitator.url, chain, gone, finalize=True)  # its payer took everything back
    if watched:
        assert await sidecar.sidecar.watch.round() >= 3
    before = merchant_balance(chain)

    report = await collect(sidecar)

    assert report.ran
    assert [(left.channel_id, left.reason, left.unclaimed) for left in report.left_out] == [
        (gone.channel_id, "claim_exceeds_balance", str(3 * PRICE))
    ]
    done = [claim for claim in report.claims if claim.state == "done"]
    assert sorted(cid for claim in done for cid in claim.channel_ids) == sorted(c.channel_id for c in healthy)
    for channel in healthy:
        assert claimed_on_chain(chain, channel) == 3 * PRICE
    assert claimed_on_chain(chain, gone) == 0
    if watched:
        # Our copy knew: the bad channel never went into a batch.
        assert all(claim.state == "done" for claim in report.claims)
    else:
        # Our copy did not: the batch of three was refused, then split until it stood alone.
        assert report.claims[0].state == "failed" and len(report.claims[0].channel_ids) == 3
    (settle,) = report.settles
    assert settle.state == "done" and settle.amount == str(6 * PRICE)
    assert merchant_balance(chain) - before == 6 * PRICE
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow(
            "SELECT claim_excluded_reason, claim_excluded_at FROM payment_channels WHERE channel_id = $1", gone.channel_id
        )
    finally:
        await conn.close()
    assert row["claim_excluded_reason"] == "claim_exceeds_balance" and row["claim_excluded_at"] is not None


async def test_a_left_out_channel_waits_for_the_retry_interval_then_is_tried_again(
    make_sidecar, chain, facilitator
):
    sidecar = await make_sidecar(collect_retry_s=0)
    (gone,) = await open_channels(sidecar, 1)
    await withdraw(facilitator.url, chain, gone, finalize=True)
    assert [left.channel_id for left in (await collect(sidecar)).left_out] == [gone.channel_id]
    # Retry interval 0: the next run tries it again (and leaves it out again).
    assert [left.channel_id for left in (await collect(sidecar)).left_out] == [gone.channel_id]


async def test_a_left_out_channel_is_not_tried_again_within_the_retry_interval(sidecar, chain, facilitator):
    (gone,) = await open_channels(sidecar, 1)
    await withdraw(facilitator.url, chain, gone, finalize=True)
    assert len((await collect(sidecar)).left_out) == 1
    again = await collect(sidecar)
    assert (list(again.left_out), list(again.claims)) == ([], [])


async def test_a_voucher_that_does_not_recover_to_its_payer_is_left_out_before_any_batch(
    sidecar, chain, database_url
):
    channels = await open_channels(sidecar, 3)
    forged = channels[0]
    # The stored voucher replaced by one another key signed for the same channel and amount.
    other = sign_voucher(EthAccountSigner(payer_account(7)), forged.channel_id, 3 * PRICE, NETWORK)
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "UPDATE payment_channels SET voucher_signature = $2 WHERE channel_id = $1", forged.channel_id, other.signature
        )
    finally:
        await conn.close()

    report = await collect(sidecar)

    assert [(left.channel_id, left.reason) for left in report.left_out] == [
        (forged.channel_id, "claim_voucher_signature")
    ]
    assert [claim.state for claim in report.claims] == ["done"]
    assert sorted(report.claims[0].channel_ids) == sorted(c.channel_id for c in channels[1:])
    assert claimed_on_chain(chain, forged) == 0
