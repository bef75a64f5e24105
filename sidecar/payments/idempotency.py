"""The x402 payment-identifier extension: a retry is not a second purchase.

A client names a purchase with an id in its payload's extensions. The first
payment carrying it binds the id to its payer and to the request it pays for:
the fingerprint of scheme, network, asset, amount, payTo, route, method, path and
query. From then on a payment carrying that id is never settled:

- same fingerprint: served again from the first payment, with its PAYMENT-RESPONSE
  and no new transfer, within the idempotency window (and, whatever the window,
  while the first payment has never been delivered);
- another fingerprint, or past the window: 409 Conflict.

Its signature is verified all the same (at a facilitator, unless it is the very
payload verified before), so only the payer can use its ids. While the first
payment is under way the id answers 409 in flight, or 503 in doubt while its
settle is: both with Retry-After, never processed in parallel. A payment that
moved no money (released, failed) binds nothing; the next payment with the id
takes it. Ids are checked as the extension says (400 when invalid), and a route
may require one (400 without).

Ids are kept for exact payments only. A batch-settlement payment carrying one is
refused (400) before its channel is touched, never charged with the promise
unkept: a retry re-signed after a lost answer would be a second charge. Sent
again without the id, the voucher is charged once, by its cumulative amount (and
a charge whose answer was not delivered is taken back). A route requiring ids
offers exact payments only.

Here: the rules, pure. The flow is authorize.py's (`_identified`), the replays'
claims replay.py's, the SQL sidecar/store/identifiers.py's."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

from x402.extensions.payment_identifier import (
    PAYMENT_IDENTIFIER,
    payment_identifier_schema,
    validate_payment_identifier,
)

from ..constants import Reason
from . import ledger
from .codec import DecodedPayment, Envelope
from .errors import PaymentError
from .identity import canonical_hash
from .ledger import LedgerEntry
from .routes import PricedRoute

# Seconds a client waits before sending again while its id is in flight.
IN_FLIGHT_RETRY_AFTER_S = 1


@dataclass(frozen=True)
class IdempotencyPolicy:
    # How long a delivered payment is served again to its id.
    window_s: float
    # A replay neither settled nor released for this long (its caller vanished)
    # no longer holds the id.
    replay_timeout_s: float


@dataclass(frozen=True)
class IdentifiedRequest:
    """A request whose payment carries a payment-identifier id."""

    payer: str  # lower-case address
    identifier: str
    fingerprint: str


@dataclass(frozen=True)
class Binding:
    """An id as the store holds it: bound to a payer, a request and a payment."""

    payer: str
    identifier: str
    fingerprint: str
    payment_id: str
    age_s: float  # since the payment was bound
    # The tracking record of the replay holding the id, if one does.
    replay_tracking_id: uuid.UUID | None = None


class Verdict(enum.Enum):
    NEW = "new"              # no payment holds the id: pay, and bind it
    REPLAY = "replay"        # serve again from the bound payment
    IN_FLIGHT = "in_flight"  # the bound payment (or a replay) is under way
    IN_DOUBT = "in_doubt"    # the bound payment's settle is in doubt (the chain is asked)
    CONFLICT = "conflict"    # the id paid for another request
    EXPIRED = "expired"      # the id paid, was delivered, and the window is over


def identify(payment: DecodedPayment, route: PricedRoute, method: str, url: str) -> IdentifiedRequest | None:
    """The request's id and fingerprint; None when the payment carries no id
    and the route requires none. PaymentError(400) for an id the extension
    refuses, and for a missing one the route requires."""
    identifier = payment_identifier(payment)
    if identifier is None:
        if route.payment_identifier_required:
            raise PaymentError(
                Reason.PAYMENT_IDENTIFIER_REQUIRED,
                "this route requires a payment identifier (x402 payment-identifier extension)",
                400,
            )
        return None
    return IdentifiedRequest(payment.authorization.payer.lower(), identifier, fingerprint(payment, route, method, url))


def refuse_on_channel(payment: Envelope, route: PricedRoute) -> None:
    """A batch-settlement payment may carry no id (see above): PaymentError(400)
    for one it carries (invalid or not), and on a route that requires ids."""
    if payment_identifier(payment) is not None:
        raise PaymentError(
            Reason.PAYMENT_IDENTIFIER_UNSUPPORTED,
            "payment identifiers are kept for exact payments only; send the batch-settlement payment"
            " without one (a voucher is charged once, by its cumulative amount), or pay exact with it",
            400,
        )
    if route.payment_identifier_required:
        raise PaymentError(
            Reason.PAYMENT_IDENTIFIER_REQUIRED,
            "this route requires a payment identifier, which only exact payments carry",
            400,
        )


def payment_identifier(payment: DecodedPayment | Envelope) -> str | None:
    """The id the payment carries (None: none), or PaymentError(400) for one the
    extension refuses. Checked against the extension's own schema (the SDK's),
    never against the schema the payer sent with it: that one is the payer's to
    write, patterns and references included."""
    extensions = payment.payload.extensions if payment.version == 2 else None
    declared = extensions.get(PAYMENT_IDENTIFIER) if extensions else None
    if declared is None:
        return None
    info = declared.get("info") if isinstance(declared, dict) else None
    checked = validate_payment_identifier({"info": info, "schema": payment_identifier_schema})
    if not checked.valid:
        problem = "; ".join(checked.errors)[:200]
        raise PaymentError(Reason.INVALID_PAYMENT_IDENTIFIER, f"invalid payment identifier: {problem}", 400)
    return info.get("id")


def fingerprint(payment: DecodedPayment, route: PricedRoute, method: str, url: str) -> str:
    """What an id is bound to: the terms paid and the request they paid for.
    The query's parameters are compared as a set (their order changes no answer)."""
    parts = urlsplit(url)
    return canonical_hash(
        {
            "scheme": payment.scheme,
            "network": route.network,
            "asset": route.asset.lower(),
            "amount": str(payment.authorization.value),
            "payTo": route.pay_to.lower(),
            "route": route.key,
            "method": method.upper(),
            "path": parts.path,
            "query": sorted(parse_qsl(parts.query, keep_blank_values=True)),
        }
    )


