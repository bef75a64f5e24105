"""The seams the payment domain talks through. Implementations live in
sidecar/facilitators (HTTP), sidecar/chain (JSON-RPC) and sidecar/store (SQL)."""

from __future__ import annotations

import enum
import uuid
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from .channels.state import Channel, Mirror, Reservation
from .idempotency import Binding, IdentifiedRequest
from .collection.records import AtRisk, Collection
from .ledger import LedgerEntry
from .record_queries import RecordPage, RecordQuery, Stats


class Outcome(enum.Enum):
    OK = "ok"                      # well-formed JSON answer of the expected shape
    UNREACHABLE = "unreachable"    # nothing was sent (connect failed, breaker open)
    TIMEOUT = "timeout"            # sent; no answer in time
    HTTP_ERROR = "http_error"      # answered with a non-2xx status
    INVALID_JSON = "invalid_json"  # 2xx but not JSON (HTML, garbage, truncated)
    INVALID_RESPONSE = "invalid_response"  # JSON of the wrong shape


@dataclass(frozen=True)
class Attempt:
    facilitator: str
    stage: str
    outcome: Outcome
    latency_ms: float
    reason: str          # "" when OK, else <facilitator>_<what>
    status: int = 0

    def as_record(self) -> dict[str, Any]:
        return {
            "facilitator": self.facilitator,
            "stage": self.stage,
            "outcome": self.outcome.value,
            "latency_ms": round(self.latency_ms, 2),
            "reason": self.reason,
            "status": self.status,
        }


@dataclass(frozen=True)
class FacilitatorAnswer:
    attempt: Attempt
    data: dict[str, Any] | None  # the parsed JSON when attempt.outcome is OK

    @property
    def ok(self) -> bool:
        return self.attempt.outcome is Outcome.OK

    @property
    def may_have_acted(self) -> bool:
        """True when the request may have reached the facilitator and done work."""
        return self.attempt.outcome is not Outcome.UNREACHABLE


class Facilitator(Protocol):
    name: str
    url: str

    async def verify(self, body: dict[str, Any]) -> FacilitatorAnswer: ...

    async def settle(self, body: dict[str, Any]) -> FacilitatorAnswer: ...

    async def supported(self) -> FacilitatorAnswer:
        """GET /supported: the kinds it settles (data: {"kinds": [...], ...})."""


class FacilitatorPool(Protocol):
    def candidates(self, explicit: tuple[str, ...]) -> list[Facilitator]:
        """Facilitators to try, best first (explicit list, else the configured one)."""

    def in_order(self, explicit: tuple[str, ...]) -> list[Facilitator]:
        """The same facilitators in the order they are configured, whatever their health."""

    def get(self, url: str) -> Facilitator: ...


@dataclass(frozen=True)
class ChainLog:
    """One event log as a node reports it; topics and data as 0x-prefixed hex."""

    address: str
    topics: tuple[str, ...]
    data: str
    transaction: str


class ChainReader(Protocol):
    def configured(self, network: str) -> bool: ...

    async def authorization_used(self, network: str, asset: str, payer: str, nonce: str) -> bool | None:
        """True/False from the token contract; None when the chain could not be read."""

    async def nonce_events(self, network: str, asset: str, payer: str, nonce: str) -> tuple[ChainLog, ...] | None:
        """The token's AuthorizationUsed and AuthorizationCanceled logs for (payer, nonce)
        in recent blocks, oldest first; None when the chain could not be read."""

    async def receipt_logs(self, network: str, transaction: str) -> tuple[ChainLog, ...] | None:
        """The logs of a mined transaction, in order (none when it reverted); None when
        it is not mined or the chain could not be read."""

    async def channel(self, network: str, channel_id: str) -> Mirror | None:
        """The batch-settlement contract's fields of one channel (`channels`,
        `pendingWithdrawals`, `refundNonce`); None when the chain could not be read."""

    async def receiver_totals(self, network: str, receiver: str, token: str) -> tuple[int, int] | None:
        """The contract's (totalClaimed, totalSettled) for a receiver and token
        (`receivers`); None when the chain could not be read."""

    async def channel_events(self, network: str, after_block: int | None) -> tuple[int, frozenset[str]] | None:
        """The latest block, and the channels (ids, lowercase) whose fields changed in
        the blocks after `after_block` up to it (None: none asked, just the block);
        None when the chain could not be read."""

    async def chain_time(self, network: str) -> int | None:
        """The latest block's timestamp (unix s); None when the chain could not be read."""


