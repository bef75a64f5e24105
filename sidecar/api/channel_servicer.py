"""ChannelService servicer: the batch-settlement channels, read only."""

from __future__ import annotations

import grpc

from paysidecar.v1 import channels_pb2, channels_pb2_grpc

from ..payments.ports import ChannelStore
from . import convert
from .errors import mapped


class ChannelServicer(channels_pb2_grpc.ChannelServiceServicer):
    def __init__(self, store: ChannelStore) -> None:
        self._store = store

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
