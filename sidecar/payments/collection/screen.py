"""Which channels a claim may carry. The contract reverts a whole batch for one bad
row (ClaimExceedsBalance, InvalidSignature, ...), so each channel is checked here
first, and a batch the facilitator still refuses is split until the bad rows stand
alone (collector.py). Pure: the channel as we hold it, nothing else."""

from __future__ import annotations

from x402.mechanisms.evm.batch_settlement.types import VoucherClaim

from ..channels.state import Channel
from ..channels.vouchers import voucher_signed
from .records import ClaimRow

# Why a channel is left out of a claim (Reason-style codes, in GetStatus and the CLI).
EXCEEDS_BALANCE = "claim_exceeds_balance"  # withdrawn or drained below what we charged
BAD_SIGNATURE = "claim_voucher_signature"  # the voucher we hold does not recover to the payer
ABOVE_VOUCHER = "claim_above_voucher"  # charged above the voucher we hold (never by our commits)
REFUSED = "claim_refused"  # the facilitator refused this channel's claim alone
NO_AUTHORIZER = "claim_authorizer_unavailable"  # nobody can sign the ClaimBatch for its receiver authorizer


def unclaimed(channel: Channel) -> int:
    return max(0, channel.charged - channel.mirror.total_claimed)


def claim_row(channel: Channel) -> ClaimRow:
    return ClaimRow(channel.channel_id, channel.charged, channel.mirror.total_claimed, channel.signed_max_claimable)


def voucher_claim(channel: Channel) -> VoucherClaim:
    """The contract's claim row: what we charged, backed by the voucher we hold
    (never the signed ceiling: DESIGN §12)."""
    assert channel.voucher_signature is not None
    return VoucherClaim(
        channel=channel.config,
        max_claimable_amount=str(channel.signed_max_claimable),
        signature=channel.voucher_signature,
        total_claimed=str(channel.charged),
    )


def problem(channel: Channel) -> str | None:
    """Why this channel's claim would revert, as far as our copy tells; None: claim it.
    EXCEEDS_BALANCE is only a suspicion until the chain confirms it (a deposit made
    straight on chain raises the balance without us)."""
    if channel.charged > channel.signed_max_claimable:
        return ABOVE_VOUCHER
    if channel.charged > channel.mirror.balance:
        return EXCEEDS_BALANCE
    config = channel.config
    if int(config.payer_authorizer, 16) != 0 and not voucher_signed(
        config.payer_authorizer,
        config.payer,
        channel.channel_id,
        channel.signed_max_claimable,
        channel.voucher_signature or "0x",
        channel.network,
    ):
        # An ERC-1271 payer (zero payer authorizer) can only be checked on chain.
        return BAD_SIGNATURE
    return None
