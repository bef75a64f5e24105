"""A batch-settlement payment as the client sends it (deposit, voucher or refund),
checked strictly, and the binding's verification rules a server enforces on it:
the config hashes to the channel id; token, receiver, receiver authorizer and
withdraw delay are what the route offered; the voucher is signed by the payer
authorizer; it stays within the channel's balance and at least the price above
what was already claimed (the SDK's facilitator checks only "above claimed").

Every refusal carries the binding's error code."""

from __future__ import annotations

import functools
from dataclasses import astuple, dataclass
from typing import Any

from eth_utils import to_checksum_address
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from x402.mechanisms.evm.batch_settlement import errors as codes
from x402.mechanisms.evm.batch_settlement.constants import MAX_WITHDRAW_DELAY, MIN_WITHDRAW_DELAY
from x402.mechanisms.evm.batch_settlement.facilitator.utils import verify_batch_settlement_voucher_typed_data
from x402.mechanisms.evm.batch_settlement.types import ChannelConfig
from x402.mechanisms.evm.batch_settlement.utils import channel_id_binding_error
from x402.mechanisms.evm.utils import get_evm_chain_id
from x402.schemas import PaymentRequirements

from ...constants import Reason
from ..codec import Envelope
from ..errors import PaymentError
from ..routes import PricedRoute
from .state import DEPOSIT, REFUND, VOUCHER, Mirror
from .terms import ChannelTerms

_ADDRESS = r"^0x[0-9a-fA-F]{40}$"
_BYTES32 = r"^0x[0-9a-fA-F]{64}$"
_SIGNATURE = r"^0x[0-9a-fA-F]{130,8192}$"
_UINT128 = r"^[0-9]{1,39}$"
_UINT256 = r"^[0-9]{1,78}$"
_ZERO_ADDRESS = "0x" + "0" * 40
_UINT128_MAX = 2**128 - 1


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, strict=True)


class _Config(_Strict):
    payer: str = Field(pattern=_ADDRESS)
    payer_authorizer: str = Field(alias="payerAuthorizer", pattern=_ADDRESS)
    receiver: str = Field(pattern=_ADDRESS)
    receiver_authorizer: str = Field(alias="receiverAuthorizer", pattern=_ADDRESS)
    token: str = Field(pattern=_ADDRESS)
    withdraw_delay: int = Field(alias="withdrawDelay", ge=0, lt=2**40)
    salt: str = Field(pattern=_BYTES32)


class _Voucher(_Strict):
    channel_id: str = Field(alias="channelId", pattern=_BYTES32)
    max_claimable_amount: str = Field(alias="maxClaimableAmount", pattern=_UINT128)
    signature: str = Field(pattern=_SIGNATURE)


class _Erc3009(_Strict):
    valid_after: str = Field(alias="validAfter", pattern=_UINT256)
    valid_before: str = Field(alias="validBefore", pattern=_UINT256)
    salt: str = Field(pattern=_BYTES32)
    signature: str = Field(pattern=_SIGNATURE)


class _DepositAuthorization(BaseModel):
    # Permit2's shape is the facilitator's to judge; one of the two must be there.
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    erc3009: _Erc3009 | None = Field(None, alias="erc3009Authorization")
    permit2: dict[str, Any] | None = Field(None, alias="permit2Authorization")


class _Deposit(_Strict):
    amount: str = Field(pattern=_UINT128)
    authorization: _DepositAuthorization


class _Payload(_Strict):
    type: str
    channel_config: _Config = Field(alias="channelConfig")
    voucher: _Voucher
    deposit: _Deposit | None = None
    amount: str | None = Field(None, pattern=_UINT128)  # refund: the part to give back


_MALFORMED = {DEPOSIT: codes.ERR_DEPOSIT_PAYLOAD, VOUCHER: codes.ERR_VOUCHER_PAYLOAD, REFUND: codes.ERR_REFUND_PAYLOAD}


@dataclass(frozen=True)
class ChannelPayment:
    """One decoded batch-settlement payment."""

    kind: str  # deposit | voucher | refund
    config: ChannelConfig
    channel_id: str  # lowercase
    max_claimable: int
    signature: str
    deposit: int  # the deposit's amount; 0 unless kind is deposit
    refund_amount: int | None  # a refund's requested part; None: all that is left
    envelope: Envelope

    @property
    def payer(self) -> str:
        return self.config.payer

    @property
    def accepted(self) -> PaymentRequirements:
        return self.envelope.payload.accepted


def decode(envelope: Envelope) -> ChannelPayment:
    """The envelope's payload as a channel payment; 400 with the binding's code otherwise."""
    raw = envelope.payload.payload
    kind = raw.get("type") if isinstance(raw, dict) else None
    if envelope.version != 2 or kind not in _MALFORMED:
        raise PaymentError(codes.ERR_INVALID_PAYLOAD_TYPE, "a batch-settlement payment is a v2 deposit, voucher or refund", 400)
    try:
        payload = _Payload.model_validate(raw)
    except (ValidationError, TypeError, ValueError) as exc:
        raise PaymentError(_MALFORMED[kind], f"the {kind} payload is malformed", 400) from exc
    deposit = payload.deposit
    if (kind == DEPOSIT) != (deposit is not None) or (payload.amount is not None and kind != REFUND):
        raise PaymentError(_MALFORMED[kind], f"the {kind} payload is malformed", 400)
    if deposit is not None and (deposit.authorization.erc3009 is None) == (deposit.authorization.permit2 is None):
        raise PaymentError(codes.ERR_DEPOSIT_PAYLOAD, "a deposit carries exactly one token authorization", 400)
    config = payload.channel_config
    return ChannelPayment(
        kind=kind,
        config=ChannelConfig(
            payer=to_checksum_address(config.payer),
            payer_authorizer=to_checksum_address(config.payer_authorizer),
            receiver=to_checksum_address(config.receiver),
            receiver_authorizer=to_checksum_address(config.receiver_authorizer),
            token=to_checksum_address(config.token),
            withdraw_delay=config.withdraw_delay,
            salt=config.salt.lower(),
        ),
        channel_id=payload.voucher.channel_id.lower(),
        max_claimable=int(payload.voucher.max_claimable_amount),
        signature=payload.voucher.signature,
        deposit=int(deposit.amount) if deposit is not None else 0,
        refund_amount=int(payload.amount) if payload.amount is not None else None,
        envelope=envelope,
    )


