"""What a route offers for batch-settlement (the binding's 402): the receiver
authorizer that signs our claims and refunds, the withdraw delay, the token's
EIP-712 domain; and the corrective offer that lets a client resynchronise
(channelState with our chargedCumulativeAmount, voucherState with the last
voucher we hold)."""

from __future__ import annotations

from dataclasses import dataclass

from x402.mechanisms.evm.batch_settlement.constants import SCHEME_BATCH_SETTLEMENT
from x402.mechanisms.evm.batch_settlement.types import PaymentRequirementsExtra, VoucherStateExtra
from x402.schemas import PaymentRequirements

from ..routes import PricedRoute
from .state import Channel


@dataclass(frozen=True)
class ChannelTerms:
    """Our side of every channel a route opens (the config fields the payer does not choose)."""

    receiver_authorizer: str  # checksummed
    withdraw_delay: int  # seconds
    # The facilitator whose key the receiver authorizer is ("" when it is ours): it
    # signs, so refunds go there.
    facilitator: str = ""
    # The deposit the 402 suggests (extra.minDeposit), in requests at the price; a
    # smaller deposit is taken all the same, as the binding asks.
    deposit_requests: int = 10


def requirements(route: PricedRoute, terms: ChannelTerms) -> PaymentRequirements:
    """The route's batch-settlement offer: `amount` is the most one request costs."""
    extra = PaymentRequirementsExtra(
        receiver_authorizer=terms.receiver_authorizer,
        withdraw_delay=terms.withdraw_delay,
        name=route.asset_name,
        version=route.asset_version,
        min_deposit=str(route.amount * terms.deposit_requests),
    )
    return PaymentRequirements(
        scheme=SCHEME_BATCH_SETTLEMENT,
        network=route.network,
        asset=route.asset,
        amount=str(route.amount),
        pay_to=route.pay_to,
        max_timeout_seconds=route.max_timeout_seconds,
        extra=extra.to_dict(),
    )


def corrective(offer: PaymentRequirements, channel: Channel) -> PaymentRequirements:
    """The offer of a corrective 402: the channel as we hold it, and the voucher
    that backs our charges when we hold one (the client checks its signature
    before it adopts our chargedCumulativeAmount; without it, it starts again
    from what the chain says was claimed)."""
    extra = dict(offer.extra or {})
    extra["channelState"] = channel.channel_state().to_dict()
    if channel.voucher_signature is not None:
        voucher = VoucherStateExtra(str(channel.signed_max_claimable), channel.voucher_signature)
        extra["voucherState"] = voucher.to_dict()
    return offer.model_copy(update={"extra": extra})
