"""What operators may ask of the tracking records (DESIGN §6): a page of them by
filters, newest or slowest first, behind a keyset cursor; one record; figures
for a time range. The store answers through the TrackingRecords port."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

SortBy = Literal["timestamp", "response_time"]

DEFAULT_LIMIT = 50
MAX_LIMIT = 100


@dataclass(frozen=True)
class RecordQuery:
    """Filters left None match every record. `limit` is brought to 1..MAX_LIMIT."""

    path: str | None = None
    network: str | None = None
    scheme: str | None = None
    payer: str | None = None
    verified: bool | None = None
    settled: bool | None = None
    start: datetime | None = None  # inclusive
    end: datetime | None = None  # exclusive
    sort_by: SortBy = "timestamp"
    ascending: bool = False
    limit: int = DEFAULT_LIMIT
    cursor: str | None = None  # a previous page's next_cursor


@dataclass(frozen=True)
class RecordPage:
    # Each record is its columns by name (sidecar/store/schema.py).
    records: list[dict[str, Any]]
    total: int
    has_more: bool
    next_cursor: str | None


@dataclass(frozen=True)
class Stats:
    total_requests: int = 0
    payment_required_requests: int = 0
    verified_payments: int = 0
    successful_settlements: int = 0
    failed_settlements: int = 0
    avg_response_time_ms: float = 0.0
    p95_response_time_ms: float = 0.0
    by_path: dict[str, int] = field(default_factory=dict)
    by_network: dict[str, int] = field(default_factory=dict)
    by_scheme: dict[str, int] = field(default_factory=dict)
    volume_by_network: dict[str, str] = field(default_factory=dict)  # atomic units, decimal strings
    volume_by_network_asset: dict[str, str] = field(default_factory=dict)  # key "network:asset"