def decide(
    binding: Binding | None, bound: LedgerEntry | None, request: IdentifiedRequest, policy: IdempotencyPolicy
) -> Verdict:
    """What a payment carrying `request`'s id gets, given the id's binding and
    the ledger row of the payment bound to it."""
    if binding is None or bound is None or bound.state in ledger.RECLAIMABLE:
        return Verdict.NEW
    if binding.fingerprint != request.fingerprint:
        return Verdict.CONFLICT
    if bound.state == ledger.UNKNOWN:
        return Verdict.IN_DOUBT
    if bound.state not in (ledger.SETTLED, ledger.SETTLED_UNSERVED):
        return Verdict.IN_FLIGHT  # its handler runs, it is being settled or redeemed
    if bound.served and binding.age_s > policy.window_s:
        return Verdict.EXPIRED
    return Verdict.REPLAY


def refusal(verdict: Verdict, policy: IdempotencyPolicy, in_doubt_message: str) -> PaymentError:
    """The answer to a payment its id's verdict refuses."""
    if verdict is Verdict.CONFLICT:
        return PaymentError(
            Reason.PAYMENT_IDENTIFIER_CONFLICT,
            "this payment identifier was paid with for another request; use a new one",
            409,
        )
    if verdict is Verdict.EXPIRED:
        return PaymentError(
            Reason.PAYMENT_IDENTIFIER_EXPIRED,
            f"this payment identifier was paid with more than {policy.window_s:.0f} s ago; use a new one",
            409,
        )
    if verdict is Verdict.IN_DOUBT:
        return PaymentError(Reason.PAYMENT_IN_DOUBT, in_doubt_message, 503)
    return PaymentError(
        Reason.PAYMENT_IDENTIFIER_IN_FLIGHT,
        "a request paid with this payment identifier is under way; retry with the same identifier",
        409,
        headers={"Retry-After": str(IN_FLIGHT_RETRY_AFTER_S)},
    )