@functools.lru_cache(maxsize=4096)
def _binding_problem(config: tuple[Any, ...], channel_id: str, network: str) -> str | None:
    """The SDK's channel id check (an EIP-712 hash, about a millisecond), once per
    channel: every request of a channel brings the same config and id."""
    return channel_id_binding_error(ChannelConfig(*config), channel_id, network)


def _refuse(reason: str, message: str) -> PaymentError:
    return PaymentError(reason, message, status=402)


def _same(a: str, b: str) -> bool:
    return a.lower() == b.lower()


def check_terms(payment: ChannelPayment, route: PricedRoute, terms: ChannelTerms) -> None:
    """The binding's rules 1-5 against what this route offered, before anyone else
    sees the payment; and the accepted requirements must be the route's own."""
    accepted, config = payment.accepted, payment.config
    if accepted.network != route.network:
        raise _refuse(codes.ERR_NETWORK_MISMATCH, f"this route is paid on {route.network}")
    problem = _binding_problem(astuple(config), payment.channel_id, route.network)
    if problem:
        raise _refuse(problem, "the channel config does not hash to the voucher's channel id")
    if not _same(config.token, route.asset):
        raise _refuse(codes.ERR_TOKEN_MISMATCH, f"this route is paid in {route.asset}")
    if not _same(config.receiver, route.pay_to):
        raise _refuse(codes.ERR_RECEIVER_MISMATCH, "the channel pays another receiver")
    if not _same(config.receiver_authorizer, terms.receiver_authorizer):
        raise _refuse(codes.ERR_RECEIVER_AUTHORIZER_MISMATCH, "the channel names another receiver authorizer")
    if not MIN_WITHDRAW_DELAY <= config.withdraw_delay <= MAX_WITHDRAW_DELAY:
        raise _refuse(codes.ERR_WITHDRAW_DELAY_OUT_OF_RANGE, "the withdraw delay is outside 15 min - 30 days")
    if config.withdraw_delay != terms.withdraw_delay:
        raise _refuse(codes.ERR_WITHDRAW_DELAY_MISMATCH, f"this route's channels have a {terms.withdraw_delay} s withdraw delay")
    if int(accepted.amount) != route.amount or not _same(accepted.pay_to, route.pay_to) or not _same(accepted.asset, route.asset):
        raise _refuse(Reason.REQUIREMENTS_MISMATCH, "the accepted requirements are not the route's offer")


def local_verification_allowed(payment: ChannelPayment) -> bool:
    """A voucher signed by an EOA payer authorizer can be checked by ECDSA recovery
    here; a zero payer authorizer means an ERC-1271 wallet, which only a
    facilitator (an RPC call) can check."""
    return payment.kind == VOUCHER and int(payment.config.payer_authorizer, 16) != 0


def check_signature(payment: ChannelPayment, network: str) -> None:
    """Rule 6: the EIP-712 voucher digest recovers to the payer authorizer."""
    config = payment.config
    if not voucher_signed(config.payer_authorizer, config.payer, payment.channel_id, payment.max_claimable, payment.signature, network):
        raise _refuse(codes.ERR_INVALID_VOUCHER_SIGNATURE, "the voucher is not signed by the payer authorizer")


@functools.lru_cache(maxsize=8192)
def voucher_signed(
    payer_authorizer: str, payer: str, channel_id: str, max_claimable: int, signature: str, network: str
) -> bool:
    """ECDSA recovery of a voucher signed by an EOA payer authorizer (non-zero); a
    voucher is recovered once per process (the collector checks the ones it holds)."""
    try:
        return verify_batch_settlement_voucher_typed_data(
            None,  # type: ignore[arg-type]  # unused on the ECDSA path (non-zero payer authorizer)
            channel_id=channel_id,
            max_claimable_amount=str(max_claimable),
            payer_authorizer=payer_authorizer,
            payer=payer,
            signature=signature,
            chain_id=get_evm_chain_id(network),
        )
    except (ValueError, TypeError):  # a signature that is not hex at all
        return False


def check_covered(payment: ChannelPayment, mirror: Mirror, amount: int) -> None:
    """Rules 7, 9 and 10 against the channel's contract fields (before a deposit in
    the payment lands): it holds funds; the voucher is within the balance (plus the
    deposit); a paid voucher is at least `amount` above what was claimed, a refund
    voucher not below it."""
    balance = mirror.balance + payment.deposit
    if balance == 0:
        raise _refuse(codes.ERR_CHANNEL_NOT_FOUND, "the channel holds no funds")
    if payment.max_claimable > min(balance, _UINT128_MAX):
        raise _refuse(codes.ERR_CUMULATIVE_EXCEEDS_BALANCE, "the voucher exceeds the channel's balance")
    floor = mirror.total_claimed + (0 if payment.kind == REFUND else amount)
    if payment.max_claimable < floor:
        raise _refuse(codes.ERR_CUMULATIVE_AMOUNT_BELOW_CLAIMED, "the voucher is below what was already claimed")
