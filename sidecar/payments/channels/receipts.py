"""PAYMENT-RESPONSE for channel payments, as the binding's "Payment Response
Contract" says: a voucher moved nothing on chain (`transaction` and `amount`
empty, `extra.chargedAmount` the charge, `extra.channelState` the channel with
our new chargedCumulativeAmount); a deposit names its transaction and amount; a
refund its transaction and the amount given back, without `chargedAmount`."""

from __future__ import annotations

from x402.http.utils import encode_payment_response_header
from x402.schemas import SettleResponse

from ...constants import PAYMENT_RESPONSE_HEADER
from .state import Channel


def _header(receipt: SettleResponse) -> dict[str, str]:
    return {PAYMENT_RESPONSE_HEADER: encode_payment_response_header(receipt)}


def charged(channel: Channel, charge: int, *, transaction: str = "", deposit: int = 0) -> dict[str, str]:
    """A paid request: `channel` as it is after the charge was committed."""
    receipt = SettleResponse(
        success=True,
        transaction=transaction,
        network=channel.network,
        payer=channel.config.payer,
        amount=str(deposit) if transaction else "",
        extra={"chargedAmount": str(charge), "channelState": channel.channel_state().to_dict()},
    )
    return _header(receipt)


def refunded(channel: Channel, transaction: str, amount: int) -> dict[str, str]:
    receipt = SettleResponse(
        success=True,
        transaction=transaction,
        network=channel.network,
        payer=channel.config.payer,
        amount=str(amount),
        extra={"channelState": channel.channel_state().to_dict()},
    )
    return _header(receipt)


def failed(network: str, payer: str, reason: str, transaction: str = "") -> dict[str, str]:
    """Nothing was charged (or it is in doubt, which `reason` says): our own code only."""
    receipt = SettleResponse(
        success=False, error_reason=reason, transaction=transaction, network=network, payer=payer or None
    )
    return _header(receipt)
