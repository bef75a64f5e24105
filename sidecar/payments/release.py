"""Release: no settle for this claim (the handler failed, HEAD, the client went
away: DESIGN §4 rule 3). The claim goes back and nothing moves; a redeem claim
goes back to settled_unserved, a replay's gives its payment-identifier id back
(replay.py). A settled claim takes one Release only, RELEASE_NOT_DELIVERED: the
answer never reached the client, so the payment becomes settled_unserved,
redeemable once by its header."""

from __future__ import annotations

from ..constants import RELEASE_NOT_DELIVERED
from . import ledger, records, replay
from .claims import InFlight, check_holder, closed
from .context import PaymentContext
from .errors import UnknownPayment
from .flow import ReleaseInput
from .identity import is_payment_id
from .ledger import LedgerEntry


async def release(ctx: PaymentContext, req: ReleaseInput) -> str:
    """Release for the claim's holder; the ledger state the claim moved to."""
    pid = req.payment_id
    if not is_payment_id(pid):
        raise UnknownPayment(pid)
    flight = ctx.claims.take_held(pid, req.claim_token)
    if flight is not None:
        if flight.replay_of is not None:
            return await _release_replay(ctx, flight.entry, req)
        entry = flight.entry
    else:
        found = await ctx.ledger.get(pid)  # as in settle.py: the ledger decides
        if found is None:
            raise UnknownPayment(pid)
        # A replay another replica authorized is held on its id, not in the row.
        replayed = await replay.held(ctx, found, req.claim_token)
        if replayed is not None:
            return await _release_replay(ctx, replayed, req)
        entry = found
    check_holder(entry, req.claim_token)
    if flight is None:
        ctx.claims.drop_older(pid)
    moved = await release_entry(
        ctx,
        entry,
        req.reason,
        req.response_status,
        req.response_time_ms,
        undelivered=req.reason == RELEASE_NOT_DELIVERED,
    )
    if moved is None:
        raise closed("a settled claim takes only a response_not_delivered Release, once")
    return moved.state


async def _release_replay(ctx: PaymentContext, seen: LedgerEntry, req: ReleaseInput) -> str:
    if not await replay.release(ctx, seen, req.reason, req.response_status, req.response_time_ms):
        raise closed("the replay was settled or released already")
    return seen.state


async def release_flight(
    ctx: PaymentContext, flight: InFlight, reason: str, response_status: int, elapsed_ms: int
) -> None:
    """Give back a claim taken out of the claims in flight (not settled)."""
    if flight.replay_of is not None:
        await replay.release(ctx, flight.entry, reason, response_status, elapsed_ms)
    else:
        await release_entry(ctx, flight.entry, reason, response_status, elapsed_ms)


async def release_entry(
    ctx: PaymentContext,
    entry: LedgerEntry,
    reason: str,
    response_status: int,
    elapsed_ms: int,
    undelivered: bool = False,
) -> LedgerEntry | None:
    """Give the claim under `entry`'s token back, and record why: None when
    nothing moved. With `undelivered`, a settled claim moves too."""
    moved = await ctx.ledger.transition(
        entry.payment_id, entry.claim_token, (ledger.VERIFIED,), ledger.RELEASED
    ) or await ctx.ledger.transition(
        entry.payment_id,
        entry.claim_token,
        (ledger.REDEEMING, ledger.SETTLED) if undelivered else (ledger.REDEEMING,),
        ledger.SETTLED_UNSERVED,
        served=False,
        served_at=None,
    )
    if moved is not None and entry.tracking_id is not None:
        records.record_release(ctx.tracker, entry.tracking_id, reason, moved.state, response_status, elapsed_ms)
    return moved


async def release_all(ctx: PaymentContext, reason: str) -> int:
    """Shutdown: give back every claim still waiting for Settle or Release."""
    pids = ctx.claims.payment_ids()
    for pid in pids:
        flight = ctx.claims.take(pid)
        if flight is not None:
            await release_flight(ctx, flight, reason, 0, 0)
    return len(pids)
