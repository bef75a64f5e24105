"""What the client is told: payment requirements, 402 answers and the
PAYMENT-RESPONSE receipt, encoded with the SDK in the client's protocol version.
Errors are answered in the shape every part of the project uses
(paysidecar_common.http_answers), with the request id the sidecar was given."""

from __future__ import annotations

from x402.http.utils import encode_payment_required_header, encode_payment_response_header
from x402.schemas import PaymentRequired, PaymentRequirements, ResourceInfo, SettleResponse
from x402.schemas.v1 import PaymentRequiredV1, PaymentRequirementsV1

from paysidecar_common.http_answers import IN_DOUBT_MESSAGE, HttpAnswer, error_answer, payment_in_doubt

from ..constants import (
    CAIP2_TO_V1,
    PAYMENT_REQUIRED_HEADER,
    PAYMENT_RESPONSE_HEADER,
    X_PAYMENT_RESPONSE_HEADER,
)
from .routes import PricedRoute

_JSON = "application/json"

__all__ = [
    "IN_DOUBT_MESSAGE",
    "HttpAnswer",
    "error_answer",
    "payment_in_doubt",
    "payment_required",
    "receipt_headers",
    "requirements_v1",
    "requirements_v2",
    "settlement_failed",
]


def requirements_v2(route: PricedRoute) -> PaymentRequirements:
    return PaymentRequirements(
        scheme="exact",
        network=route.network,
        asset=route.asset,
        amount=str(route.amount),
        pay_to=route.pay_to,
        max_timeout_seconds=route.max_timeout_seconds,
        extra=route.extra,
    )


def requirements_v1(route: PricedRoute, url: str) -> PaymentRequirementsV1:
    return PaymentRequirementsV1(
        scheme="exact",
        network=CAIP2_TO_V1.get(route.network, route.network),
        max_amount_required=str(route.amount),
        resource=url,
        description=route.description,
        mime_type=route.mime_type,
        pay_to=route.pay_to,
        max_timeout_seconds=route.max_timeout_seconds,
        asset=route.asset,
        extra=route.extra,
    )


def payment_required(
    route: PricedRoute, url: str, error: str, version: int = 2, *, batch: PaymentRequirements | None = None
) -> HttpAnswer:
    """The 402 challenge: header and body carry the same PaymentRequired JSON, with
    what the route offers in the order of its schemes (`batch`: its batch-settlement
    offer, when it makes one)."""
    if version == 1 and route.offers("exact"):
        # v1 clients read the body only; the header is v2's invention. v1 knows exact only.
        v1 = PaymentRequiredV1(error=error, accepts=[requirements_v1(route, url)])
        body = v1.model_dump_json(by_alias=True, exclude_none=True).encode()
        return HttpAnswer(402, {"Content-Type": _JSON}, body)
    offers = {"exact": requirements_v2(route), "batch-settlement": batch}
    required = PaymentRequired(
        error=error,
        resource=ResourceInfo(url=url, description=route.description, mime_type=route.mime_type),
        accepts=[offer for scheme in route.schemes if (offer := offers.get(scheme)) is not None],
    )
    body = required.model_dump_json(by_alias=True, exclude_none=True).encode()
    headers = {"Content-Type": _JSON, PAYMENT_REQUIRED_HEADER: encode_payment_required_header(required)}
    return HttpAnswer(402, headers, body)


def receipt_headers(
    version: int, *, success: bool, network: str, transaction: str, payer: str, reason: str = ""
) -> dict[str, str]:
    """PAYMENT-RESPONSE (v2) or X-PAYMENT-RESPONSE (v1) with our own reason codes only."""
    receipt = SettleResponse(
        success=success,
        error_reason=reason or None,
        transaction=transaction,
        network=CAIP2_TO_V1.get(network, network) if version == 1 else network,
        payer=payer or None,
    )
    name = X_PAYMENT_RESPONSE_HEADER if version == 1 else PAYMENT_RESPONSE_HEADER
    return {name: encode_payment_response_header(receipt)}


def settlement_failed(
    route: PricedRoute, url: str, version: int, *, reason: str, network: str, transaction: str, payer: str
) -> HttpAnswer:
    """A 402 with a receipt saying why nothing is served (and the tx when known)."""
    answer = payment_required(route, url, reason, version)
    headers = dict(answer.headers)
    headers.update(
        receipt_headers(
            version, success=False, network=network, transaction=transaction, payer=payer, reason=reason
        )
    )
    return HttpAnswer(answer.status, headers, answer.body)
