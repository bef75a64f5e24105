"""Domain errors: a machine `reason`, a human `message`, and the HTTP status the
client should see. The API layer maps them to gRPC codes in one table; only
these are anybody's fault but ours, anything else is a bug (INTERNAL)."""

from __future__ import annotations

from typing import Any


class PaymentError(Exception):
    """A payment the client must fix (400), pay again for (402), or send again
    later (409, 503). A 402 may offer the client a corrected batch-settlement
    offer (`offer`: the channel's state to resynchronise with); any answer may
    carry more headers (`headers`: a receipt, a Retry-After)."""

    def __init__(
        self,
        reason: str,
        message: str,
        status: int = 402,
        *,
        offer: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.status = status
        self.offer = offer
        self.headers = headers or {}


class CallerError(Exception):
    """The calling service asked for something it may not (its bug, not the
    payer's): INVALID_ARGUMENT, and nothing was done."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class RouteError(CallerError):
    """The calling service described the route badly."""


class PruneRefused(CallerError):
    """A Prune cutoff that would delete records still to be kept; nothing was deleted."""


class InvalidRequest(CallerError):
    """A request field the sidecar cannot take as sent: text PostgreSQL cannot
    hold, an over-long call key, a time out of range, a cursor it did not make."""


class UnknownPayment(Exception):
    """Settle/Release named a payment this sidecar has no claim for."""

    def __init__(self, payment_id: str) -> None:
        super().__init__(f"no claim for payment {ascii(payment_id[:80])}")
        self.payment_id = payment_id


class ClaimRefused(Exception):
    """Settle/Release by a caller that does not hold the claim, or of a claim in a
    state that does not allow it (released, settled): nothing was changed."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class RouteRefused(Exception):
    """A route this sidecar's config does not offer: a name it does not know, or
    money terms a caller may not set here (production takes them from the config
    alone). The deployment's fault, not the payer's: nothing was done."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class LedgerUnavailable(Exception):
    """The ledger (PostgreSQL) could not be reached: the money path must refuse."""
