"""What the payment flows (authorize, settle, release, redeem) work with: the
ports, the reconcile policy, the claims in flight and batch-settlement's
channels, built once per process."""

from __future__ import annotations

from dataclasses import dataclass

from .channels.room import ChannelRoom
from .claims import InFlightClaims
from .ports import ChainReader, FacilitatorPool, LedgerStore, Telemetry, Tracker
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
    # batch-settlement's channels; None: routes offer exact only.
    channels: ChannelRoom | None = None
