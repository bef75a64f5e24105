"""The claims this process holds between Authorize and Settle or Release, and
who may use a claim.

What Settle needs from Authorize (the decoded payment, the route) is kept in
memory only, never the raw payload in SQL. A claim another replica verified is
adopted by Settle from the ledger and the client's header (settle.py). In a pool
a claim held here is often finished by another replica, which this one never
hears of: what is held here decides only for the caller holding its token, else
the ledger does, and what the ledger shows closed is forgotten (forget_closed)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from ..constants import Reason
from .codec import DecodedPayment
from .errors import ClaimRefused, LedgerUnavailable
from .ledger import LedgerEntry
from .ports import IdentifierStore, LedgerStore
from .routes import PricedRoute


@dataclass
class InFlight:
    """One claim on its way from Authorize to Settle or Release."""

    entry: LedgerEntry
    payment: DecodedPayment
    route: PricedRoute
    url: str
    request_id: str
    redeem: bool
    # A replay (replay.py): served from this payment, the first its id paid with;
    # `entry` is then that payment's row as the replay sees it (its claim token
    # and tracking record are the replay's).
    replay_of: LedgerEntry | None = None


class InFlightClaims:
    """The claims in flight here, by payment id. Settle and Release take theirs
    out; a claim goes back when the ledger could not be reached, so a retry can
    use it; shutdown releases what is left; recovery leaves them alone."""

    def __init__(self) -> None:
        self._by_payment: dict[str, InFlight] = {}

    def __len__(self) -> int:
        return len(self._by_payment)

    def __contains__(self, payment_id: object) -> bool:
        return payment_id in self._by_payment

    def hold(self, flight: InFlight) -> None:
        self._by_payment[flight.entry.payment_id] = flight

    def get(self, payment_id: str) -> InFlight | None:
        return self._by_payment.get(payment_id)

    def take_held(self, payment_id: str, claim_token: str) -> InFlight | None:
        """Take the claim in flight here under this token. Another token takes none:
        a replay of a payment and a late Release of the payment itself share its id."""
        flight = self._by_payment.get(payment_id)
        if flight is None or not holds(flight.entry, claim_token):
            return None
        return self.take(payment_id)

    def take(self, payment_id: str) -> InFlight | None:
        return self._by_payment.pop(payment_id, None)

    def drop(self, flight: InFlight) -> None:
        """Forget `flight` if it is still the claim held for its payment."""
        if self._by_payment.get(flight.entry.payment_id) is flight:
            del self._by_payment[flight.entry.payment_id]

    def drop_older(self, payment_id: str) -> None:
        """Its caller holds the ledger's claim of `payment_id`, which is not the one
        held here: that one is older, closed elsewhere (and claimed again there),
        and is forgotten. A replay held here stays: its claim is not the row's."""
        flight = self._by_payment.get(payment_id)
        if flight is not None and flight.replay_of is None:
            del self._by_payment[payment_id]

    def payment_ids(self) -> list[str]:
        return list(self._by_payment)


async def move_taken(
    ledger: LedgerStore,
    claims: InFlightClaims,
    flight: InFlight,
    from_states: tuple[str, ...],
    to_state: str,
    **fields: Any,
) -> LedgerEntry | None:
    """Move a claim taken out of `claims` on in the ledger. When the ledger
    cannot be reached, nothing was sent nor served yet: the claim goes back, so
    a retry of the call can use it."""
    entry = flight.entry
    try:
        return await ledger.transition(entry.payment_id, entry.claim_token, from_states, to_state, **fields)
    except LedgerUnavailable:
        claims.hold(flight)
        raise


async def forget_closed(ledger: LedgerStore, identifiers: IdentifierStore, claims: InFlightClaims) -> int:
    """Forget the claims held here that another replica closed (settled, released,
    claimed again); how many."""
    forgotten = 0
    for payment_id in claims.payment_ids():
        flight = claims.get(payment_id)
        if flight is None or await _still_open(ledger, identifiers, flight):
            continue
        claims.drop(flight)
        forgotten += 1
    return forgotten


async def _still_open(ledger: LedgerStore, identifiers: IdentifierStore, flight: InFlight) -> bool:
    """Whether `flight`'s claim is still as its caller left it: not done yet."""
    held = flight.entry
    if flight.replay_of is not None:
        # A replay's claim is held on its id's binding, not in the row (replay.py).
        return await identifiers.replay_held(held.payment_id, held.claim_token) is not None
    entry = await ledger.get(held.payment_id)
    return entry is not None and entry.claim_token == held.claim_token and entry.state == held.state


def token_of(claim_token: str) -> uuid.UUID | None:
    """The claim token a caller sent, None when it is not one."""
    try:
        return uuid.UUID(claim_token)
    except ValueError:
        return None


def holds(entry: LedgerEntry, claim_token: str) -> bool:
    """Whether `claim_token` is the token of the claim under `entry`."""
    return token_of(claim_token) == entry.claim_token


def check_holder(entry: LedgerEntry, claim_token: str) -> None:
    """Only the caller Authorize gave the claim token to may Settle or Release."""
    check_token(entry.claim_token, claim_token)


def check_token(held_by: uuid.UUID, claim_token: str) -> None:
    if token_of(claim_token) != held_by:
        raise ClaimRefused(Reason.NOT_CLAIM_HOLDER, "Settle and Release need the claim_token Authorize returned")


def closed(why: str) -> ClaimRefused:
    return ClaimRefused(Reason.CLAIM_CLOSED, f"the claim cannot be settled or released: {why}")
