"""An in-memory Base Sepolia holding one contract: USDC with EIP-3009.

The chain speaks calldata, like a node: `call` is eth_call (read or simulate, nothing
changes), `send_transaction` broadcasts and mines (now, later, or never). Reverts carry
FiatTokenV2's own wording, because the x402 SDK classifies failures by those strings.
Signatures are recovered for real (EIP-712 over the token's domain), so a payment the
chain accepts is one real USDC would accept.

Thread-safe: the SDK's facilitator schemes call their signer synchronously, and tests
may read the chain from other threads.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from eth_abi import decode, encode
from eth_abi.exceptions import DecodingError
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import function_signature_to_4byte_selector, keccak, to_checksum_address

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
_SECP256K1_HALF_N = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0
_ERROR_STRING_SELECTOR = function_signature_to_4byte_selector("Error(string)")
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

_EIP712_TYPES = {
    "EIP712Domain": [
        {"name": "name", "type": "string"},
        {"name": "version", "type": "string"},
        {"name": "chainId", "type": "uint256"},
        {"name": "verifyingContract", "type": "address"},
    ],
    "TransferWithAuthorization": [
        {"name": "from", "type": "address"},
        {"name": "to", "type": "address"},
        {"name": "value", "type": "uint256"},
        {"name": "validAfter", "type": "uint256"},
        {"name": "validBefore", "type": "uint256"},
        {"name": "nonce", "type": "bytes32"},
    ],
}


class Revert(Exception):
    """A contract call reverted. str() reads like a node's error ("execution reverted: ...")."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"execution reverted: {reason}")
        self.reason = reason

    @property
    def data(self) -> bytes:
        """The ABI-encoded Error(string) payload a node returns with the revert."""
        return _ERROR_STRING_SELECTOR + encode(["string"], [self.reason])


@dataclass(frozen=True)
class Log:
    address: str
    topics: tuple[str, ...]
    data: str


@dataclass(frozen=True)
class Receipt:
    tx_hash: str
    status: int
    block_number: int
    block_hash: str
    sender: str
    to: str
    logs: tuple[Log, ...]


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


def default_balances() -> dict[str, int]:
    """Every devnet payer funded with the starting balance."""
    return {account(key).address: INITIAL_PAYER_BALANCE for key in PAYER_KEYS}


def _word_address(address: str) -> str:
    return "0x" + "00" * 12 + address.lower().removeprefix("0x")


