"""An in-memory Base Sepolia holding USDC with EIP-3009, and the batch-settlement
channel contracts beside it (batch_settlement.py).

The chain speaks calldata, like a node: `call` is eth_call (read or simulate, nothing
changes), `send_transaction` broadcasts and mines (now, later, or never). Reverts carry
FiatTokenV2's own wording, because the x402 SDK classifies failures by those strings.
Signatures are recovered for real (EIP-712 over the token's domain), so a payment the
chain accepts is one real USDC would accept. Block time follows the clock given, plus
whatever `advance_time` added, so tests can let a withdraw delay pass.

Thread-safe: the SDK's facilitator schemes call their signer synchronously, and tests
may read the chain from other threads.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from eth_abi import encode
from eth_account.messages import encode_typed_data
from eth_utils import function_signature_to_4byte_selector, keccak, to_checksum_address
from x402.mechanisms.evm.batch_settlement.constants import RECEIVE_AUTHORIZATION_TYPES
from x402.mechanisms.evm.types import AUTHORIZATION_TYPES

from .batch_settlement import BatchSettlement, Channel, DepositCollector, ReceiverTotals
from .evm import ZERO_ADDRESS, Execution, Log, Receipt, Revert, abi_decode, try_recover, word
from .wallets import INITIAL_PAYER_BALANCE, PAYER_KEYS, account

CHAIN_ID = 84532
NETWORK = "eip155:84532"
V1_NETWORK = "base-sepolia"
USDC_ADDRESS = "0x036CbD53842c5426634e7929541eC2318f3dCF7e"
USDC_NAME = "USDC"
USDC_VERSION = "2"
USDC_SYMBOL = "USDC"
USDC_DECIMALS = 6
# The SDK batches its diagnostic reads through Multicall3 at its canonical address.
MULTICALL3_ADDRESS = "0xcA11bde05977b3631167028862bE2a173976CA11"

# keccak256("Transfer(address,address,uint256)")
TRANSFER_TOPIC = "0x" + keccak(text="Transfer(address,address,uint256)").hex()
# FiatToken emits this beside Transfer; it lets a reader find the transaction of a nonce.
AUTHORIZATION_USED_TOPIC = "0x" + keccak(text="AuthorizationUsed(address,bytes32)").hex()
# Emitted by cancelAuthorization: the nonce is used up without any transfer.
AUTHORIZATION_CANCELED_TOPIC = "0x" + keccak(text="AuthorizationCanceled(address,bytes32)").hex()

# Revert reasons, worded exactly as FiatTokenV2 / its ERC-20 base say them.
REVERT_NOT_YET_VALID = "FiatTokenV2: authorization is not yet valid"
REVERT_EXPIRED = "FiatTokenV2: authorization is expired"
REVERT_USED = "FiatTokenV2: authorization is used or canceled"
REVERT_INVALID_SIGNATURE = "FiatTokenV2: invalid signature"
REVERT_EXCEEDS_BALANCE = "ERC20: transfer amount exceeds balance"

# Stand-in bytecode: callers only ask whether an address holds code.
_CONTRACT_CODE = bytes.fromhex("6080604052")
_ZERO_HASH = "0x" + "00" * 32

_TWA_FIELDS = "address,address,uint256,uint256,uint256,bytes32"
_TWA_TYPES = _TWA_FIELDS.split(",")
_SIG_TRANSFER_VRS = f"transferWithAuthorization({_TWA_FIELDS},uint8,bytes32,bytes32)"
_SIG_TRANSFER_BYTES = f"transferWithAuthorization({_TWA_FIELDS},bytes)"
_TRANSFER_VRS = function_signature_to_4byte_selector(_SIG_TRANSFER_VRS)
_TRANSFER_BYTES = function_signature_to_4byte_selector(_SIG_TRANSFER_BYTES)
_BALANCE_OF = function_signature_to_4byte_selector("balanceOf(address)")
_AUTHORIZATION_STATE = function_signature_to_4byte_selector("authorizationState(address,bytes32)")
_NAME = function_signature_to_4byte_selector("name()")
_SYMBOL = function_signature_to_4byte_selector("symbol()")
_VERSION = function_signature_to_4byte_selector("version()")
_DECIMALS = function_signature_to_4byte_selector("decimals()")
_TRY_AGGREGATE = function_signature_to_4byte_selector("tryAggregate(bool,(address,bytes)[])")

_EIP712_DOMAIN_TYPE = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]
# The SDK's typed-data definitions of the two EIP-3009 authorizations the token takes.
_AUTHORIZATION_TYPES = {**AUTHORIZATION_TYPES, **RECEIVE_AUTHORIZATION_TYPES}


@dataclass(frozen=True)
class Transfer:
    """A mined, successful transferWithAuthorization."""

    tx_hash: str
    from_address: str
    to: str
    value: int
    nonce: str
    block_number: int


@dataclass(frozen=True)
class _Authorization:
    from_address: str
    to: str
    value: int
    valid_after: int
    valid_before: int
    nonce: bytes


@dataclass
class _PendingTx:
    tx_hash: str
    sender: str
    to: str
    data: bytes
    mine_at: float | None  # None: held in the mempool until mined explicitly


def block_hash(number: int) -> str:
    return "0x" + keccak(text=f"block:{number}").hex()


def default_balances() -> dict[str, int]:
    """Every devnet payer funded with the starting balance."""
    return {account(key).address: INITIAL_PAYER_BALANCE for key in PAYER_KEYS}


class Chain:
    """Balances, used authorizations, blocks and receipts of the simulated USDC, and the
    channel contracts that hold it in escrow."""

    chain_id = CHAIN_ID
    network = NETWORK
    token = USDC_ADDRESS

    def __init__(
        self,
        balances: Mapping[str, int] | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._lock = threading.RLock()
        self._clock = clock
        self._time_offset = 0.0
        source = default_balances() if balances is None else balances
        self._balances: dict[str, int] = {to_checksum_address(a): int(v) for a, v in source.items()}
        self._used: set[tuple[str, bytes]] = set()
        self._block_number = 1
        self._block_times = {1: int(self._now())}
        self._receipts: dict[str, Receipt] = {}
        self._pending: dict[str, _PendingTx] = {}
        self._transfers: list[Transfer] = []
        self._tx_counter = itertools.count()
        collector = DepositCollector(self)
        self._settlement = BatchSettlement(self, collector)
        self._contracts = {contract.address: contract for contract in (self._settlement, collector)}

    # -- reads -------------------------------------------------------------------------

    @property
    def block_number(self) -> int:
        with self._lock:
            self._mine_due()
            return self._block_number

    def balance_of(self, address: str) -> int:
        with self._lock:
            self._mine_due()
            return self._balances.get(to_checksum_address(address), 0)

    def authorization_state(self, authorizer: str, nonce: bytes | str) -> bool:
        if isinstance(nonce, str):
            nonce = bytes.fromhex(nonce.removeprefix("0x"))
        with self._lock:
            self._mine_due()
            return (to_checksum_address(authorizer), bytes(nonce)) in self._used

    def code_at(self, address: str) -> bytes:
        address = to_checksum_address(address)
        if address in (USDC_ADDRESS, MULTICALL3_ADDRESS) or address in self._contracts:
            return _CONTRACT_CODE
        return b""

    @property
    def timestamp(self) -> int:
        """The current block time (seconds)."""
        return int(self._now())

    def block_timestamp(self, number: int) -> int | None:
        """When block `number` was made; None for a block not made yet."""
        with self._lock:
            self._mine_due()
            return self._block_times.get(number)

    def channel(self, channel_id: bytes | str) -> Channel:
        """A batch-settlement channel's state, as the contract's read functions give it."""
        if isinstance(channel_id, str):
            channel_id = bytes.fromhex(channel_id.removeprefix("0x"))
        with self._lock:
            self._mine_due()
            return self._settlement.channel(bytes(channel_id))

    def receiver_totals(self, receiver: str, token: str = USDC_ADDRESS) -> ReceiverTotals:
        """What the channel contract recorded as claimed and settled for a receiver."""
        with self._lock:
            self._mine_due()
            return self._settlement.receiver(receiver, token)

    def receipt(self, tx_hash: str) -> Receipt | None:
        """The mined receipt, or None while the transaction is pending or unknown."""
        with self._lock:
            self._mine_due()
            return self._receipts.get(tx_hash.lower())

    def receipts_between(self, from_block: int, to_block: int) -> list[Receipt]:
        """Mined receipts in a block range, oldest first (for eth_getLogs)."""
        with self._lock:
            self._mine_due()
            found = [r for r in self._receipts.values() if from_block <= r.block_number <= to_block]
        return sorted(found, key=lambda r: r.block_number)

    def is_pending(self, tx_hash: str) -> bool:
        with self._lock:
            self._mine_due()
            return tx_hash.lower() in self._pending

    def pending(self) -> list[str]:
        """Hashes of the transactions waiting in the mempool, oldest first."""
        with self._lock:
            self._mine_due()
            return list(self._pending)

    def transactions(self) -> list[Transfer]:
        """Mined successful transfers, oldest first."""
        with self._lock:
            self._mine_due()
            return list(self._transfers)

    @property
    def transfers_applied(self) -> int:
        with self._lock:
            self._mine_due()
            return len(self._transfers)

    # -- node entry points --------------------------------------------------------------

    def call(self, to: str, data: bytes, sender: str = ZERO_ADDRESS) -> bytes:
        """eth_call: run the call against current state without changing it."""
        with self._lock:
            self._mine_due()
            return self._simulate(to_checksum_address(sender), to_checksum_address(to), bytes(data))

    def send_transaction(
        self, sender: str, to: str, data: bytes, *, mine_after: float | None = 0.0
    ) -> str:
        """Broadcast a transaction and return its hash.

        A call that would revert is refused up front, as a node's gas estimate does.
        `mine_after` is seconds until it is mined (0: now), or None to hold it in the
        mempool until `mine(tx_hash)`. Mining re-runs the call against the state of that
        moment, so a held transfer whose nonce got used meanwhile is mined as reverted.
        """
        with self._lock:
            self._mine_due()
            to, data = to_checksum_address(to), bytes(data)
            self._simulate(to_checksum_address(sender), to, data)
            tx_hash = "0x" + keccak(
                to_checksum_address(sender).encode() + to.encode() + data + str(next(self._tx_counter)).encode()
            ).hex()
            mine_at = None if mine_after is None else self._now() + mine_after
            self._pending[tx_hash] = _PendingTx(tx_hash, to_checksum_address(sender), to, data, mine_at)
            self._mine_due()
            return tx_hash

    def mine(self, tx_hash: str) -> Receipt:
        """Mine a pending transaction now."""
        with self._lock:
            self._mine_due()
            existing = self._receipts.get(tx_hash.lower())
            if existing is not None:
                return existing
            pending = self._pending.get(tx_hash.lower())
            if pending is None:
                raise KeyError(f"unknown transaction {tx_hash}")
            return self._mine(pending)

    def advance_time(self, seconds: float) -> int:
        """Move block time forward (like a node's evm_increaseTime); the new time.
        Transactions due by then are mined."""
        if seconds < 0:
            raise ValueError("time only moves forward")
        with self._lock:
            self._time_offset += seconds
            self._mine_due()
            return int(self._now())

    def cancel_authorization(self, authorizer: str, nonce: bytes | str) -> Receipt:
        """The payer's own EIP-3009 cancelAuthorization, mined at once: the nonce is
        used up and no money moves. (The payer's signature over it is not modelled:
        only tests call this, to play a payer who cancels during a settle.)"""
        if isinstance(nonce, str):
            nonce = bytes.fromhex(nonce.removeprefix("0x"))
        with self._lock:
            self._mine_due()
            key = (to_checksum_address(authorizer), bytes(nonce))
            if key in self._used:
                raise Revert(REVERT_USED)
            self._used.add(key)
            block_hash = self._new_block()
            tx_hash = "0x" + keccak(text=f"cancel:{key[0]}:{nonce.hex()}").hex()
            topics = (AUTHORIZATION_CANCELED_TOPIC, word(key[0]), "0x" + nonce.hex())
            receipt = Receipt(tx_hash, 1, self._block_number, block_hash, key[0], USDC_ADDRESS,
                              (Log(USDC_ADDRESS, topics, "0x"),))
            self._receipts[tx_hash] = receipt
            return receipt

    # -- internals (lock held) -----------------------------------------------------------

    def _now(self) -> float:
        # Block time: the clock given, moved on by advance_time.
        return self._clock() + self._time_offset

    def _new_block(self) -> str:
        """Start the next block; its hash."""
        self._block_number += 1
        self._block_times[self._block_number] = int(self._now())
        return block_hash(self._block_number)

    def _mine_due(self) -> None:
        now = self._now()
        due = [tx for tx in self._pending.values() if tx.mine_at is not None and tx.mine_at <= now]
        for tx in sorted(due, key=lambda tx: tx.mine_at or 0.0):
            self._mine(tx)

    def _mine(self, tx: _PendingTx) -> Receipt:
        del self._pending[tx.tx_hash]
        block_hash = self._new_block()
        try:
            logs = self._apply(tx)
            status = 1
        except Revert:
            logs, status = (), 0
        receipt = Receipt(tx.tx_hash, status, self._block_number, block_hash, tx.sender, tx.to, logs)
        self._receipts[tx.tx_hash] = receipt
        return receipt

    def _apply(self, tx: _PendingTx) -> tuple[Log, ...]:
        """Run a mined transaction; its logs. A revert leaves the state as it was."""
        transfer = _decode_transfer(tx.data) if tx.to == USDC_ADDRESS else None
        if transfer is None:
            execution = Execution(int(self._now()))
            try:
                self._execute(tx.to, tx.data, execution, tx.sender)
            except BaseException:
                execution.revert()
                raise
            return tuple(execution.logs)
        auth, signature = transfer
        self._check_transfer(auth, signature)
        self._used.add((auth.from_address, auth.nonce))
        self._balances[auth.from_address] -= auth.value
        self._balances[auth.to] = self._balances.get(auth.to, 0) + auth.value
        self._transfers.append(
            Transfer(
                tx_hash=tx.tx_hash,
                from_address=auth.from_address,
                to=auth.to,
                value=auth.value,
                nonce="0x" + auth.nonce.hex(),
                block_number=self._block_number,
            )
        )
        topics = (TRANSFER_TOPIC, word(auth.from_address), word(auth.to))
        used = (AUTHORIZATION_USED_TOPIC, word(auth.from_address), "0x" + auth.nonce.hex())
        return (
            Log(USDC_ADDRESS, used, "0x"),
            Log(USDC_ADDRESS, topics, "0x" + encode(["uint256"], [auth.value]).hex()),
        )

    def _simulate(self, sender: str, to: str, data: bytes) -> bytes:
        """Run a call and undo whatever it wrote: eth_call, or a node's gas estimate."""
        execution = Execution(int(self._now()))
        try:
            return self._execute(to, data, execution, sender)
        finally:
            execution.revert()

    def _execute(self, to: str, data: bytes, execution: Execution, caller: str) -> bytes:
        """Run a call from `caller` inside `execution`. The token's own transfers are only
        checked here (`_apply` makes them); the channel contracts write through the
        execution's journal."""
        contract = self._contracts.get(to)
        if contract is not None:
            return contract.run(execution, caller, data)
        if to == MULTICALL3_ADDRESS and data[:4] == _TRY_AGGREGATE:
            return self._try_aggregate(data[4:], execution)
        if to != USDC_ADDRESS:
            # An account, not a contract: nothing to run.
            return b""
        transfer = _decode_transfer(data)
        if transfer is not None:
            self._check_transfer(*transfer)
            return b""
        selector, args = data[:4], data[4:]
        if selector == _BALANCE_OF:
            (owner,) = abi_decode(["address"], args)
            return encode(["uint256"], [self._balances.get(to_checksum_address(owner), 0)])
        if selector == _AUTHORIZATION_STATE:
            owner, nonce = abi_decode(["address", "bytes32"], args)
            return encode(["bool"], [(to_checksum_address(owner), nonce) in self._used])
        if selector == _NAME:
            return encode(["string"], [USDC_NAME])
        if selector == _SYMBOL:
            return encode(["string"], [USDC_SYMBOL])
        if selector == _VERSION:
            return encode(["string"], [USDC_VERSION])
        if selector == _DECIMALS:
            return encode(["uint8"], [USDC_DECIMALS])
        raise Revert("function selector was not recognized")

    def _try_aggregate(self, args: bytes, execution: Execution) -> bytes:
        require_success, calls = abi_decode(["bool", "(address,bytes)[]"], args)
        results = []
        for target, call_data in calls:
            checkpoint = execution.checkpoint()
            try:
                output = self._execute(to_checksum_address(target), call_data, execution, MULTICALL3_ADDRESS)
                results.append((True, output))
            except Revert as revert:
                execution.revert(checkpoint)  # a failed sub-call's writes go; the others stay
                if require_success:
                    raise Revert("Multicall3: call failed") from revert
                results.append((False, revert.data))
        return encode(["(bool,bytes)[]"], [results])

    def _check_transfer(
        self, auth: _Authorization, signature: bytes, primary_type: str = "TransferWithAuthorization"
    ) -> None:
        # Same checks, same order as FiatTokenV2's _transferWithAuthorization.
        now = int(self._now())
        if not now > auth.valid_after:
            raise Revert(REVERT_NOT_YET_VALID)
        if not now < auth.valid_before:
            raise Revert(REVERT_EXPIRED)
        if (auth.from_address, auth.nonce) in self._used:
            raise Revert(REVERT_USED)
        if _recover_signer(auth, signature, primary_type) != auth.from_address:
            raise Revert(REVERT_INVALID_SIGNATURE)
        if self._balances.get(auth.from_address, 0) < auth.value:
            raise Revert(REVERT_EXCEEDS_BALANCE)

    # -- the token as the channel contracts call it (lock held, inside an execution) ------

    def token_balance(self, holder: str) -> int:
        return self._balances.get(holder, 0)

    def token_transfer(self, execution: Execution, holder: str, to: str, value: int) -> None:
        """ERC-20 transfer(to, value) called by `holder` (a contract moving its own tokens)."""
        balance = self._balances.get(holder, 0)
        if balance < value:
            raise Revert(REVERT_EXCEEDS_BALANCE)
        execution.write(self._balances, holder, balance - value)
        execution.write(self._balances, to, self._balances.get(to, 0) + value)
        topics = (TRANSFER_TOPIC, word(holder), word(to))
        execution.emit(Log(USDC_ADDRESS, topics, "0x" + encode(["uint256"], [value]).hex()))

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
    ) -> None:
        """FiatTokenV2's receiveWithAuthorization called by `caller`, the payee."""
        auth = _Authorization(payer, caller, value, valid_after, valid_before, nonce)
        self._check_transfer(auth, signature, "ReceiveWithAuthorization")
        execution.add(self._used, (payer, nonce))
        execution.emit(Log(USDC_ADDRESS, (AUTHORIZATION_USED_TOPIC, word(payer), "0x" + nonce.hex()), "0x"))
        self.token_transfer(execution, payer, caller, value)


