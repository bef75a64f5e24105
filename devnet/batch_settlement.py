"""The x402BatchSettlement contract and its ERC3009DepositCollector, simulated at their
canonical addresses on the devnet chain.

The rules follow the reference contract: channels keyed by `channelId` (the EIP-712 hash
of the ChannelConfig under the "x402 Batch Settlement" domain, bound to the chain id and
the contract address); deposits pulled through the collector with the token's
`receiveWithAuthorization`; `claim` / `claimWithSignature` raise `totalClaimed` without
moving tokens; `settle(receiver, token)` sweeps what was claimed; cooperative refunds bump
`refundNonce` before the amount is capped and shrink or cancel a pending timed
withdrawal; `initiateWithdraw` / `finalizeWithdraw` run the payer's escape hatch after
`withdrawDelay`. Reverts carry the contract's custom errors (`ClaimExceedsBalance()`,
...), events are ABI-encoded as the contract emits them, and signatures are recovered
for real with the SDK's typed-data definitions.

A call runs inside the chain's `Execution`, so a revert anywhere (a bad row in a claim
batch, a failed token pull in a deposit) leaves every balance and counter as it was.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

from eth_abi import encode
from eth_account.messages import SignableMessage, encode_typed_data
from eth_utils import function_signature_to_4byte_selector, keccak, to_checksum_address
from x402.mechanisms.evm.batch_settlement.abi import BATCH_SETTLEMENT_ABI, CHANNEL_CONFIG_COMPONENTS
from x402.mechanisms.evm.batch_settlement.constants import (
    BATCH_SETTLEMENT_ADDRESS,
    CLAIM_BATCH_TYPES,
    ERC3009_DEPOSIT_COLLECTOR_ADDRESS,
    MAX_WITHDRAW_DELAY,
    MIN_WITHDRAW_DELAY,
    REFUND_TYPES,
    VOUCHER_TYPES,
)
from x402.mechanisms.evm.batch_settlement.types import ChannelConfig
from x402.mechanisms.evm.batch_settlement.utils import compute_channel_id, get_batch_settlement_eip712_domain

from .evm import ZERO_ADDRESS, Execution, Log, Revert, abi_decode, abi_type, eip712_digest, recover, try_recover

_UINT128_MAX = 2**128 - 1


def _event(name: str, *inputs: tuple[str, str, bool]) -> dict[str, Any]:
    return {
        "type": "event",
        "name": name,
        "anonymous": False,
        "inputs": [
            {"name": field, "type": kind, "indexed": indexed}
            | ({"components": CHANNEL_CONFIG_COMPONENTS} if kind == "tuple" else {})
            for field, kind, indexed in inputs
        ],
    }


# The contract's events, in web3's JSON ABI form (the SDK's ABI carries only Settled).
EVENTS_ABI: list[dict[str, Any]] = [
    _event("ChannelCreated", ("channelId", "bytes32", True), ("config", "tuple", False)),
    _event("ChannelClosed", ("channelId", "bytes32", True), ("config", "tuple", False)),
    _event(
        "Deposited",
        ("channelId", "bytes32", True),
        ("sender", "address", True),
        ("amount", "uint128", False),
        ("newBalance", "uint128", False),
    ),
    _event(
        "Claimed",
        ("channelId", "bytes32", True),
        ("sender", "address", True),
        ("claimAmount", "uint128", False),
        ("newTotalClaimed", "uint128", False),
    ),
    _event(
        "Settled",
        ("receiver", "address", True),
        ("token", "address", True),
        ("sender", "address", True),
        ("amount", "uint128", False),
    ),
    _event("Refunded", ("channelId", "bytes32", True), ("sender", "address", True), ("amount", "uint128", False)),
    _event(
        "WithdrawInitiated",
        ("channelId", "bytes32", True),
        ("amount", "uint128", False),
        ("finalizeAfter", "uint40", False),
    ),
    _event(
        "WithdrawFinalized",
        ("channelId", "bytes32", True),
        ("sender", "address", True),
        ("amount", "uint128", False),
    ),
]

_EVENTS = {entry["name"]: entry for entry in EVENTS_ABI}


def event_topic(name: str) -> str:
    """topic0 of one of the contract's events, e.g. event_topic("Claimed")."""
    types = ",".join(abi_type(item) for item in _EVENTS[name]["inputs"])
    return "0x" + keccak(text=f"{name}({types})").hex()