class LedgerStore(Protocol):
    async def get(self, payment_id: str) -> LedgerEntry | None: ...

    async def claim(self, entry: LedgerEntry) -> LedgerEntry | None:
        """Insert as `verified` (or re-claim a released/failed row); None if held."""

    async def transition(
        self, payment_id: str, claim_token: uuid.UUID, from_states: tuple[str, ...], to_state: str, **fields: Any
    ) -> LedgerEntry | None:
        """Move the row if it is in one of from_states under this claim; None otherwise."""

    async def claim_redeem(self, payment_id: str, payload_hash: str, claim_token: uuid.UUID) -> LedgerEntry | None:
        """settled_unserved -> redeeming for the same payload; None if not redeemable."""

    async def stale(self, states: tuple[str, ...], older_than_s: float, limit: int) -> list[LedgerEntry]: ...


class ChannelStore(Protocol):
    """The server's state of each batch-settlement channel (sidecar/store/channels.py).
    Only the holder of a channel's reservation changes its charge."""

    async def get(self, channel_id: str) -> Channel | None: ...

    async def reserve(self, channel_id: str, reservation: Reservation, hold_s: float) -> Channel | None:
        """Hold the channel for `hold_s` when nobody holds it (or its holder's time ran
        out); None when another request holds it, or there is no such channel."""

    async def open(self, channel: Channel, reservation: Reservation, hold_s: float) -> Channel | None:
        """Insert a channel first seen now, held by this request; None when it exists."""

    async def refresh(self, channel_id: str, token: uuid.UUID, mirror: Mirror) -> Channel | None:
        """The holder records what it learned of the contract's fields."""

    async def commit(
        self,
        channel_id: str,
        token: uuid.UUID,
        charged: int,
        charge: int,
        voucher: tuple[int, str] | None,
        mirror: Mirror | None,
    ) -> Channel | None:
        """charged += charge and the voucher (max claimable, signature) held, for the
        holder whose request was verified against `charged`; the reservation ends.
        None when the request no longer holds the channel: nothing changed."""

    async def uncharge(self, channel_id: str, charged: int, charge: int, max_claimable: int) -> bool:
        """Take back a committed charge whose answer was not delivered, while the
        channel is as that commit left it (`charged` after it, its voucher, no hold)."""

    async def unreserve(self, channel_id: str, token: uuid.UUID) -> bool:
        """End the holder's reservation, changing nothing else."""

    async def page(self, after: str, limit: int, payer: str = "") -> list[Channel]:
        """Channels by id after `after`, at most `limit`, of one payer when given."""


class IdentifierStore(Protocol):
    """Payment-identifier ids bound to their payer, request and payment (idempotency.py)."""

    async def get(self, payer: str, identifier: str) -> Binding | None: ...

    async def claim(self, entry: LedgerEntry, request: IdentifiedRequest) -> LedgerEntry | None:
        """Claim the payment in the ledger (as LedgerStore.claim) and bind the
        request's id to it, both or neither: the id must be free, or bound to a
        payment that moved no money. None when either is held."""

    async def take_replay(
        self, binding: Binding, claim_token: uuid.UUID, tracking_id: uuid.UUID, timeout_s: float
    ) -> bool:
        """Hold the id for one replay of its payment, unless another replay holds
        it (one taken longer than `timeout_s` ago no longer does)."""

    async def replay_held(self, payment_id: str, claim_token: uuid.UUID) -> Binding | None:
        """The binding whose replay of `payment_id` this claim token holds."""

    async def end_replay(self, payment_id: str, claim_token: uuid.UUID) -> bool:
        """Give the id back after a replay; False when the token held none."""