def _decode_transfer(data: bytes) -> tuple[_Authorization, bytes] | None:
    """(authorization, 65-byte-or-other signature) for either transferWithAuthorization overload."""
    selector, args = data[:4], data[4:]
    if selector == _TRANSFER_VRS:
        *fields, v, r, s = abi_decode([*_TWA_TYPES, "uint8", "bytes32", "bytes32"], args)
        return _authorization(fields), r + s + bytes([v])
    if selector == _TRANSFER_BYTES:
        *fields, signature = abi_decode([*_TWA_TYPES, "bytes"], args)
        return _authorization(fields), signature
    return None


def _authorization(fields: list) -> _Authorization:
    from_address, to, value, valid_after, valid_before, nonce = fields
    return _Authorization(to_checksum_address(from_address), to_checksum_address(to), value, valid_after, valid_before, nonce)


def _recover_signer(auth: _Authorization, signature: bytes, primary_type: str) -> str | None:
    """ecrecover over the token's EIP-712 digest; None for a malformed signature."""
    message = encode_typed_data(
        full_message={
            "types": {"EIP712Domain": _EIP712_DOMAIN_TYPE, primary_type: _AUTHORIZATION_TYPES[primary_type]},
            "primaryType": primary_type,
            "domain": {
                "name": USDC_NAME,
                "version": USDC_VERSION,
                "chainId": CHAIN_ID,
                "verifyingContract": USDC_ADDRESS,
            },
            "message": {
                "from": auth.from_address,
                "to": auth.to,
                "value": auth.value,
                "validAfter": auth.valid_after,
                "validBefore": auth.valid_before,
                "nonce": auth.nonce,
            },
        }
    )
    # Like OpenZeppelin's ECDSA used by the token: canonical v and low s only.
    return try_recover(message, signature)
