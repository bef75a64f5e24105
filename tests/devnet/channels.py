"""Helpers for batch-settlement tests: requirements, a devnet payer paying through the
SDK's batch-settlement client, the claim / settle / refund payloads a server sends, and
the contract calldata the SDK facilitator makes of them, all built with the SDK's own
builders and signers."""

from __future__ import annotations

from typing import Any

from eth_account.signers.local import LocalAccount
from x402 import x402Client
from x402.mechanisms.evm.batch_settlement.authorizer_signer import (
    LocalAuthorizerSigner,
    sign_claim_batch,
    sign_refund,
)
from x402.mechanisms.evm.batch_settlement.client import (
    BatchSettlementEvmScheme,
    BatchSettlementEvmSchemeOptions,
    InMemoryClientChannelStorage,
    create_batch_settlement_eip3009_deposit_payload,
    sign_voucher,
    update_channel_from_settle,
)
from x402.mechanisms.evm.batch_settlement.abi import BATCH_SETTLEMENT_ABI
from x402.mechanisms.evm.batch_settlement.constants import MIN_WITHDRAW_DELAY
from x402.mechanisms.evm.batch_settlement.facilitator.claim import build_voucher_claim_args
from x402.mechanisms.evm.batch_settlement.facilitator.deposit_eip3009 import (
    build_eip3009_deposit_collector_data,
    get_eip3009_deposit_collector_address,
)
from x402.mechanisms.evm.batch_settlement.facilitator.utils import to_contract_channel_config
from x402.mechanisms.evm.batch_settlement.server.channel_manager_common import (
    build_claim_payment_payload,
    build_payment_requirements,
    build_settle_payment_payload,
)
from x402.mechanisms.evm.batch_settlement.types import (
    ChannelConfig,
    DepositPayload,
    EnrichedRefundPayload,
    VoucherClaim,
    VoucherFields,
)
from x402.mechanisms.evm.multicall import encode_contract_call
from x402.mechanisms.evm.signers import EthAccountSigner
from x402.schemas import PaymentPayload, PaymentRequired, PaymentRequirements

from devnet.chain import NETWORK, USDC_ADDRESS
from devnet.wallets import MERCHANT_ADDRESS, RECEIVER_AUTHORIZER_ADDRESS, RECEIVER_AUTHORIZER_KEY, payer_account

PRICE = 1000
DEPOSIT = 10_000
RECEIVER_AUTHORIZER = LocalAuthorizerSigner(RECEIVER_AUTHORIZER_KEY)


def batch_requirements(
    *,
    amount: int = PRICE,
    pay_to: str = MERCHANT_ADDRESS,
    receiver_authorizer: str = RECEIVER_AUTHORIZER_ADDRESS,
    withdraw_delay: int = MIN_WITHDRAW_DELAY,
) -> PaymentRequirements:
    """What a server's 402 offers for batch-settlement on the devnet."""
    return PaymentRequirements(
        scheme="batch-settlement",
        network=NETWORK,
        asset=USDC_ADDRESS,
        amount=str(amount),
        pay_to=pay_to,
        max_timeout_seconds=60,
        extra={
            "receiverAuthorizer": receiver_authorizer,
            "withdrawDelay": withdraw_delay,
            "name": "USDC",
            "version": "2",
        },
    )


class ChannelPayer:
    """A funded devnet payer paying through the SDK's batch-settlement client."""

    def __init__(self, index: int = 0, *, deposit: int = DEPOSIT) -> None:
        self.account: LocalAccount = payer_account(index)
        self.storage = InMemoryClientChannelStorage()
        options = BatchSettlementEvmSchemeOptions(storage=self.storage, deposit_strategy=lambda _context: str(deposit))
        self.scheme = BatchSettlementEvmScheme(EthAccountSigner(self.account), options)
        self.client = x402Client().register(NETWORK, self.scheme)

    @property
    def address(self) -> str:
        return self.account.address

    async def pay(self, requirements: PaymentRequirements) -> PaymentPayload:
        """The client's next payload: a deposit for a new channel, else a voucher."""
        return await self.client.create_payment_payload(PaymentRequired(accepts=[requirements]))

    def deposit(self, requirements: PaymentRequirements, amount: int) -> PaymentPayload:
        """A deposit of any amount, signed with the SDK's deposit builder (the client
        itself caps deposits; a hostile payer need not)."""
        config = self.scheme.build_channel_config(requirements)
        deposit = create_batch_settlement_eip3009_deposit_payload(
            EthAccountSigner(self.account), requirements, config, amount, requirements.amount
        )
        return PaymentPayload(x402_version=2, payload=deposit.to_dict(), accepted=requirements)

    def charged(self, payload: PaymentPayload, requirements: PaymentRequirements, amount: int = PRICE) -> None:
        """Apply a server's receipt (`chargedAmount`) as the client's response hook does."""
        local: dict[str, Any] = {"channel_id": channel_id(payload), "request_amount": requirements.amount}
        if payload.payload["type"] == "deposit":
            local["deposit_amount"] = payload.payload["deposit"]["amount"]
        update_channel_from_settle(self.storage, {"server": {"charged_amount": str(amount)}, "local": local})

    def voucher(self, payload: PaymentPayload, max_claimable: int) -> VoucherFields:
        """A voucher for this payer's channel, signed by the payer."""
        return sign_voucher(EthAccountSigner(self.account), channel_id(payload), max_claimable, NETWORK)


