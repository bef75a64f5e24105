"""What every simulated contract on the devnet chain shares: reverts, logs, receipts,
ABI helpers, ECDSA as OpenZeppelin does it, and the journal that makes a reverted call
change nothing.

A call runs inside an `Execution`: writes go straight to the contracts' state and are
recorded with their undo, so a revert (of the whole transaction, or of one sub-call that
the caller catches, as Multicall3's tryAggregate does) restores exactly what was there.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from eth_abi import decode, encode
from eth_abi.exceptions import DecodingError
from eth_account import Account
from eth_account.messages import SignableMessage
from eth_utils import function_signature_to_4byte_selector, keccak

ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"

_ERROR_STRING_SELECTOR = function_signature_to_4byte_selector("Error(string)")
_SECP256K1_HALF_N = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0


class Revert(Exception):
    """A contract call reverted. str() reads like a node's error ("execution reverted: ...").

    `data` is what a node returns with the revert: by default the ABI-encoded
    Error(string) of `reason`; custom Solidity errors (`Revert.error`) carry their own
    selector and arguments.
    """

    def __init__(self, reason: str, data: bytes | None = None) -> None:
        super().__init__(f"execution reverted: {reason}")
        self.reason = reason
        self._data = data

    @classmethod
    def error(cls, name: str, types: tuple[str, ...] = (), values: tuple[Any, ...] = ()) -> Revert:
        """A custom error, `error Name(types)` in Solidity, as the contract reverts with it."""
        signature = f"{name}({','.join(types)})"
        selector = function_signature_to_4byte_selector(signature)
        return cls(signature, selector + encode(list(types), list(values)))

    @property
    def data(self) -> bytes:
        if self._data is not None:
            return self._data
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


class Execution:
    """One transaction, or one eth_call, in progress: its block time, the logs emitted
    so far, and the undo of every write."""

    def __init__(self, timestamp: int) -> None:
        self.timestamp = timestamp
        self.logs: list[Log] = []
        self._undo: list[Callable[[], None]] = []

    def write(self, mapping: MutableMapping[Any, Any], key: Any, value: Any) -> None:
        if key in mapping:
            old = mapping[key]
            self._undo.append(lambda: mapping.__setitem__(key, old))
        else:
            self._undo.append(lambda: mapping.pop(key, None))
        mapping[key] = value

    def add(self, items: set[Any], item: Any) -> None:
        if item not in items:
            items.add(item)
            self._undo.append(lambda: items.discard(item))

    def emit(self, log: Log) -> None:
        self.logs.append(log)

    def checkpoint(self) -> tuple[int, int]:
        return len(self._undo), len(self.logs)

    def revert(self, checkpoint: tuple[int, int] = (0, 0)) -> None:
        """Undo every write (and drop every log) made since `checkpoint`."""
        writes, logs = checkpoint
        while len(self._undo) > writes:
            self._undo.pop()()
        del self.logs[logs:]


def abi_type(item: dict[str, Any]) -> str:
    """The canonical type of one ABI input/output entry, tuples spelled out."""
    kind = item["type"]
    if not kind.startswith("tuple"):
        return kind
    return "(" + ",".join(abi_type(c) for c in item["components"]) + ")" + kind[len("tuple") :]


def abi_decode(types: list[str], args: bytes) -> tuple[Any, ...]:
    try:
        return decode(types, args)
    except (DecodingError, OverflowError) as error:
        # Calldata that does not decode makes the EVM revert, not the node fail.
        raise Revert("invalid calldata") from error


def word(address: str) -> str:
    """An address as a 32-byte log topic."""
    return "0x" + "00" * 12 + address.lower().removeprefix("0x")


def topic(signature: str) -> str:
    return "0x" + keccak(text=signature).hex()


def eip712_digest(message: SignableMessage) -> bytes:
    """keccak256(0x19 0x01 domainSeparator structHash): what the contract hashes."""
    return keccak(b"\x19" + message.version + message.header + message.body)


def try_recover(message: SignableMessage, signature: bytes) -> str | None:
    """OpenZeppelin's ECDSA.tryRecover: the signer of a 65-byte signature with canonical
    v and low s, else None."""
    if len(signature) != 65:
        return None
    r, s, v = int.from_bytes(signature[:32]), int.from_bytes(signature[32:64]), signature[64]
    if v not in (27, 28) or s > _SECP256K1_HALF_N or r == 0 or s == 0:
        return None
    try:
        return Account.recover_message(message, vrs=(v, r, s))
    except Exception:
        return None


def recover(message: SignableMessage, signature: bytes) -> str:
    """OpenZeppelin's ECDSA.recover: the signer, or the custom error it reverts with."""
    if len(signature) != 65:
        raise Revert.error("ECDSAInvalidSignatureLength", ("uint256",), (len(signature),))
    s = signature[32:64]
    if int.from_bytes(s) > _SECP256K1_HALF_N:
        raise Revert.error("ECDSAInvalidSignatureS", ("bytes32",), (s,))
    signer = try_recover(message, signature)
    if signer is None:
        raise Revert.error("ECDSAInvalidSignature")
    return signer
