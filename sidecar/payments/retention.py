"""What Prune may delete. A record younger than the minimum retention may still
back a payment being redeemed, reconciled or disputed, and a cutoff in the
future would reach the calls under way; so such a cutoff is refused before
anything is deleted, whichever way deletion is done (batched deletes, dropped
partitions)."""

from __future__ import annotations

from datetime import datetime, timedelta

from ..constants import Reason
from .errors import PruneRefused
from .ports import TrackingRecords


def prune_cutoff(
    requested: datetime | None, now: datetime, *, retention_days: int, min_retention_days: int
) -> datetime:
    """The instant before which records may be deleted: `requested` (an aware
    datetime), or the retention period back from `now` when none is given."""
    if requested is None:
        requested = now - timedelta(days=retention_days)
    if requested > now:
        raise PruneRefused(Reason.INVALID_PRUNE_CUTOFF, "the cutoff is in the future; nothing was deleted")
    youngest = now - timedelta(days=min_retention_days)
    if requested > youngest:
        raise PruneRefused(
            Reason.INVALID_PRUNE_CUTOFF,
            f"records are kept at least {min_retention_days} days: the cutoff must be at or before "
            f"{youngest.isoformat(timespec='seconds')}; nothing was deleted",
        )
    return requested


async def prune(
    records: TrackingRecords,
    requested: datetime | None,
    now: datetime,
    *,
    retention_days: int,
    min_retention_days: int,
) -> int:
    """Prune: delete the records before the cutoff the rule above allows."""
    cutoff = prune_cutoff(requested, now, retention_days=retention_days, min_retention_days=min_retention_days)
    return await records.prune(cutoff)
