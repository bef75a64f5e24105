"""What the payment flows (authorize, settle, release, redeem, replay) work
with: the ports, the reconcile and idempotency policies, the claims in flight
and batch-settlement's channels, built once per process."""

from __future__ import annotations

from dataclasses import dataclass

from .channels.room import ChannelRoom
from .claims import InFlightClaims
from .idempotency import IdempotencyPolicy
from .ports import ChainReader, FacilitatorPool, IdentifierStore, LedgerStore, Telemetry, Tracker
from .settlement import ReconcilePolicy


@dataclass(frozen=True)
class PaymentContext:
    facilitators: FacilitatorPool
    ledger: LedgerStore
    chain: ChainReader
    tracker: Tracker
    telemetry: Telemetry
    policy: ReconcilePolicy
    claims: InFlightClaims
    identifiers: IdentifierStore
    idempotency: IdempotencyPolicy
    # batch-settlement's channels; None: routes offer exact only.
    channels: ChannelRoom | None = None
