"""Operating the collector: `paysidecar-cli claim` and `status`, GetStatus's money
at risk, the telemetry of each claim and settle, and the devnet balances after a
claim and a settle, to the unit."""

from __future__ import annotations

import json

import grpc
import pytest

from devnet.wallets import INITIAL_PAYER_BALANCE
from gateway.cli import build_parser
from paysidecar.v1 import status_pb2
from tests.devnet.channels import DEPOSIT

from .support import PRICE, collect, merchant_balance, open_channels, status, withdraw


async def cli(*argv: str) -> int:
    args = build_parser().parse_args(list(argv))
    return await args.run(args)


async def test_claim_prints_what_was_claimed_settled_and_left_out_and_why(sidecar, chain, facilitator, capsys):
    channels = await open_channels(sidecar, 3)
    await withdraw(facilitator.url, chain, channels[1], finalize=True)

    assert await cli("claim", "--sidecar", sidecar.target) == 0
    out = capsys.readouterr().out
    assert "claim_exceeds_balance" in out and channels[1].channel_id in out
    assert f"claimed {6 * PRICE} on 2 channels, settled {6 * PRICE}, left out 1" in out

    assert await cli("claim", "--sidecar", sidecar.target, "--json") == 0
    again = json.loads(capsys.readouterr().out)
    assert again["ran"] is True and "claims" not in again  # nothing due: the bad one waits for its retry

    assert await cli("status", "--sidecar", sidecar.target) == 0
    out = capsys.readouterr().out
    assert "money at risk" in out and f"{3 * PRICE} on 1 channels" in out  # the withdrawn one's charges


async def test_status_shows_money_at_risk_and_the_last_run(sidecar, chain, facilitator):
    channels = await open_channels(sidecar, 2, requests=2)
    before = await status(sidecar)
    assert before.money_at_risk == str(4 * PRICE)
    assert (before.collector.channels_at_risk, before.collector.runs, before.collector.enabled) == (2, 0, False)

    facilitator.arm(stage="settle", mode="status", status=503, times=2)  # the claim is answered ambiguously
    await collect(sidecar)
    after_doubt = await status(sidecar)
    assert after_doubt.collector.last_failure == "claim_not_on_chain"
    assert (after_doubt.collector.failures, after_doubt.collector.failures_24h) == (1, 1)
    assert after_doubt.money_at_risk == str(4 * PRICE)

    await collect(sidecar)
    after = await status(sidecar)
    collector = after.collector
    assert after.money_at_risk == "0" and collector.last_trigger == "manual"
    assert (collector.last_claimed_channels, collector.last_claimed_amount) == (2, str(4 * PRICE))
    assert collector.last_settled_amount == str(4 * PRICE) and collector.HasField("last_claim_at")
    assert all(chain.channel(c.channel_id).total_claimed == 2 * PRICE for c in channels)


async def test_each_claim_and_settle_is_a_telemetry_event(sidecar):
    await open_channels(sidecar, 1)
    report = await collect(sidecar)
    events = {event.name: event for event in (await sidecar.status.GetTelemetry(status_pb2.GetTelemetryRequest(limit=100))).events}
    claimed, settled = events["channel_claim_done"], events["channel_settle_done"]
    assert claimed.request_id == report.claims[0].id and claimed.attributes["amount"] == str(3 * PRICE)
    assert claimed.attributes["transaction"] == report.claims[0].transaction != ""
    assert settled.attributes["amount"] == str(3 * PRICE)


async def test_charges_of_any_size_are_claimed_and_settled_to_the_unit(sidecar, chain):
    (channel,) = await open_channels(sidecar, 1, requests=1)
    for charge in ("300", "1", "999", "0"):
        paid = await channel.client.pay(charge=charge)
        assert paid.settled.success
    charged = PRICE + 300 + 1 + 999
    merchant = merchant_balance(chain)

    report = await collect(sidecar)

    assert report.claimed_amount == report.settled_amount == str(charged)
    assert merchant_balance(chain) - merchant == charged
    state = chain.channel(channel.channel_id)
    assert (state.balance, state.total_claimed) == (DEPOSIT, charged)
    assert chain.balance_of(channel.payer) == INITIAL_PAYER_BALANCE - DEPOSIT
    # What the payer can still take back: the deposit less every charge, exactly.
    assert state.balance - state.total_claimed == DEPOSIT - charged


@pytest.mark.parametrize("wait_seconds", [-1, 61])
async def test_collect_with_a_wait_out_of_range_is_refused_and_runs_nothing(sidecar, wait_seconds):
    await open_channels(sidecar, 1)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await collect(sidecar, wait_seconds=wait_seconds)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.details().startswith("invalid_argument:")
    assert (await status(sidecar)).collector.runs == 0
