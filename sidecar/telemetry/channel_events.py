"""A batch-settlement channel's state changes as events of the request that made
them (DESIGN §8, §12): `channel reserve`, `channel open`, `channel refresh`,
`channel commit`, `channel uncharge`, `channel unreserve`, each on the span
current at the time (the gRPC server span of the call), with how long it took
and `x402.channel.changed: false` when nothing changed (another request holds
the channel, the hold ran out, the channel moved on).

Like the ledger's (ledger_events.py): a database round trip inside the process
is an event, not a span.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable
from typing import Any, TypeVar

from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE

from ..payments.channels.state import Channel, Mirror, Reservation
from ..payments.ports import ChannelStore
from .payments import timed_event

CHANNEL_CHANGED = "x402.channel.changed"

Result = TypeVar("Result")


class TracedChannels:
    """A ChannelStore that records the changes made through the store it wraps."""

    def __init__(self, inner: ChannelStore) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        # Reads (get, page) and methods added later are the store's own.
        return getattr(self._inner, name)

    async def reserve(self, channel_id: str, reservation: Reservation, hold_s: float) -> Channel | None:
        return await _recorded("channel reserve", self._inner.reserve(channel_id, reservation, hold_s))

    async def open(self, channel: Channel, reservation: Reservation, hold_s: float) -> Channel | None:
        return await _recorded("channel open", self._inner.open(channel, reservation, hold_s))

    async def refresh(self, channel_id: str, token: uuid.UUID, mirror: Mirror) -> Channel | None:
        return await _recorded("channel refresh", self._inner.refresh(channel_id, token, mirror))

    async def commit(
        self,
        channel_id: str,
        token: uuid.UUID,
        charged: int,
        charge: int,
        voucher: tuple[int, str] | None,
        mirror: Mirror | None,
    ) -> Channel | None:
        return await _recorded(
            "channel commit", self._inner.commit(channel_id, token, charged, charge, voucher, mirror)
        )

    async def uncharge(self, channel_id: str, charged: int, charge: int, max_claimable: int) -> bool:
        return await _recorded("channel uncharge", self._inner.uncharge(channel_id, charged, charge, max_claimable))

    async def unreserve(self, channel_id: str, token: uuid.UUID) -> bool:
        return await _recorded("channel unreserve", self._inner.unreserve(channel_id, token))


async def _recorded(name: str, change: Awaitable[Result]) -> Result:
    """Await the change; then its event on the current span."""
    started = time.perf_counter()
    try:
        result = await change
    except Exception as exc:
        timed_event(name, started, {CHANNEL_CHANGED: False, ERROR_TYPE: type(exc).__name__})
        raise
    timed_event(name, started, {} if result else {CHANNEL_CHANGED: False})
    return result
