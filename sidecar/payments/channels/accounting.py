"""The cumulative rules of a channel (the binding's "Request Processing"): a paid
voucher must sign exactly what we charged so far plus the price, a refund voucher
exactly what we charged; a request is charged at most the price and never above
the voucher it brought. These make a voucher count once by construction: after
its charge is committed, the same voucher no longer matches."""

from __future__ import annotations

from x402.mechanisms.evm.batch_settlement import errors as codes

from ...constants import Reason
from ..errors import CallerError, PaymentError
from .state import REFUND


def expected_max_claimable(charged: int, kind: str, amount: int) -> int:
    return charged if kind == REFUND else charged + amount


def check_cumulative(max_claimable: int, charged: int, kind: str, amount: int) -> None:
    """A mismatch is the corrective 402 (the caller adds channelState and voucherState)."""
    if max_claimable != expected_max_claimable(charged, kind, amount):
        raise PaymentError(
            codes.ERR_CUMULATIVE_AMOUNT_MISMATCH,
            f"the voucher must sign {expected_max_claimable(charged, kind, amount)}: what was charged so far"
            + ("" if kind == REFUND else " plus this request's price"),
        )


def charge_of(requested: int | None, amount: int, charged: int, max_claimable: int) -> int:
    """What this request is charged: the caller's charge (dynamic pricing) or the
    price; at most the price, and never above the voucher the request brought."""
    charge = amount if requested is None else requested
    if not 0 <= charge <= amount:
        raise CallerError(Reason.INVALID_CHARGE, f"charge must be from 0 to the route's amount ({amount})")
    if charged + charge > max_claimable:
        # Unreachable while check_cumulative holds; kept as the last word on money.
        raise CallerError(codes.ERR_CHARGE_EXCEEDS_SIGNED_CUMULATIVE, "the charge exceeds the signed voucher")
    return charge
