"""A channel as the server keeps it (the binding's per-channel state) and the
reservation a request holds on it between Authorize and Settle or Release."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime

from x402.mechanisms.evm.batch_settlement.types import ChannelConfig, ChannelStateExtra

DEPOSIT = "deposit"
VOUCHER = "voucher"
REFUND = "refund"
KINDS = (DEPOSIT, VOUCHER, REFUND)


@dataclass(frozen=True)
class Mirror:
    """The contract's fields of one channel, as a facilitator or the chain last told."""

    balance: int
    total_claimed: int
    withdraw_requested_at: int = 0
    refund_nonce: int = 0

    @classmethod
    def of(cls, extra: dict | None) -> Mirror | None:
        """From a facilitator's `extra` (verify) or `extra.channelState` (settle);
        None when it does not carry the balance and totalClaimed as whole numbers."""
        if not isinstance(extra, dict):
            return None
        try:
            return cls(
                balance=_whole(extra["balance"]),
                total_claimed=_whole(extra["totalClaimed"]),
                withdraw_requested_at=_whole(extra.get("withdrawRequestedAt", 0)),
                refund_nonce=_whole(extra.get("refundNonce", 0)),
            )
        except (KeyError, TypeError, ValueError):
            return None


def _whole(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TypeError("not a whole number")
    number = int(value)
    if number < 0:
        raise ValueError("negative")
    return number


@dataclass(frozen=True)
class Reservation:
    """What one request holds a channel with: its claim token and its voucher."""

    token: uuid.UUID
    kind: str
    amount: int  # the most this request may be charged (the route's price; 0 for a refund)
    max_claimable: int
    signature: str
    tracking_id: uuid.UUID | None = None  # the request's tracking record


@dataclass(frozen=True)
class Channel:
    channel_id: str  # 0x + 64 lowercase hex
    network: str
    config: ChannelConfig
    charged: int  # chargedCumulativeAmount: what we actually charged
    signed_max_claimable: int  # the best voucher we hold...
    voucher_signature: str | None  # ...and its signature (None: none yet)
    mirror: Mirror
    synced_at: datetime | None = None
    last_request_at: datetime | None = None
    reservation: Reservation | None = None
    reserved_until: datetime | None = None

    def with_mirror(self, mirror: Mirror, at: datetime) -> Channel:
        return replace(self, mirror=mirror, synced_at=at)

    def channel_state(self) -> ChannelStateExtra:
        """The binding's channelState snapshot, with our chargedCumulativeAmount."""
        return ChannelStateExtra(
            channel_id=self.channel_id,
            balance=str(self.mirror.balance),
            total_claimed=str(self.mirror.total_claimed),
            withdraw_requested_at=self.mirror.withdraw_requested_at,
            refund_nonce=str(self.mirror.refund_nonce),
            charged_cumulative_amount=str(self.charged),
        )
