"""Money rule 1: a payment must be bound to this route before any facilitator sees
it — scheme, network, asset, payTo, amount >= price, and the resource path. In
v2 the payment also carries the requirements it accepted: each of their fields
must be the route's own (the payer signs only the authorization, so everything
else in `accepted` is the payer's to write). For the same reason what the
facilitator is sent describes the resource as the route does, not as the payer
wrote it (`forwarded_payload`)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from x402.extensions.bazaar import BAZAAR
from x402.schemas import PaymentRequirements

from ..constants import V1_TO_CAIP2, Reason
from .answers import requirements_v1, requirements_v2, resource_info
from .codec import DecodedPayment, SignedAuthorization
from .errors import PaymentError
from .routes import PricedRoute


def _same_address(a: str, b: str) -> bool:
    return a.lower() == b.lower()


def _refuse(reason: str, message: str) -> PaymentError:
    return PaymentError(reason, message, status=402)


def bind(payment: DecodedPayment, route: PricedRoute, url: str) -> dict[str, Any]:
    """Check the payment against the route; return the paymentRequirements (wire
    dict) to verify and settle with. Raises PaymentError(402) on any mismatch."""
    signed = payment.authorization
    if payment.scheme != "exact":
        raise _refuse(Reason.SCHEME_MISMATCH, f"scheme {payment.scheme!r} is not accepted here")
    if not _same_address(signed.to, route.pay_to):
        raise _refuse(Reason.PAY_TO_MISMATCH, "the authorization pays another address")
    if signed.value < route.amount:
        raise _refuse(Reason.AMOUNT_TOO_LOW, f"this route costs {route.amount} atomic units")

    if payment.version == 1:
        if V1_TO_CAIP2.get(payment.network, payment.network) != route.network:
            raise _refuse(Reason.NETWORK_MISMATCH, f"this route is paid on {route.network}")
        # v1 payloads carry no requirements; the facilitator checks the signature
        # against the asset we name, so a payment for another asset fails there.
        requirements = requirements_v1(route, url).model_dump(by_alias=True, exclude_none=True)
        requirements["maxAmountRequired"] = str(signed.value)
        return requirements

    offered = requirements_v2(route)
    _check_accepted(payment.payload.accepted, offered, signed)
    resource = payment.payload.resource
    if resource is not None and urlsplit(resource.url).path != urlsplit(url).path:
        raise _refuse(Reason.RESOURCE_MISMATCH, "the payment was made for another resource")
    # Settle exactly what the payer signed (it may pay more than the price).
    offered.amount = str(signed.value)
    return offered.model_dump(by_alias=True, exclude_none=True)


def _check_accepted(accepted: PaymentRequirements, offered: PaymentRequirements, signed: SignedAuthorization) -> None:
    """Every field of the accepted requirements is the route's offer; only the
    amount may be more (and must be what the authorization signs)."""
    if accepted.network != offered.network:
        raise _refuse(Reason.NETWORK_MISMATCH, f"this route is paid on {offered.network}")
    if not _same_address(accepted.asset, offered.asset):
        raise _refuse(Reason.ASSET_MISMATCH, f"this route is paid in {offered.asset}")
    if not _same_address(accepted.pay_to, offered.pay_to):
        raise _refuse(Reason.PAY_TO_MISMATCH, "the payment names another payTo")
    if int(accepted.amount) != signed.value:
        raise _refuse(Reason.INVALID_PAYMENT, "accepted amount and authorization value differ")
    if accepted.max_timeout_seconds != offered.max_timeout_seconds:
        offer = offered.max_timeout_seconds
        raise _refuse(Reason.REQUIREMENTS_MISMATCH, f"maxTimeoutSeconds must be {offer}, as the route offers")
    if accepted.extra != offered.extra:
        raise _refuse(Reason.REQUIREMENTS_MISMATCH, "extra must be the route's, as offered")


def forwarded_payload(payment: DecodedPayment, route: PricedRoute, url: str) -> dict[str, Any]:
    """The PaymentPayload to verify and settle with: the client's, with the
    route's own `resource` and Bazaar declaration in place of the payer's. A
    facilitator catalogues what it settles, and neither is signed: as sent, a
    payer could have a forged description or schema listed under our path. The
    payment's identity stays the hash of the client's bytes. (v1 declares in the
    requirements, which are the route's already.)"""
    if payment.version == 1:
        return payment.wire
    wire = dict(payment.wire)
    wire["resource"] = resource_info(route, url).model_dump(by_alias=True, exclude_none=True)
    declared = wire.get("extensions")
    extensions = {k: v for k, v in declared.items() if k != BAZAAR.key} if isinstance(declared, dict) else {}
    if route.discovery is not None:
        extensions[BAZAAR.key] = route.discovery
    if extensions:
        wire["extensions"] = extensions
    else:
        wire.pop("extensions", None)
    return wire
