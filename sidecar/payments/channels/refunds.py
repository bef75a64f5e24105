"""A cooperative refund, completed by the server (the binding's "Cooperative
refund flow", step 3): the amount (all that is not charged, unless the payer
asked for less), the contract's current refund nonce, a claim of what we charged
(so the charges are claimed in the same transaction, before the refund gives the
rest back), and the receiver authorizer's signatures when we hold its key; left
out, the facilitator that owns the authorizer signs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from x402.mechanisms.evm.batch_settlement import errors as codes
from x402.mechanisms.evm.batch_settlement.authorizer_signer import sign_claim_batch, sign_refund
from x402.mechanisms.evm.batch_settlement.types import AuthorizerSigner, EnrichedRefundPayload, VoucherClaim, VoucherFields

from ..errors import PaymentError
from .state import Channel, Mirror
from .vouchers import ChannelPayment


@dataclass(frozen=True)
class CompletedRefund:
    amount: int
    payload: dict[str, Any]  # the `payload` of the /settle request


def complete(
    payment: ChannelPayment, channel: Channel, mirror: Mirror, signer: AuthorizerSigner | None
) -> CompletedRefund:
    """`mirror` is the channel's contract state as just verified. Refused with the
    binding's codes when nothing is left to give back or the asked part is too much."""
    remainder = mirror.balance - channel.charged
    if remainder <= 0:
        raise PaymentError(codes.ERR_REFUND_NO_BALANCE, "nothing is left in the channel to refund")
    amount = remainder if payment.refund_amount is None else payment.refund_amount
    if amount <= 0:
        raise PaymentError(codes.ERR_REFUND_AMOUNT_INVALID, "a refund amount must be positive")
    if amount > remainder:
        raise PaymentError(codes.ERR_REFUND_NO_BALANCE, f"at most {remainder} is left to refund")
    network = channel.network
    # The refund voucher signs exactly what we charged: it backs the claim of it.
    claims = []
    if channel.charged > mirror.total_claimed:
        claims.append(
            VoucherClaim(
                channel=payment.config,
                max_claimable_amount=str(payment.max_claimable),
                signature=payment.signature,
                total_claimed=str(channel.charged),
            )
        )
    refund = EnrichedRefundPayload(
        channel_config=payment.config,
        voucher=VoucherFields(payment.channel_id, str(payment.max_claimable), payment.signature),
        amount=str(amount),
        refund_nonce=str(mirror.refund_nonce),
        claims=claims,
    )
    if signer is not None:
        refund.refund_authorizer_signature = sign_refund(signer, payment.channel_id, amount, mirror.refund_nonce, network)
        if claims:
            refund.claim_authorizer_signature = sign_claim_batch(signer, claims, network)
    return CompletedRefund(amount, refund.to_dict())
