"""What the collector records: its claims and settles (one row per chain
transaction, written before the transaction is sent) and what is at risk."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime

CLAIM = "claim"
SETTLE = "settle"

# A collection's states (migrations/0008_channel_claims.sql).
PENDING = "pending"  # recorded; its transaction sent or about to be, no answer yet
DONE = "done"  # on chain
FAILED = "failed"  # refused: nothing happened on chain
LAPSED = "lapsed"  # after a doubt, not on chain: its channels are claimed again later
IN_DOUBT = "in_doubt"  # the chain could not be read yet: asked again by the next run

# Who decided a collection's outcome.
BY_FACILITATOR = "facilitator"
BY_CHAIN = "chain"


@dataclass(frozen=True)
class ClaimRow:
    """One channel in a claim: the total it raises totalClaimed to (what we
    charged), what the chain had before as we knew it, and the voucher's ceiling."""

    channel_id: str
    total: int
    before: int
    max_claimable: int

    @property
    def amount(self) -> int:
        return self.total - self.before

    def as_json(self) -> dict[str, str]:
        return {
            "channel_id": self.channel_id,
            "total_claimed": str(self.total),
            "claimed_before": str(self.before),
            "max_claimable": str(self.max_claimable),
        }

    @classmethod
    def of_json(cls, value: dict[str, str]) -> ClaimRow:
        return cls(
            value["channel_id"], int(value["total_claimed"]), int(value["claimed_before"]), int(value["max_claimable"])
        )


@dataclass(frozen=True)
class Collection:
    """One claim or settle transaction the collector sends, from intent to outcome."""

    id: uuid.UUID
    kind: str
    network: str
    receiver: str
    token: str
    rows: tuple[ClaimRow, ...] = ()
    amount: int = 0
    state: str = PENDING
    transaction: str = ""
    facilitator: str = ""
    reason: str = ""
    decided_by: str = ""
    created_at: datetime | None = None

    @classmethod
    def claim(cls, network: str, receiver: str, token: str, rows: tuple[ClaimRow, ...]) -> Collection:
        return cls(uuid.uuid4(), CLAIM, network, receiver, token, rows, sum(row.amount for row in rows))

    @classmethod
    def settle(cls, network: str, receiver: str, token: str, amount: int) -> Collection:
        return cls(uuid.uuid4(), SETTLE, network, receiver, token, (), amount)

    def decided(self, state: str, by: str, **fields) -> Collection:
        return replace(self, state=state, decided_by=by, **fields)


@dataclass(frozen=True)
class LeftOut:
    """A channel left out of a claim, and why (retried after the retry interval)."""

    channel_id: str
    payer: str
    unclaimed: int
    reason: str


@dataclass(frozen=True)
class ChannelAtRisk:
    channel_id: str
    payer: str
    unclaimed: int
    withdraw_requested_at: int


@dataclass(frozen=True)
class AtRisk:
    """Charged but not yet claimed on chain: money a payer could still withdraw."""

    total: int = 0
    channels: int = 0
    withdrawing: int = 0  # channels with charges unclaimed and a withdrawal pending
    top: tuple[ChannelAtRisk, ...] = ()
    # From the collections every replica recorded: the last claim on chain, the
    # transactions refused or lapsed in the last 24 h, the intents not decided yet.
    last_claim_at: datetime | None = None
    failures_24h: int = 0
    open_intents: int = 0


@dataclass
class CollectReport:
    """One collector run: what it claimed, settled and left out."""

    trigger: str
    ran: bool = True
    message: str = ""
    claims: list[Collection] = field(default_factory=list)
    settles: list[Collection] = field(default_factory=list)
    left_out: list[LeftOut] = field(default_factory=list)
    resolved: list[Collection] = field(default_factory=list)  # earlier intents decided in this run

    @property
    def claimed_channels(self) -> int:
        return sum(len(claim.rows) for claim in self.claims if claim.state == DONE)

    @property
    def claimed_amount(self) -> int:
        return sum(claim.amount for claim in self.claims if claim.state == DONE)

    @property
    def settled_amount(self) -> int:
        return sum(settle.amount for settle in self.settles if settle.state == DONE)

    @property
    def failures(self) -> int:
        return sum(1 for c in (*self.claims, *self.settles) if c.state in (FAILED, IN_DOUBT, LAPSED))
