"""What the payment flow is asked and what it answers: Authorize's input and its
answers (a challenge, a refusal, a verified claim, or a payment operation done
without a handler), Settle's input and result, Release's input."""

from __future__ import annotations

from dataclasses import dataclass, field

from .answers import HttpAnswer
from .codec import DecodedPayment
from .ledger import LedgerEntry
from .routes import PricedRoute


@dataclass(frozen=True)
class AuthorizeInput:
    request_id: str
    method: str
    url: str
    route: PricedRoute
    payment_signature: str = ""
    x_payment: str = ""
    client_ip: str = ""
    user_agent: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    query: str = ""
    trace_id: str = ""
    call_key: str = ""  # the caller's key of this call, the same on its retries


@dataclass(frozen=True)
class Challenge:
    answer: HttpAnswer


@dataclass(frozen=True)
class Rejection:
    reason: str
    message: str
    answer: HttpAnswer


@dataclass(frozen=True)
class Verified:
    payment_id: str
    payer: str
    scheme: str
    network: str
    amount: str
    version: int
    redeem: bool
    # Only the caller holding it may Settle or Release the claim.
    claim_token: str
    # batch-settlement: the channel the request is paid through.
    channel_id: str = ""

    @classmethod
    def of(cls, entry: LedgerEntry, payment: DecodedPayment, *, redeem: bool) -> Verified:
        signed = payment.authorization
        return cls(
            entry.payment_id,
            signed.payer,
            payment.scheme,
            entry.network,
            str(signed.value),
            payment.version,
            redeem,
            str(entry.claim_token),
        )


@dataclass(frozen=True)
class Completed:
    """A payment operation the sidecar carried out itself (a batch-settlement
    refund): send this answer, run no handler."""

    answer: HttpAnswer


@dataclass(frozen=True)
class SettleInput:
    payment_id: str
    claim_token: str
    response_status: int  # the handler's
    response_time_ms: int
    # The client's payment header, (name, value): with it another replica may
    # settle a claim this one did not verify.
    header: tuple[str, str] | None = None
    # The caller's request id, for the events and answers of an adopted claim.
    request_id: str = ""
    # What the request costs, when less than the route's amount (batch-settlement's
    # dynamic pricing); None: the route's amount.
    charge: int | None = None


@dataclass(frozen=True)
class ReleaseInput:
    payment_id: str
    claim_token: str
    reason: str
    response_status: int
    response_time_ms: int


@dataclass(frozen=True)
class SettleResult:
    success: bool
    headers: dict[str, str]
    transaction: str
    payer: str
    network: str
    reason: str = ""
    answer: HttpAnswer | None = None
