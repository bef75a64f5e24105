"""What the channel flows work with, built once per process: the channel store,
the receiver authorizers, the timing policy, and the requests this process holds
between Authorize and Settle or Release."""

from __future__ import annotations

import asyncio
import collections
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from x402.schemas import PaymentRequirements

from ..ports import ChannelStore
from ..routes import PricedRoute
from .authorizer import ReceiverAuthorizers
from .state import Channel, Mirror
from ..errors import LedgerUnavailable
from .vouchers import ChannelPayment

log = logging.getLogger(__name__)

# A channel request's payment id: the voucher it brought, on its channel.
_PAYMENT_ID = re.compile(r"^channel:(0x[0-9a-f]{64}):([0-9]{1,39})$")


def payment_id(channel_id: str, max_claimable: int) -> str:
    return f"channel:{channel_id}:{max_claimable}"


def parse_payment_id(value: str) -> tuple[str, int] | None:
    """(channel id, max claimable) of a channel request's payment id; None for any other."""
    match = _PAYMENT_ID.match(value)
    return (match.group(1), int(match.group(2))) if match else None


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


def _wall_clock(network: str) -> float:
    return time.time()


def _nobody(channel: Channel, charge: int) -> None:
    return None


@dataclass(frozen=True)
class ChannelPolicy:
    busy_wait_s: float  # how long a request waits for its channel before channel_busy
    hold_s: float  # how long a request holds its channel at most
    mirror_ttl_s: float  # how old our copy of the contract's fields may be for a local check
    retries: int = 1  # of an ambiguous deposit or refund settle, on the same facilitator
    # While a withdrawal is pending, vouchers are taken until this long before it can
    # complete (withdrawals.py): the time the collector has to claim them.
    claim_margin_s: float = 300.0
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    clock: Callable[[], float] = time.monotonic
    now: Callable[[], datetime] = _utc_now
    chain_now: Callable[[str], float] = _wall_clock  # the chain's time on a network (unix s)

    def trusts_mirror(self, channel: Channel) -> bool:
        """Our copy of the contract's fields is recent enough to verify a voucher
        here: read within the TTL, on a channel in use within the TTL (the ones the
        collector's watch keeps reading; collection/watch.py)."""
        limit = timedelta(seconds=self.mirror_ttl_s)
        now = self.now()
        if channel.synced_at is None or now - channel.synced_at > limit:
            return False
        return channel.last_request_at is None or now - channel.last_request_at <= limit


@dataclass
class ChannelFlight:
    """One channel request between Authorize and Settle or Release."""

    payment_id: str
    token: uuid.UUID
    kind: str
    channel_id: str
    network: str
    payer: str
    charged: int  # what the channel was charged when the request was verified
    amount: int  # the most the request may be charged
    max_claimable: int
    signature: str
    tracking_id: uuid.UUID | None
    route_key: str = ""
    request_id: str = ""
    url: str = ""
    record: dict[str, Any] = field(default_factory=dict)  # the tracking `payment` Authorize wrote
    # The route and its batch-settlement offer, for the answer of a failed settle.
    route: PricedRoute | None = None
    offer: PaymentRequirements | None = None
    # A deposit's settle: its payment, and the facilitator that verified it.
    payment: ChannelPayment | None = None
    facilitator: str = ""
    # A deposit settled on chain whose charge is not committed yet (the database was
    # out): a retried Settle commits it without settling the deposit again.
    deposited: tuple[str, Mirror | None] | None = None
    settle_attempts: list[dict[str, Any]] = field(default_factory=list)


class ChannelFlights:
    """By claim token: two requests may bring the same voucher (a retry after the
    first one's hold ran out); each has its own token."""

    def __init__(self) -> None:
        self._by_token: dict[str, ChannelFlight] = {}

    def __len__(self) -> int:
        return len(self._by_token)

    def hold(self, flight: ChannelFlight) -> None:
        self._by_token[str(flight.token)] = flight

    def get(self, claim_token: str) -> ChannelFlight | None:
        return self._by_token.get(claim_token)

    def take(self, claim_token: str) -> ChannelFlight | None:
        return self._by_token.pop(claim_token, None)

    def tokens(self) -> list[str]:
        return list(self._by_token)


@dataclass(frozen=True)
class Delivery:
    """A charge committed for an answer on its way to the client."""

    flight: ChannelFlight
    charge: int
    charged: int  # the channel's total after the charge


class Deliveries:
    """The last charges committed here, by claim token: a Release reporting that the
    answer never reached the client takes the charge back. Bounded: the caller
    reports a failed delivery right after Settle."""

    LIMIT = 4096

    def __init__(self) -> None:
        self._by_token: collections.OrderedDict[str, Delivery] = collections.OrderedDict()

    def add(self, delivery: Delivery) -> None:
        self._by_token[str(delivery.flight.token)] = delivery
        while len(self._by_token) > self.LIMIT:
            self._by_token.popitem(last=False)

    def take(self, claim_token: str) -> Delivery | None:
        return self._by_token.pop(claim_token, None)


@dataclass(frozen=True)
class ChannelRoom:
    store: ChannelStore
    authorizers: ReceiverAuthorizers
    policy: ChannelPolicy
    flights: ChannelFlights = field(default_factory=ChannelFlights)
    deliveries: Deliveries = field(default_factory=Deliveries)
    # Told of every charge committed here (the collector's thresholds), with the
    # channel as the commit left it; must not block.
    on_charge: Callable[[Channel, int], None] = _nobody

    async def free(self, channel_id: str, token: uuid.UUID) -> None:
        """End a request's hold, changing nothing else; with the database gone, the
        hold runs out by itself."""
        try:
            await self.store.unreserve(channel_id, token)
        except LedgerUnavailable:
            log.warning("channel %s: hold not released (database unavailable); it expires", channel_id)
