"""Tracking of channel requests (issue 17, item 7): each has its record with its
scheme, channel, charge, cumulative amount and the deposit transaction when there
is one; never a signature. ChannelService lists the channels (charged, signed,
balance, claimed, withdrawal pending), never a signature either."""

from __future__ import annotations

import json
import uuid

import asyncpg
import grpc
import pytest

from paysidecar.v1 import channels_pb2, channels_pb2_grpc
from tests.channels.support import PRICE, ChannelClient
from tests.devnet.channels import ChannelPayer, channel_id


async def _record(sidecar, database_url: str, tracking_id: str) -> dict:
    await sidecar.sidecar.writer.flush()
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchval(
            "SELECT row_to_json(r)::text FROM resource_call_records r WHERE id = $1", uuid.UUID(tracking_id)
        )
    finally:
        await conn.close()
    return json.loads(row)


async def test_each_channel_request_has_its_record_without_signatures(sidecar, database_url):
    client = ChannelClient(sidecar)
    deposit = await client.pay()
    voucher = await client.pay(charge="400")
    deposit_record = await _record(sidecar, database_url, deposit.authorized.tracking_id)
    voucher_record = await _record(sidecar, database_url, voucher.authorized.tracking_id)

    channel = channel_id(deposit.payload)
    assert deposit_record["payment_verified"] is True
    assert deposit_record["payment"]["scheme"] == "batch-settlement"
    assert deposit_record["payment"]["channel_id"] == channel
    assert deposit_record["payment"]["kind"] == "deposit"
    assert deposit_record["settlement"]["transaction"] == deposit.settled.transaction
    assert deposit_record["settlement"]["charged"] == str(PRICE)

    assert voucher_record["payment"]["kind"] == "voucher"
    assert voucher_record["payment"]["amount"] == "400"  # what it earned
    assert voucher_record["payment"]["max_claimable"] == str(2 * PRICE)
    settlement = voucher_record["settlement"]
    assert (settlement["success"], settlement["charged"], settlement["cumulative"]) == (True, "400", str(PRICE + 400))
    assert settlement["transaction"] is None
    assert voucher_record["response_status"] == 200 and voucher_record["handler_executed"] is True

    for record, paid in ((deposit_record, deposit), (voucher_record, voucher)):
        text = json.dumps(record)
        signature = paid.payload.payload["voucher"]["signature"]
        assert signature not in text and signature[2:] not in text


async def test_list_channels_shows_charged_signed_balance_and_claimed(sidecar):
    first, second = ChannelClient(sidecar), ChannelClient(sidecar, ChannelPayer(1))
    for _ in range(2):
        await first.pay()
    opened = await second.pay()
    stub = channels_pb2_grpc.ChannelServiceStub(sidecar.channel)

    everything = await stub.ListChannels(channels_pb2.ListChannelsRequest())
    assert len(everything.channels) == 2 and not everything.has_more
    mine = await stub.ListChannels(channels_pb2.ListChannelsRequest(payer=second.payer.address.lower()))
    (channel,) = mine.channels
    assert channel.channel_id == channel_id(opened.payload)
    assert (channel.charged, channel.signed, channel.balance, channel.claimed) == ("1000", "1000", "10000", "0")
    assert channel.withdraw_requested_at == 0 and not channel.busy
    assert channel.payer == second.payer.address
    assert "signature" not in str(channel).lower()

    page = await stub.ListChannels(channels_pb2.ListChannelsRequest(limit=1))
    rest = await stub.ListChannels(channels_pb2.ListChannelsRequest(limit=1, cursor=page.next_cursor))
    assert page.has_more and not rest.has_more
    assert {page.channels[0].channel_id, rest.channels[0].channel_id} == {c.channel_id for c in everything.channels}


@pytest.mark.parametrize("request_fields", [{"limit": 101}, {"cursor": "not-ours"}])
async def test_a_bad_channel_listing_is_invalid_argument(sidecar, request_fields):
    stub = channels_pb2_grpc.ChannelServiceStub(sidecar.channel)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.ListChannels(channels_pb2.ListChannelsRequest(**request_fields))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
