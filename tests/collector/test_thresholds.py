"""What is charged and not yet claimed is money a payer could take back: a
threshold per channel and one on the total set a claim off, so what is at risk
stays bounded by configuration (issue 18, item 1)."""

from __future__ import annotations

from tests.reliability.observe import eventually

from .support import PRICE, claimed_on_chain, open_channels, status

QUIET = {"collector_enabled": True, "collect_interval_s": 3600}


async def test_a_channel_reaching_its_threshold_is_claimed_at_once(make_sidecar, chain):
    sidecar = await make_sidecar(**QUIET, collect_channel_threshold=3 * PRICE, collect_total_threshold=0)
    (small,) = await open_channels(sidecar, 1, requests=2, first_payer=1)  # below the threshold
    (big,) = await open_channels(sidecar, 1, requests=3)  # its third charge reaches it

    await eventually(lambda: claimed_on_chain(chain, big) == 3 * PRICE, "the claim of the channel at its threshold")
    answer = await eventually(lambda: _after_run(sidecar), "the run in GetStatus")
    collector = answer.collector
    assert collector.last_trigger == "channel_threshold"
    # The run claims every channel due, the small one too: nothing is left at risk.
    assert claimed_on_chain(chain, small) == 2 * PRICE
    assert (answer.money_at_risk, collector.money_at_risk, collector.channels_at_risk) == ("0", "0", 0)


async def test_unclaimed_charges_reaching_the_total_threshold_are_claimed_at_once(make_sidecar, chain):
    sidecar = await make_sidecar(**QUIET, collect_channel_threshold=0, collect_total_threshold=5 * PRICE)
    first = await open_channels(sidecar, 1, requests=3)
    at_risk = await status(sidecar)
    assert (at_risk.money_at_risk, at_risk.collector.runs) == (str(3 * PRICE), 0)  # under the total: no run
    assert [(c.channel_id, c.unclaimed) for c in at_risk.collector.top_at_risk] == [(first[0].channel_id, str(3 * PRICE))]
    second = await open_channels(sidecar, 1, requests=2, first_payer=1)  # 5 * PRICE in all

    await eventually(lambda: claimed_on_chain(chain, second[0]) == 2 * PRICE, "the claim at the total threshold")
    assert claimed_on_chain(chain, first[0]) == 3 * PRICE
    answer = await eventually(lambda: _after_run(sidecar), "the run in GetStatus")
    assert answer.collector.last_trigger == "total_threshold"
    assert answer.money_at_risk == "0"


async def _after_run(sidecar):
    answer = await status(sidecar)
    return answer if answer.collector.runs and not answer.collector.channels_at_risk else None
