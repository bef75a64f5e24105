"""Tracking fields of a channel request (DESIGN §6, issue "Tracking"): its scheme,
channel, kind, the voucher's cumulative amount, what it was charged and the
deposit or refund transaction. Never a signature (money rule 6)."""

from __future__ import annotations

from typing import Any

from x402.mechanisms.evm.batch_settlement.constants import SCHEME_BATCH_SETTLEMENT

from ..routes import PricedRoute
from .state import Channel
from .vouchers import ChannelPayment


def payment_fields(payment: ChannelPayment, route: PricedRoute) -> dict[str, Any]:
    """What Authorize learns; `amount` is the most the request may cost until Settle
    says what it was charged."""
    return {
        "payment": {
            "scheme": SCHEME_BATCH_SETTLEMENT,
            "network": route.network,
            "asset": route.asset,
            "amount": str(route.amount),
            "payer": payment.payer,
            "pay_to": payment.config.receiver,
            "channel_id": payment.channel_id,
            "kind": payment.kind,
            "max_claimable": str(payment.max_claimable),
            **({"deposit": str(payment.deposit)} if payment.deposit else {}),
        },
        "x402_version": payment.envelope.version,
    }


def charged_fields(
    payment: dict[str, Any],
    channel: Channel,
    charge: int,
    *,
    transaction: str,
    facilitator: str,
    response_status: int,
    response_time_ms: int,
) -> dict[str, Any]:
    """Settle committed the charge. `payment` is what Authorize recorded (empty when
    another replica did): its amount becomes the charge, what the request earned."""
    fields: dict[str, Any] = {"payment": {**payment, "amount": str(charge)}} if payment else {}
    return fields | {
        "settlement": {
            "success": True,
            "status": "charged",
            "transaction": transaction or None,
            "network": channel.network,
            "payer": channel.config.payer,
            "facilitator": facilitator or None,
            "channel_id": channel.channel_id,
            "charged": str(charge),
            "cumulative": str(channel.charged),
        },
        "handler_executed": True,
        "response_status": response_status,
        "response_time_ms": response_time_ms,
    }


def not_charged_fields(
    network: str, payer: str, reason: str, transaction: str, facilitator: str, response_status: int, response_time_ms: int
) -> dict[str, Any]:
    return {
        "settlement": {
            "success": False,
            "status": "not_charged",
            "error_reason": reason,
            "transaction": transaction or None,
            "network": network,
            "payer": payer,
            "facilitator": facilitator or None,
        },
        "handler_executed": True,
        "response_status": response_status,
        "response_time_ms": response_time_ms,
    }


def refund_fields(payment: dict[str, Any], channel: Channel, amount: int, transaction: str, facilitator: str) -> dict[str, Any]:
    """A cooperative refund: nothing earned (amount 0), `refunded` given back."""
    return {
        "payment": {**payment, "amount": "0"},
        "settlement": {
            "success": True,
            "status": "refunded",
            "transaction": transaction or None,
            "network": channel.network,
            "payer": channel.config.payer,
            "facilitator": facilitator or None,
            "channel_id": channel.channel_id,
            "refunded": str(amount),
            "cumulative": str(channel.charged),
        },
        "handler_executed": False,
    }