class Chain:
    """Balances, used authorizations, blocks and receipts of the simulated USDC."""

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
        source = default_balances() if balances is None else balances
        self._balances: dict[str, int] = {to_checksum_address(a): int(v) for a, v in source.items()}
        self._used: set[tuple[str, bytes]] = set()
        self._block_number = 1
        self._receipts: dict[str, Receipt] = {}
        self._pending: dict[str, _PendingTx] = {}
        self._transfers: list[Transfer] = []
        self._tx_counter = itertools.count()

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
        if to_checksum_address(address) in (USDC_ADDRESS, MULTICALL3_ADDRESS):
            return _CONTRACT_CODE
        return b""

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

    def call(self, to: str, data: bytes) -> bytes:
        """eth_call: run the call against current state without changing it."""
        with self._lock:
            self._mine_due()
            return self._execute(to_checksum_address(to), bytes(data))

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
            self._execute(to, data)
            tx_hash = "0x" + keccak(
                to_checksum_address(sender).encode() + to.encode() + data + str(next(self._tx_counter)).encode()
            ).hex()
            mine_at = None if mine_after is None else self._clock() + mine_after
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
            self._block_number += 1
            tx_hash = "0x" + keccak(text=f"cancel:{key[0]}:{nonce.hex()}").hex()
            topics = (AUTHORIZATION_CANCELED_TOPIC, _word_address(key[0]), "0x" + nonce.hex())
            block_hash = "0x" + keccak(text=f"block:{self._block_number}").hex()
            receipt = Receipt(tx_hash, 1, self._block_number, block_hash, key[0], USDC_ADDRESS,
                              (Log(USDC_ADDRESS, topics, "0x"),))
            self._receipts[tx_hash] = receipt
            return receipt

    # -- internals (lock held) -----------------------------------------------------------

    def _mine_due(self) -> None:
        now = self._clock()
        due = [tx for tx in self._pending.values() if tx.mine_at is not None and tx.mine_at <= now]
        for tx in sorted(due, key=lambda tx: tx.mine_at or 0.0):
            self._mine(tx)

    def _mine(self, tx: _PendingTx) -> Receipt:
        del self._pending[tx.tx_hash]
        self._block_number += 1
        block_hash = "0x" + keccak(text=f"block:{self._block_number}").hex()
        try:
            logs = self._apply(tx)
            status = 1
        except Revert:
            logs, status = (), 0
        receipt = Receipt(tx.tx_hash, status, self._block_number, block_hash, tx.sender, tx.to, logs)
        self._receipts[tx.tx_hash] = receipt
        return receipt

    def _apply(self, tx: _PendingTx) -> tuple[Log, ...]:
        """Run a mined transaction; only transfers change state. Returns its logs."""
        transfer = _decode_transfer(tx.data) if tx.to == USDC_ADDRESS else None
        if transfer is None:
            self._execute(tx.to, tx.data)
            return ()
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
        topics = (TRANSFER_TOPIC, _word_address(auth.from_address), _word_address(auth.to))
        used = (AUTHORIZATION_USED_TOPIC, _word_address(auth.from_address), "0x" + auth.nonce.hex())
        return (
            Log(USDC_ADDRESS, used, "0x"),
            Log(USDC_ADDRESS, topics, "0x" + encode(["uint256"], [auth.value]).hex()),
        )

    def _execute(self, to: str, data: bytes) -> bytes:
        """Run a call without changing state; a transfer is only checked."""
        if to == MULTICALL3_ADDRESS and data[:4] == _TRY_AGGREGATE:
            return self._try_aggregate(data[4:])
        if to != USDC_ADDRESS:
            # An account, not a contract: nothing to run.
            return b""
        transfer = _decode_transfer(data)
        if transfer is not None:
            self._check_transfer(*transfer)
            return b""
        selector, args = data[:4], data[4:]
        if selector == _BALANCE_OF:
            (owner,) = _decode(["address"], args)
            return encode(["uint256"], [self._balances.get(to_checksum_address(owner), 0)])
        if selector == _AUTHORIZATION_STATE:
            owner, nonce = _decode(["address", "bytes32"], args)
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

    def _try_aggregate(self, args: bytes) -> bytes:
        require_success, calls = _decode(["bool", "(address,bytes)[]"], args)
        results = []
        for target, call_data in calls:
            try:
                results.append((True, self._execute(to_checksum_address(target), call_data)))
            except Revert as revert:
                if require_success:
                    raise Revert("Multicall3: call failed") from revert
                results.append((False, revert.data))
        return encode(["(bool,bytes)[]"], [results])

    def _check_transfer(self, auth: _Authorization, signature: bytes) -> None:
        # Same checks, same order as FiatTokenV2's _transferWithAuthorization.
        now = int(self._clock())
        if not now > auth.valid_after:
            raise Revert(REVERT_NOT_YET_VALID)
        if not now < auth.valid_before:
            raise Revert(REVERT_EXPIRED)
        if (auth.from_address, auth.nonce) in self._used:
            raise Revert(REVERT_USED)
        if _recover_signer(auth, signature) != auth.from_address:
            raise Revert(REVERT_INVALID_SIGNATURE)
        if self._balances.get(auth.from_address, 0) < auth.value:
            raise Revert(REVERT_EXCEEDS_BALANCE)


def _decode_transfer(data: bytes) -> tuple[_Authorization, bytes] | None:
    """(authorization, 65-byte-or-other signature) for either transferWithAuthorization overload."""
    selector, args = data[:4], data[4:]
    if selector == _TRANSFER_VRS:
        *fields, v, r, s = _decode([*_TWA_TYPES, "uint8", "bytes32", "bytes32"], args)
        return _authorization(fields), r + s + bytes([v])
    if selector == _TRANSFER_BYTES:
        *fields, signature = _decode([*_TWA_TYPES, "bytes"], args)
        return _authorization(fields), signature
    return None


def _decode(types: list[str], args: bytes) -> tuple:
    try:
        return decode(types, args)
    except DecodingError as error:
        # Calldata that does not decode makes the EVM revert, not the node fail.
        raise Revert("invalid calldata") from error


def _authorization(fields: list) -> _Authorization:
    from_address, to, value, valid_after, valid_before, nonce = fields
    return _Authorization(to_checksum_address(from_address), to_checksum_address(to), value, valid_after, valid_before, nonce)


def _recover_signer(auth: _Authorization, signature: bytes) -> str | None:
    """ecrecover over the token's EIP-712 digest; None for a malformed signature."""
    if len(signature) != 65:
        return None
    r, s, v = int.from_bytes(signature[:32]), int.from_bytes(signature[32:64]), signature[64]
    # Like OpenZeppelin's ECDSA used by the token: canonical v and low s only.
    if v not in (27, 28) or s > _SECP256K1_HALF_N or r == 0 or s == 0:
        return None
    message = encode_typed_data(
        full_message={
            "types": _EIP712_TYPES,
            "primaryType": "TransferWithAuthorization",
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
    try:
        return Account.recover_message(message, vrs=(v, r, s))
    except Exception:
        return None
