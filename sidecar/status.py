"""How the sidecar is doing, as one snapshot: what StatusService.GetStatus reports.

The composition root (app.Sidecar) takes it from the parts it built; the
servicer only converts it, so it knows none of those parts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from .payments.collection.collector import CollectorState
from .payments.collection.records import AtRisk


@dataclass(frozen=True)
class FacilitatorStatus:
    name: str
    url: str
    breaker_state: str  # closed | open | half_open
    ewma_latency_ms: float
    success_rate: float  # EWMA of success, 0..1
    consecutive_failures: int
    attempts: int


@dataclass(frozen=True)
class TrackingStatus:
    queue_depth: int  # steps recorded, not yet in the database or the spool
    spool_records: int
    spool_bytes: int
    database_up: bool
    # Since start: steps whose row was not there to update, row writes PostgreSQL
    # refused for their values (dropped), journal writes that failed.
    missing_rows: int
    rejected_rows: int
    journal_failures: int


@dataclass(frozen=True)
class SidecarStatus:
    facilitators: tuple[FacilitatorStatus, ...]
    tracking: TrackingStatus
    in_flight_payments: int  # claims verified here and not yet settled or released


class StatusSource(Protocol):
    def status(self) -> SidecarStatus: ...


@dataclass(frozen=True)
class CollectionStatus:
    """The collector and the money at risk (GetStatus fields 50-51)."""

    at_risk: AtRisk | None  # None: the database could not be read
    enabled: bool
    state: CollectorState
    watch_rounds: int
    watched_channels: int
    watch_round_s: float


class CollectionSource(Protocol):
    async def collection_status(self) -> CollectionStatus: ...