async def settle(devnet: Any, payload: PaymentPayload) -> dict[str, Any]:
    """POST /settle as a server sends claim / settle / refund (its requirements ride in
    payload.accepted); the answer."""
    status, answer = await devnet.settle(payload, payload.accepted)
    assert status == 200
    return answer


async def open_channel(devnet: Any, payer: ChannelPayer) -> PaymentPayload:
    """The payer's first payment, a deposit, settled and charged one price."""
    requirements = batch_requirements()
    payload = await payer.pay(requirements)
    assert payload.payload["type"] == "deposit"
    settled = await settle(devnet, payload)
    assert settled["success"] is True, settled
    payer.charged(payload, requirements)
    return payload


def channel_id(payload: PaymentPayload) -> str:
    return payload.payload["voucher"]["channelId"]


def channel_config(payload: PaymentPayload) -> ChannelConfig:
    return ChannelConfig.from_dict(payload.payload["channelConfig"])


def claim_of(payload: PaymentPayload, total_claimed: int, voucher: VoucherFields | None = None) -> VoucherClaim:
    """A claim row backed by the payload's voucher (or `voucher`)."""
    voucher = voucher or VoucherFields.from_dict(payload.payload["voucher"])
    return VoucherClaim(
        channel=channel_config(payload),
        max_claimable_amount=voucher.max_claimable_amount,
        signature=voucher.signature,
        total_claimed=str(total_claimed),
    )


def contract_call(function: str, *args: Any) -> bytes:
    """Calldata for one of the x402BatchSettlement functions."""
    return encode_contract_call(BATCH_SETTLEMENT_ABI, function, *args)


def deposit_call(payload: PaymentPayload) -> bytes:
    """deposit(config, amount, collector, collectorData) for a deposit payload, as the
    SDK facilitator sends it."""
    deposit = DepositPayload.from_dict(payload.payload)
    return contract_call(
        "deposit",
        to_contract_channel_config(channel_config(payload)),
        int(deposit.deposit.amount),
        get_eip3009_deposit_collector_address(),
        build_eip3009_deposit_collector_data(deposit),
    )


def claim_call(claims: list[VoucherClaim], signer: Any = RECEIVER_AUTHORIZER) -> bytes:
    """claimWithSignature(claims, ClaimBatch signature by `signer`)."""
    signature = bytes.fromhex(sign_claim_batch(signer, claims, NETWORK).removeprefix("0x"))
    return contract_call("claimWithSignature", build_voucher_claim_args(claims), signature)


def server_requirements() -> PaymentRequirements:
    """The requirements a server sends with claim / settle / refund requests."""
    return build_payment_requirements(MERCHANT_ADDRESS, USDC_ADDRESS, NETWORK)


def claim_request(claims: list[VoucherClaim], signer: Any = RECEIVER_AUTHORIZER) -> PaymentPayload:
    """/settle `type: claim`, the ClaimBatch signed by `signer` (None: left to the facilitator)."""
    signature = None if signer is None else sign_claim_batch(signer, claims, NETWORK)
    return build_claim_payment_payload(claims, server_requirements(), signature)


def settle_request(receiver: str = MERCHANT_ADDRESS) -> PaymentPayload:
    return build_settle_payment_payload(server_requirements(), receiver, USDC_ADDRESS)


def refund_request(
    payload: PaymentPayload,
    voucher: VoucherFields,
    *,
    amount: int,
    nonce: int,
    claims: tuple[VoucherClaim, ...] = (),
    signer: Any = RECEIVER_AUTHORIZER,
) -> PaymentPayload:
    """/settle `type: refund` as a server completes it: amount, refund nonce, claims and
    the receiver authorizer's signatures (None: left to the facilitator)."""
    refund = EnrichedRefundPayload(
        channel_config=channel_config(payload),
        voucher=voucher,
        amount=str(amount),
        refund_nonce=str(nonce),
        claims=list(claims),
        refund_authorizer_signature=(
            None if signer is None else sign_refund(signer, channel_id(payload), amount, nonce, NETWORK)
        ),
        claim_authorizer_signature=(
            None if signer is None or not claims else sign_claim_batch(signer, list(claims), NETWORK)
        ),
    )
    return PaymentPayload(x402_version=2, payload=refund.to_dict(), accepted=server_requirements())
