"""The SDK's FacilitatorEvmSigner, backed by the in-memory chain instead of an RPC node.

Calls are ABI-encoded with the SDK's own encoder and run as calldata on the chain, so
the SDK's verify/settle rules meet the same reverts and receipts as they would on Base.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from eth_abi import decode
from eth_account.signers.local import LocalAccount
from x402.mechanisms.evm.constants import TX_STATUS_FAILED, TX_STATUS_SUCCESS
from x402.mechanisms.evm.data_suffix import append_data_suffix
from x402.mechanisms.evm.multicall import encode_contract_call
from x402.mechanisms.evm.types import TransactionReceipt, TypedDataDomain, TypedDataField
from x402.mechanisms.evm.verify import verify_typed_data_strict

from .chain import Chain, Receipt
from .evm import abi_type
from .wallets import FACILITATOR_KEY, account


@dataclass
class Broadcasts:
    """How transactions sent inside `ChainSigner.broadcasts()` are mined, and their hashes."""

    mine_after: float | None
    hashes: list[str] = field(default_factory=list)


# Set only inside ChainSigner.broadcasts(); outside it every transaction is mined at once.
_broadcasts: contextvars.ContextVar[Broadcasts | None] = contextvars.ContextVar(
    "devnet_broadcasts", default=None
)


class ReceiptNotFound(TimeoutError):
    """The transaction is not mined (yet): what a node's receipt wait times out with."""


class ChainSigner:
    """FacilitatorEvmSigner (x402.mechanisms.evm.signer) on a `Chain`."""

    def __init__(self, chain: Chain, signer: LocalAccount | None = None) -> None:
        self._chain = chain
        self._account = signer or account(FACILITATOR_KEY)

    @property
    def address(self) -> str:
        return self._account.address

    @contextlib.contextmanager
    def broadcasts(self, mine_after: float | None) -> Iterator[Broadcasts]:
        """Within this block, transactions are mined `mine_after` seconds after broadcast
        (None: held until mined explicitly); the hashes sent are collected."""
        plan = Broadcasts(mine_after)
        token = _broadcasts.set(plan)
        try:
            yield plan
        finally:
            _broadcasts.reset(token)

    # -- FacilitatorEvmSigner ----------------------------------------------------------

    def get_addresses(self) -> list[str]:
        return [self._account.address]

    def get_chain_id(self) -> int:
        return self._chain.chain_id

    def get_code(self, address: str) -> bytes:
        return self._chain.code_at(address)

    def get_balance(self, address: str, token_address: str) -> int:
        if token_address.lower() != self._chain.token.lower():
            return 0
        return self._chain.balance_of(address)

    def read_contract(self, address: str, abi: list[dict[str, Any]], function_name: str, *args: Any) -> Any:
        # From the facilitator's own address, as the SDK's web3 signer calls.
        calldata = encode_contract_call(abi, function_name, *args)
        output = self._chain.call(address, calldata, sender=self._account.address)
        output_types = [abi_type(item) for item in _function_abi(abi, function_name).get("outputs", [])]
        if not output_types:
            return None
        decoded = decode(output_types, output)
        return decoded[0] if len(decoded) == 1 else list(decoded)

    def verify_typed_data(
        self,
        address: str,
        domain: TypedDataDomain,
        types: dict[str, list[TypedDataField]],
        primary_type: str,
        message: dict[str, Any],
        signature: bytes,
    ) -> bool:
        return verify_typed_data_strict(self, address, domain, types, primary_type, message, signature)

    def write_contract(
        self,
        address: str,
        abi: list[dict[str, Any]],
        function_name: str,
        *args: Any,
        data_suffix: str | None = None,
    ) -> str:
        calldata = "0x" + encode_contract_call(abi, function_name, *args).hex()
        calldata = append_data_suffix(calldata, data_suffix)
        return self.send_transaction(address, bytes.fromhex(calldata.removeprefix("0x")))

    def send_transaction(self, to: str, data: bytes) -> str:
        plan = _broadcasts.get()
        mine_after = 0.0 if plan is None else plan.mine_after
        tx_hash = self._chain.send_transaction(self._account.address, to, data, mine_after=mine_after)
        if plan is not None:
            plan.hashes.append(tx_hash)
        return tx_hash

    def wait_for_transaction_receipt(self, tx_hash: str) -> TransactionReceipt:
        # Never blocks: the SDK calls this on the event loop. A pending transaction
        # answers like a node whose receipt wait timed out.
        receipt = self._chain.receipt(tx_hash)
        if receipt is None:
            raise ReceiptNotFound(f"transaction {tx_hash} is not in the chain yet")
        return _sdk_receipt(receipt)


def _sdk_receipt(receipt: Receipt) -> TransactionReceipt:
    return TransactionReceipt(
        status=TX_STATUS_SUCCESS if receipt.status == 1 else TX_STATUS_FAILED,
        block_number=receipt.block_number,
        tx_hash=receipt.tx_hash,
        logs=[{"address": log.address, "topics": list(log.topics), "data": log.data} for log in receipt.logs],
    )


def _function_abi(abi: list[dict[str, Any]], function_name: str) -> dict[str, Any]:
    for entry in abi:
        if entry.get("type") == "function" and entry.get("name") == function_name:
            return entry
    raise ValueError(f"function {function_name} not in ABI")