class Host(Protocol):
    """The chain as these contracts see it: its id, its code, and its one token."""

    chain_id: int
    token: str

    def code_at(self, address: str) -> bytes: ...

    def token_balance(self, holder: str) -> int: ...

    def token_transfer(self, execution: Execution, holder: str, to: str, value: int) -> None: ...

    def token_receive_with_authorization(
        self,
        execution: Execution,
        caller: str,
        payer: str,
        value: int,
        valid_after: int,
        valid_before: int,
        nonce: bytes,
        signature: bytes,
    ) -> None: ...


@dataclass(frozen=True)
class _ChannelState:
    balance: int = 0
    total_claimed: int = 0


@dataclass(frozen=True)
class _Withdrawal:
    amount: int = 0
    initiated_at: int = 0  # block time it was started; 0: none pending


@dataclass(frozen=True)
class ReceiverTotals:
    total_claimed: int = 0
    total_settled: int = 0


@dataclass(frozen=True)
class Channel:
    """One channel's on-chain state, as the contract's read functions report it."""

    channel_id: str
    balance: int
    total_claimed: int
    withdraw_amount: int
    withdraw_requested_at: int
    refund_nonce: int


@dataclass(frozen=True)
class _Config:
    """A decoded ChannelConfig with checksummed addresses."""

    payer: str
    payer_authorizer: str
    receiver: str
    receiver_authorizer: str
    token: str
    withdraw_delay: int
    salt: bytes

    @classmethod
    def decode(cls, value: tuple[Any, ...]) -> _Config:
        payer, payer_authorizer, receiver, receiver_authorizer, token, withdraw_delay, salt = value
        return cls(
            to_checksum_address(payer),
            to_checksum_address(payer_authorizer),
            to_checksum_address(receiver),
            to_checksum_address(receiver_authorizer),
            to_checksum_address(token),
            withdraw_delay,
            salt,
        )

    def as_tuple(self) -> tuple[Any, ...]:
        return (
            self.payer,
            self.payer_authorizer,
            self.receiver,
            self.receiver_authorizer,
            self.token,
            self.withdraw_delay,
            self.salt,
        )

    def sdk(self) -> ChannelConfig:
        return ChannelConfig(
            payer=self.payer,
            payer_authorizer=self.payer_authorizer,
            receiver=self.receiver,
            receiver_authorizer=self.receiver_authorizer,
            token=self.token,
            withdraw_delay=self.withdraw_delay,
            salt="0x" + self.salt.hex(),
        )


@dataclass(frozen=True)
class _Claim:
    """One VoucherClaim row."""

    config: _Config
    max_claimable: int
    signature: bytes
    total_claimed: int

    @classmethod
    def decode(cls, value: tuple[Any, ...]) -> _Claim:
        (config, max_claimable), signature, total_claimed = value
        return cls(_Config.decode(config), max_claimable, signature, total_claimed)


@dataclass(frozen=True)
class _Function:
    name: str
    inputs: list[str]
    outputs: list[str]


def _functions(abi: list[dict[str, Any]]) -> dict[bytes, _Function]:
    table = {}
    for entry in abi:
        if entry.get("type") != "function":
            continue
        inputs = [abi_type(item) for item in entry["inputs"]]
        outputs = [abi_type(item) for item in entry.get("outputs", [])]
        selector = function_signature_to_4byte_selector(f"{entry['name']}({','.join(inputs)})")
        table[selector] = _Function(entry["name"], inputs, outputs)
    return table


_SETTLEMENT_FUNCTIONS = _functions(BATCH_SETTLEMENT_ABI)
_COLLECTOR_FUNCTIONS = _functions(
    [
        {
            "type": "function",
            "name": "collect",
            "inputs": [
                {"name": "payer", "type": "address"},
                {"name": "token", "type": "address"},
                {"name": "amount", "type": "uint256"},
                {"name": "channelId", "type": "bytes32"},
                {"name": "collectorData", "type": "bytes"},
            ],
            "outputs": [],
        },
        {"type": "function", "name": "x402BatchSettlement", "inputs": [], "outputs": [{"type": "address"}]},
    ]
)


def _dispatch(
    table: dict[bytes, _Function],
    handlers: dict[str, Callable[..., tuple[Any, ...]]],
    execution: Execution,
    caller: str,
    data: bytes,
) -> bytes:
    function = table.get(bytes(data[:4]))
    if function is None:
        # No fallback function: the EVM reverts without data.
        raise Revert("function selector was not recognized", b"")
    args = abi_decode(function.inputs, bytes(data[4:]))
    return encode(function.outputs, list(handlers[function.name](execution, caller, *args)))


