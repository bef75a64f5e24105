"""A payer's timed withdrawal (initiateWithdraw, then finalizeWithdraw after the
channel's withdrawDelay) takes back whatever is not claimed by then. So while one
is pending, a voucher is worth something only if the collector can still claim it
in time: it is accepted until `margin_s` before the withdrawal can complete, and
refused after. The chain's clock decides (block time), as the contract does."""

from __future__ import annotations

import time
from collections.abc import Callable

from ...constants import Reason
from ..errors import PaymentError
from .state import Channel


def claim_deadline(channel: Channel) -> int | None:
    """Chain time (unix s) after which the payer may complete the pending
    withdrawal; None when none is pending."""
    started = channel.mirror.withdraw_requested_at
    return started + channel.config.withdraw_delay if started else None


def check_claimable_in_time(channel: Channel, chain_now: float, margin_s: float) -> None:
    deadline = claim_deadline(channel)
    if deadline is not None and chain_now + margin_s >= deadline:
        raise PaymentError(
            Reason.CHANNEL_WITHDRAWING,
            "the payer is withdrawing this channel's funds; it takes no more vouchers: open a new channel",
        )


class ChainClock:
    """The chain's time as this process last learned it, per network: block time
    minus wall time when read (the devnet's clock can run ahead). Until a network's
    chain was read, wall time stands in."""

    def __init__(self, wall: Callable[[], float] = time.time) -> None:
        self._wall = wall
        self._offsets: dict[str, float] = {}

    def learn(self, network: str, block_time: int) -> None:
        self._offsets[network] = block_time - self._wall()

    def now(self, network: str) -> float:
        return self._wall() + self._offsets.get(network, 0.0)