class CollectionStore(Protocol):
    """What the collector keeps (sidecar/store/collections.py): its claims and
    settles, the channels due for a claim, and the lock that lets one collector
    run at a time across every replica on the database."""

    def lock(self, name: str) -> AbstractAsyncContextManager[bool]:
        """Hold the named collector lock for the block when nobody else holds it;
        yields False (and holds nothing) when another process does."""

    async def due(self, limit: int, retry_s: float) -> list[Channel]:
        """Channels whose charges are not all claimed, with a voucher to claim them,
        not left out within the last `retry_s`: pending withdrawals first."""

    async def watched(self, active_s: float, limit: int) -> list[Channel]:
        """Channels whose contract state matters now: charges not claimed, a
        withdrawal pending, or a request within the last `active_s`."""

    async def observe(self, channel_id: str, mirror: Mirror) -> Channel | None:
        """Record the contract's fields as just read from the chain."""

    async def touch(self, channel_ids: list[str]) -> None:
        """The chain was read and these channels' fields did not change: our copy is
        current as of now."""

    async def claimed(self, rows: list[tuple[str, int]]) -> None:
        """(channel id, total) claimed on chain: totalClaimed is at least that now."""

    async def exclude(self, channel_id: str, reason: str) -> None:
        """The channel was left out of a claim, for `reason`."""

    async def record(self, collection: Collection) -> None:
        """Write the intent, before its transaction is sent."""

    async def decide(self, collection: Collection) -> None:
        """Write the outcome (state, transaction, facilitator, reason, amount)."""

    async def open(self, limit: int) -> list[Collection]:
        """Intents whose outcome is not decided yet (pending or in doubt), oldest first."""

    async def unsettled_accounts(self) -> list[tuple[str, str, str]]:
        """(network, receiver, token) with claims on chain since their last settle."""

    async def at_risk(self, top: int) -> AtRisk:
        """Charged but not claimed: the total, and the `top` channels with the most."""


class CollectionTelemetry(Protocol):
    """What the collector's traces and events show (sidecar/telemetry/collection.py)."""

    def transaction(self, kind: str, network: str, channels: int) -> AbstractContextManager[None]:
        """One chain transaction the collector sends (a claim or a settle): a span."""

    def event(self, name: str, *, collection_id: str = "", **attributes: Any) -> None:
        """A collector event: kept among the recent events (GetTelemetry) and put on
        the current transaction's span."""


class Tracker(Protocol):
    def record(self, record_id: uuid.UUID, step: Any, fields: dict[str, Any]) -> None:
        """Queue one lifecycle step of a record; never blocks, never raises."""

    async def durable(self) -> None:
        """Return once every step recorded so far would outlive a crash."""

    def durable_soon(self) -> None:
        """Start making the steps recorded so far durable, without waiting."""


class TrackingRecords(Protocol):
    """The tracking records as operators read and prune them."""

    async def page(self, query: RecordQuery) -> RecordPage: ...

    async def get(self, record_id: uuid.UUID) -> dict[str, Any] | None: ...

    async def stats(self, start: datetime | None, end: datetime | None) -> Stats:
        """Figures for records with start <= timestamp < end (either bound optional)."""

    async def prune(self, older_than: datetime) -> int:
        """Delete the records older than `older_than`; how many went."""


class Telemetry(Protocol):
    """What the request's trace shows of the domain's work. A step inside the
    process is an event on the request's current span, never a span of its own."""

    def event(self, name: str, *, request_id: str, route: str, **attributes: Any) -> None:
        """A payment event (`payment_settled`, ...): kept among the recent events
        (GetTelemetry) and put on the request's span."""

    def step(self, name: str) -> AbstractContextManager[None]:
        """Times one step of the request's flow: an event with its duration (and
        the reason code when the step raised) on the request's span."""

    def note(self, name: str, **attributes: Any) -> None:
        """Something seen on the way that is not a payment event (a cache hit, ...):
        an event on the request's span only."""
