"""What the client is told: payment requirements, 402 answers and the
PAYMENT-RESPONSE receipt, encoded with the SDK in the client's protocol version.
Errors are answered in the shape every part of the project uses
(paysidecar_common.http_answers), with the request id the sidecar was given."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

from x402.extensions.bazaar import BAZAAR
from x402.extensions.payment_identifier import PAYMENT_IDENTIFIER, declare_payment_identifier_extension
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
from .discovery import v1_output_schema
from .routes import PricedRoute

_JSON = "application/json"

__all__ = [
    "IN_DOUBT_MESSAGE",
    "HttpAnswer",
    "error_answer",
    "extensions",
    "payment_in_doubt",
    "payment_required",
    "receipt_headers",
    "requirements_v1",
    "requirements_v2",
    "resource_info",
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
        # v1 clients and facilitators read discovery here (x402 v1 had no extensions).
        output_schema=v1_output_schema(route.discovery),
        extra=route.extra,
    )


def resource_info(route: PricedRoute, url: str) -> ResourceInfo:
    """The resource the route offers at `url`, with its Bazaar service metadata."""
    return ResourceInfo(
        url=url,
        description=route.description,
        mime_type=route.mime_type,
        service_name=route.service_name or None,
        tags=list(route.tags) or None,
    )


def extensions(route: PricedRoute) -> dict[str, Any]:
    """The x402 extensions every 402 of the route declares, whatever schemes it
    offers: payment-identifier (required when the route says so) and its Bazaar
    discovery declaration."""
    declared: dict[str, Any] = {
        PAYMENT_IDENTIFIER: declare_payment_identifier_extension(required=route.payment_identifier_required)
    }
    if route.discovery is not None:
        declared[BAZAAR.key] = route.discovery
    return declared


# HTTP clients commonly refuse a header field over 8 KiB (aiohttp: 8,190 bytes).
MAX_CHALLENGE_HEADER_BYTES = 8000


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
        resource=resource_info(route, url),
        accepts=[offer for scheme in route.schemes if (offer := offers.get(scheme)) is not None],
        extensions=extensions(route),
    )
    header = encode_payment_required_header(required)
    if len(header) > MAX_CHALLENGE_HEADER_BYTES:
        # The query echoed in resource.url is what makes a challenge this long; the
        # path alone names the resource (a payment is bound to the path).
        required = required.model_copy(update={"resource": resource_info(route, _without_query(url))})
        header = encode_payment_required_header(required)
    body = required.model_dump_json(by_alias=True, exclude_none=True).encode()
    headers = {"Content-Type": _JSON, PAYMENT_REQUIRED_HEADER: header}
    return HttpAnswer(402, headers, body)


def _without_query(url: str) -> str:
    return urlunsplit(urlsplit(url)._replace(query="", fragment=""))


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