class DepositCollector:
    """ERC3009DepositCollector: pulls a deposit with the token's receiveWithAuthorization
    (the nonce is keccak256(abi.encode(channelId, salt))) and forwards it to the
    settlement contract, which alone may call it."""

    address = ERC3009_DEPOSIT_COLLECTOR_ADDRESS

    def __init__(self, host: Host) -> None:
        self._host = host
        self._handlers: dict[str, Callable[..., tuple[Any, ...]]] = {
            "collect": self._collect_call,
            "x402BatchSettlement": lambda execution, caller: (BATCH_SETTLEMENT_ADDRESS,),
        }

    def run(self, execution: Execution, caller: str, data: bytes) -> bytes:
        return _dispatch(_COLLECTOR_FUNCTIONS, self._handlers, execution, caller, data)

    def _collect_call(self, execution: Execution, caller: str, *args: Any) -> tuple[Any, ...]:
        payer, token, amount, channel_id, collector_data = args
        payer, token = to_checksum_address(payer), to_checksum_address(token)
        self.collect(execution, caller, payer, token, amount, channel_id, collector_data)
        return ()

    def collect(
        self,
        execution: Execution,
        caller: str,
        payer: str,
        token: str,
        amount: int,
        channel_id: bytes,
        collector_data: bytes,
    ) -> None:
        if caller != BATCH_SETTLEMENT_ADDRESS:
            raise Revert.error("OnlyX402BatchSettlement")
        valid_after, valid_before, salt, signature = abi_decode(
            ["uint256", "uint256", "uint256", "bytes"], collector_data
        )
        nonce = keccak(encode(["bytes32", "uint256"], [channel_id, salt]))
        _require_token(self._host, token)
        self._host.token_receive_with_authorization(
            execution, self.address, payer, amount, valid_after, valid_before, nonce, signature
        )
        self._host.token_transfer(execution, self.address, BATCH_SETTLEMENT_ADDRESS, amount)


