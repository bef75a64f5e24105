"""ChannelService servicer: the batch-settlement channels, and the collector on demand."""

from __future__ import annotations

import grpc

from paysidecar.v1 import channels_pb2, channels_pb2_grpc

from ..payments.collection.collector import MANUAL
from ..payments.collection.loop import CollectorLoop
from ..payments.ports import ChannelStore
from . import convert
from .errors import mapped


class ChannelServicer(channels_pb2_grpc.ChannelServiceServicer):
    def __init__(self, store: ChannelStore, collector: CollectorLoop | None = None) -> None:
        self._store = store
        self._collector = collector

    @mapped
    async def ListChannels(
        self, request: channels_pb2.ListChannelsRequest, context: grpc.aio.ServicerContext
    ) -> channels_pb2.ListChannelsResponse:
        after, limit, payer = convert.channels_page(request)
        # One more than asked: whether another page follows.
        found = await self._store.page(after, limit + 1, payer)
        page = found[:limit]
        has_more = len(found) > limit
        return channels_pb2.ListChannelsResponse(
            channels=[convert.channel_message(channel) for channel in page],
            has_more=has_more,
            next_cursor=page[-1].channel_id if has_more else "",
        )

    @mapped
    async def Collect(
        self, request: channels_pb2.CollectRequest, context: grpc.aio.ServicerContext
    ) -> channels_pb2.CollectResponse:
        wait_s = convert.collect_wait_s(request)
        if self._collector is None:
            return channels_pb2.CollectResponse(ran=False, message="this sidecar has no collector")
        return convert.collect_response(await self._collector.run_once(MANUAL, wait_s))