class BatchSettlement:
    """x402BatchSettlement: channel escrow, claims, settlement, refunds, withdrawals."""

    address = BATCH_SETTLEMENT_ADDRESS

    def __init__(self, host: Host, collector: DepositCollector) -> None:
        self._host = host
        self._collector = collector
        self._channels: dict[bytes, _ChannelState] = {}
        self._refund_nonces: dict[bytes, int] = {}
        self._withdrawals: dict[bytes, _Withdrawal] = {}
        self._receivers: dict[tuple[str, str], ReceiverTotals] = {}
        self._domain = get_batch_settlement_eip712_domain(host.chain_id)
        self._handlers: dict[str, Callable[..., tuple[Any, ...]]] = {
            "multicall": self._multicall,
            "deposit": self._deposit,
            "claim": self._claim,
            "claimWithSignature": self._claim_with_signature,
            "settle": self._settle,
            "initiateWithdraw": self._initiate_withdraw,
            "finalizeWithdraw": self._finalize_withdraw,
            "refund": self._refund,
            "refundWithSignature": self._refund_with_signature,
            "getChannelId": lambda execution, caller, config: (self._channel_id(_Config.decode(config)),),
            "channels": self._channels_view,
            "pendingWithdrawals": self._pending_withdrawals_view,
            "receivers": self._receivers_view,
            "refundNonce": lambda execution, caller, channel_id: (self._refund_nonces.get(channel_id, 0),),
            "getVoucherDigest": lambda execution, caller, *args: (eip712_digest(self._voucher(*args)),),
            "getRefundDigest": lambda execution, caller, *args: (eip712_digest(self._refund_message(*args)),),
            "getClaimBatchDigest": lambda execution, caller, rows: (
                eip712_digest(self._claim_batch([_Claim.decode(row) for row in rows])),
            ),
        }

    def run(self, execution: Execution, caller: str, data: bytes) -> bytes:
        return _dispatch(_SETTLEMENT_FUNCTIONS, self._handlers, execution, caller, data)

    # -- reads for the chain's own callers (lock held) -----------------------------------

    def channel(self, channel_id: bytes) -> Channel:
        state = self._channels.get(channel_id, _ChannelState())
        withdrawal = self._withdrawals.get(channel_id, _Withdrawal())
        return Channel(
            channel_id="0x" + channel_id.hex(),
            balance=state.balance,
            total_claimed=state.total_claimed,
            withdraw_amount=withdrawal.amount,
            withdraw_requested_at=withdrawal.initiated_at,
            refund_nonce=self._refund_nonces.get(channel_id, 0),
        )

    def receiver(self, receiver: str, token: str) -> ReceiverTotals:
        return self._receivers.get((to_checksum_address(receiver), to_checksum_address(token)), ReceiverTotals())

    # -- views ---------------------------------------------------------------------------

    def _channels_view(self, execution: Execution, caller: str, channel_id: bytes) -> tuple[Any, ...]:
        state = self._channels.get(channel_id, _ChannelState())
        return state.balance, state.total_claimed

    def _pending_withdrawals_view(self, execution: Execution, caller: str, channel_id: bytes) -> tuple[Any, ...]:
        withdrawal = self._withdrawals.get(channel_id, _Withdrawal())
        return withdrawal.amount, withdrawal.initiated_at

    def _receivers_view(self, execution: Execution, caller: str, receiver: str, token: str) -> tuple[Any, ...]:
        totals = self.receiver(receiver, token)
        return totals.total_claimed, totals.total_settled

    # -- multicall -----------------------------------------------------------------------

    def _multicall(self, execution: Execution, caller: str, calls: list[bytes]) -> tuple[Any, ...]:
        # Each call runs as if sent by the same caller; any revert undoes the whole batch.
        return ([self.run(execution, caller, call) for call in calls],)

    # -- deposits ------------------------------------------------------------------------

    def _deposit(
        self,
        execution: Execution,
        caller: str,
        config_value: tuple[Any, ...],
        amount: int,
        collector: str,
        collector_data: bytes,
    ) -> tuple[Any, ...]:
        config = _Config.decode(config_value)
        if ZERO_ADDRESS in (config.payer, config.receiver, config.receiver_authorizer, config.token):
            raise Revert.error("InvalidChannel")
        if not MIN_WITHDRAW_DELAY <= config.withdraw_delay <= MAX_WITHDRAW_DELAY:
            raise Revert.error("WithdrawDelayOutOfRange")
        if amount == 0:
            raise Revert.error("ZeroDeposit")
        collector = to_checksum_address(collector)
        if collector == ZERO_ADDRESS:
            raise Revert.error("InvalidCollector")

        channel_id = self._channel_id(config)
        state = self._channels.get(channel_id, _ChannelState())
        if amount > _UINT128_MAX - state.balance:
            raise Revert.error("DepositOverflow")
        state = replace(state, balance=state.balance + amount)
        execution.write(self._channels, channel_id, state)

        _require_token(self._host, config.token)
        before = self._host.token_balance(self.address)
        if collector != self._collector.address:
            # No other collector is deployed here: a call to an address without code.
            raise Revert("call to a non-contract collector", b"")
        self._collector.collect(execution, self.address, config.payer, config.token, amount, channel_id, collector_data)
        if self._host.token_balance(self.address) != before + amount:
            raise Revert.error("DepositCollectionFailed")

        if state.balance == amount and state.total_claimed == 0:
            self._emit(execution, "ChannelCreated", channel_id, config.as_tuple())
        self._emit(execution, "Deposited", channel_id, caller, amount, state.balance)
        return ()

    # -- claims and settlement -----------------------------------------------------------

    def _claim(self, execution: Execution, caller: str, rows: list[tuple[Any, ...]]) -> tuple[Any, ...]:
        if not rows:
            raise Revert.error("EmptyBatch")
        for claim in map(_Claim.decode, rows):
            if caller not in (claim.config.receiver_authorizer, claim.config.receiver):
                raise Revert.error("NotAuthorizedToClaim")
            self._process_claim(execution, caller, claim)
        return ()

    def _claim_with_signature(
        self, execution: Execution, caller: str, rows: list[tuple[Any, ...]], signature: bytes
    ) -> tuple[Any, ...]:
        if not rows:
            raise Revert.error("EmptyBatch")
        claims = [_Claim.decode(row) for row in rows]
        authorizer = claims[0].config.receiver_authorizer
        if not self._is_valid_signature_now(authorizer, self._claim_batch(claims), signature):
            raise Revert.error("InvalidSignature")
        for claim in claims:
            if claim.config.receiver_authorizer != authorizer:
                raise Revert.error("NotReceiverAuthorizer")
            self._process_claim(execution, caller, claim)
        return ()

    def _process_claim(self, execution: Execution, caller: str, claim: _Claim) -> None:
        channel_id = self._channel_id(claim.config)
        state = self._channels.get(channel_id, _ChannelState())
        if claim.total_claimed <= state.total_claimed:
            return  # cumulative: an old or repeated claim is a no-op
        if claim.total_claimed > claim.max_claimable:
            raise Revert.error("ClaimExceedsCeiling")
        if claim.total_claimed > state.balance:
            raise Revert.error("ClaimExceedsBalance")

        voucher = self._voucher(channel_id, claim.max_claimable)
        config = claim.config
        if config.payer_authorizer != ZERO_ADDRESS:
            if recover(voucher, claim.signature) != config.payer_authorizer:
                raise Revert.error("InvalidSignature")
        elif not self._is_valid_signature_now(config.payer, voucher, claim.signature):
            raise Revert.error("InvalidSignature")

        delta = claim.total_claimed - state.total_claimed
        execution.write(self._channels, channel_id, replace(state, total_claimed=claim.total_claimed))
        key = (config.receiver, config.token)
        totals = self._receivers.get(key, ReceiverTotals())
        execution.write(self._receivers, key, replace(totals, total_claimed=totals.total_claimed + delta))
        self._emit(execution, "Claimed", channel_id, caller, delta, claim.total_claimed)

    def _settle(self, execution: Execution, caller: str, receiver: str, token: str) -> tuple[Any, ...]:
        key = (to_checksum_address(receiver), to_checksum_address(token))
        totals = self._receivers.get(key, ReceiverTotals())
        amount = totals.total_claimed - totals.total_settled
        if amount == 0:
            return ()
        execution.write(self._receivers, key, replace(totals, total_settled=totals.total_claimed))
        _require_token(self._host, key[1])
        self._host.token_transfer(execution, self.address, key[0], amount)
        self._emit(execution, "Settled", key[0], key[1], caller, amount)
        return ()

    # -- timed withdrawal ----------------------------------------------------------------

    def _initiate_withdraw(
        self, execution: Execution, caller: str, config_value: tuple[Any, ...], amount: int
    ) -> tuple[Any, ...]:
        config = _Config.decode(config_value)
        if caller not in (config.payer, config.payer_authorizer):
            raise Revert.error("InvalidChannel")
        if amount == 0:
            raise Revert.error("NothingToWithdraw")
        channel_id = self._channel_id(config)
        if self._withdrawals.get(channel_id, _Withdrawal()).initiated_at != 0:
            raise Revert.error("WithdrawalAlreadyPending")
        state = self._channels.get(channel_id, _ChannelState())
        if amount > state.balance - state.total_claimed:
            raise Revert.error("WithdrawAmountExceedsAvailable")
        execution.write(self._withdrawals, channel_id, _Withdrawal(amount, execution.timestamp))
        self._emit(execution, "WithdrawInitiated", channel_id, amount, execution.timestamp + config.withdraw_delay)
        return ()

    def _finalize_withdraw(self, execution: Execution, caller: str, config_value: tuple[Any, ...]) -> tuple[Any, ...]:
        config = _Config.decode(config_value)
        if caller not in (config.payer, config.payer_authorizer):
            raise Revert.error("NotAuthorizedToFinalizeWithdraw")
        channel_id = self._channel_id(config)
        withdrawal = self._withdrawals.get(channel_id, _Withdrawal())
        if withdrawal.initiated_at == 0:
            raise Revert.error("WithdrawalNotPending")
        if execution.timestamp < withdrawal.initiated_at + config.withdraw_delay:
            raise Revert.error("WithdrawDelayNotElapsed")

        state = self._channels.get(channel_id, _ChannelState())
        amount = min(withdrawal.amount, state.balance - state.total_claimed)
        execution.write(self._withdrawals, channel_id, _Withdrawal())
        state = replace(state, balance=state.balance - amount)
        execution.write(self._channels, channel_id, state)
        self._emit(execution, "WithdrawFinalized", channel_id, caller, amount)
        if state.balance == 0 and state.total_claimed == 0:
            self._emit(execution, "ChannelClosed", channel_id, config.as_tuple())
        if amount > 0:
            _require_token(self._host, config.token)
            self._host.token_transfer(execution, self.address, config.payer, amount)
        return ()

    # -- cooperative refund --------------------------------------------------------------

    def _refund(self, execution: Execution, caller: str, config_value: tuple[Any, ...], amount: int) -> tuple[Any, ...]:
        config = _Config.decode(config_value)
        if caller not in (config.receiver_authorizer, config.receiver):
            raise Revert.error("NotAuthorizedToRefund")
        self._execute_refund(execution, caller, config, amount)
        return ()

    def _refund_with_signature(
        self,
        execution: Execution,
        caller: str,
        config_value: tuple[Any, ...],
        amount: int,
        nonce: int,
        signature: bytes,
    ) -> tuple[Any, ...]:
        config = _Config.decode(config_value)
        channel_id = self._channel_id(config)
        if nonce != self._refund_nonces.get(channel_id, 0):
            raise Revert.error("InvalidRefundNonce")
        refund = self._refund_message(channel_id, nonce, amount)
        if not self._is_valid_signature_now(config.receiver_authorizer, refund, signature):
            raise Revert.error("InvalidSignature")
        self._execute_refund(execution, caller, config, amount)
        return ()

    def _execute_refund(self, execution: Execution, caller: str, config: _Config, amount: int) -> None:
        if amount == 0:
            raise Revert.error("ZeroRefund")
        channel_id = self._channel_id(config)
        # The nonce moves first: even a refund that finds nothing to return uses it up.
        execution.write(self._refund_nonces, channel_id, self._refund_nonces.get(channel_id, 0) + 1)

        state = self._channels.get(channel_id, _ChannelState())
        refunded = min(amount, state.balance - state.total_claimed)
        if refunded == 0:
            return
        state = replace(state, balance=state.balance - refunded)
        execution.write(self._channels, channel_id, state)

        withdrawal = self._withdrawals.get(channel_id, _Withdrawal())
        if withdrawal.initiated_at != 0:
            # A pending timed withdrawal shrinks by what the refund returned, or ends.
            remaining = withdrawal.amount - refunded
            execution.write(
                self._withdrawals, channel_id, replace(withdrawal, amount=remaining) if remaining > 0 else _Withdrawal()
            )

        self._emit(execution, "Refunded", channel_id, caller, refunded)
        if state.balance == 0 and state.total_claimed == 0:
            self._emit(execution, "ChannelClosed", channel_id, config.as_tuple())
        _require_token(self._host, config.token)
        self._host.token_transfer(execution, self.address, config.payer, refunded)

    # -- hashing and signatures ----------------------------------------------------------

    def _channel_id(self, config: _Config) -> bytes:
        return bytes.fromhex(compute_channel_id(config.sdk(), self._host.chain_id).removeprefix("0x"))

    def _typed(self, types: dict[str, list[dict[str, str]]], message: dict[str, Any]) -> SignableMessage:
        return encode_typed_data(domain_data=self._domain, message_types=types, message_data=message)

    def _voucher(self, channel_id: bytes, max_claimable: int) -> SignableMessage:
        return self._typed(VOUCHER_TYPES, {"channelId": channel_id, "maxClaimableAmount": max_claimable})

    def _refund_message(self, channel_id: bytes, nonce: int, amount: int) -> SignableMessage:
        return self._typed(REFUND_TYPES, {"channelId": channel_id, "nonce": nonce, "amount": amount})

    def _claim_batch(self, claims: list[_Claim]) -> SignableMessage:
        entries = [
            {
                "channelId": self._channel_id(claim.config),
                "maxClaimableAmount": claim.max_claimable,
                "totalClaimed": claim.total_claimed,
            }
            for claim in claims
        ]
        return self._typed(CLAIM_BATCH_TYPES, {"claims": entries})

    def _is_valid_signature_now(self, signer: str, message: SignableMessage, signature: bytes) -> bool:
        # SignatureChecker: ECDSA for an account without code, ERC-1271 for a contract.
        # No contract on this chain implements ERC-1271, so a contract signer never passes.
        if self._host.code_at(signer):
            return False
        return try_recover(message, signature) == signer

    # -- events --------------------------------------------------------------------------

    def _emit(self, execution: Execution, name: str, *values: Any) -> None:
        inputs = _EVENTS[name]["inputs"]
        topics = [event_topic(name)]
        data_types, data_values = [], []
        for item, value in zip(inputs, values, strict=True):
            kind = abi_type(item)
            if item["indexed"]:
                topics.append("0x" + encode([kind], [value]).hex())
            else:
                data_types.append(kind)
                data_values.append(value)
        execution.emit(Log(self.address, tuple(topics), "0x" + encode(data_types, data_values).hex()))


def _require_token(host: Host, token: str) -> None:
    """Only the chain's token is deployed: any other address has no code to call."""
    if to_checksum_address(token) != host.token:
        raise Revert("call to a non-contract token", b"")

