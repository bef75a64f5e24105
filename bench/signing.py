"""Pre-signed payments: distinct real x402 payments (the SDK client, the devnet's
funded keys, a fresh EIP-3009 nonce each), made in a process pool before a level
starts, so signing (about 1 ms each) is never part of a measured exchange.

Batch-settlement channels the same way: each voucher's `maxClaimableAmount` is what
was charged so far plus the price, so with a fixed price and every request charged
the whole sequence of a channel is known before its first request. The SDK's
client signs it as a payer would (its deposit first, then each voucher, its
channel storage moved on by one charge after each), in batches over the pool.
The SDK's `sign_voucher` (EIP-712 encoding in Python, then the ECDSA signature)
takes about 1 ms here, like an exact payment; signed while the level runs, it
would take a large share of a core from the processes under test.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import multiprocessing
import os
import secrets
from dataclasses import dataclass

from x402 import x402Client
from x402.http.utils import encode_payment_signature_header
from x402.mechanisms.evm.batch_settlement.client import (
    BatchSettlementClientContext,
    BatchSettlementEvmScheme,
    BatchSettlementEvmSchemeOptions,
    InMemoryClientChannelStorage,
    compute_channel_id,
    update_channel_from_settle,
)
from x402.mechanisms.evm.batch_settlement.types import is_deposit_payload, is_voucher_payload
from x402.mechanisms.evm.exact.register import register_exact_evm_client
from x402.mechanisms.evm.signers import EthAccountSigner
from x402.schemas import PaymentRequired

from devnet.wallets import PAYER_KEYS, payer_account

BATCH = 200


@dataclass(frozen=True)
class Channel:
    """One payment channel a benchmark client pays through: its payer (index of a
    funded devnet key), its salt (what sets it apart from the payer's other channels
    with the same server) and how many payments it makes. The first is the deposit,
    which funds exactly that many charges of the price; the rest are vouchers."""

    payer: int
    salt: str
    payments: int

    def deposit(self, price: int) -> int:
        return self.payments * price


def _sign_batch(required_json: str, payer_index: int, count: int) -> list[str]:
    """`count` PAYMENT-SIGNATURE values from one payer (runs in a worker process)."""
    required = PaymentRequired.model_validate_json(required_json)
    client = register_exact_evm_client(x402Client(), payer_account(payer_index))

    async def sign_all() -> list[str]:
        return [encode_payment_signature_header(await client.create_payment_payload(required)) for _ in range(count)]

    return asyncio.run(sign_all())


def _sign_channel_batch(required_json: str, channel: Channel, first: int, count: int) -> list[str]:
    """Payments `first` .. `first + count - 1` of `channel` (0 is its deposit), as the SDK
    client makes them after `first` charges of the price (runs in a worker process)."""
    required = PaymentRequired.model_validate_json(required_json)
    requirements = required.accepts[0]
    price = int(requirements.amount)
    deposit = channel.deposit(price)
    storage = InMemoryClientChannelStorage()
    signer = EthAccountSigner(payer_account(channel.payer))
    options = BatchSettlementEvmSchemeOptions(
        storage=storage, salt=channel.salt, deposit_strategy=lambda _context: str(deposit)
    )
    scheme = BatchSettlementEvmScheme(signer, options)
    client = x402Client().register(requirements.network, scheme)
    channel_id = compute_channel_id(scheme.build_channel_config(requirements), requirements.network)
    if first > 0:
        # Where the client's storage is after the deposit and `first - 1` vouchers.
        storage.set(
            channel_id, BatchSettlementClientContext(charged_cumulative_amount=str(first * price), balance=str(deposit))
        )

    async def sign_all() -> list[str]:
        headers = []
        for n in range(first, first + count):
            payload = await client.create_payment_payload(required)
            expected = is_deposit_payload if n == 0 else is_voucher_payload
            if not expected(payload.payload):
                raise RuntimeError(f"payment {n} of a channel came out as {payload.payload.get('type')}")
            headers.append(encode_payment_signature_header(payload))
            # The server's receipt charges the price: the client's storage moves on.
            local = {"channel_id": channel_id, "request_amount": requirements.amount}
            if n == 0:
                local["deposit_amount"] = str(deposit)
            update_channel_from_settle(storage, {"server": {"charged_amount": requirements.amount}, "local": local})
        return headers

    return asyncio.run(sign_all())


class Signer:
    """A pool of worker processes signing payments; use as an async context manager."""

    def __init__(self, processes: int | None = None) -> None:
        # spawn: the parent holds gRPC channels and an event loop, which fork would copy.
        self._executor = concurrent.futures.ProcessPoolExecutor(
            max_workers=processes or os.cpu_count() or 1, mp_context=multiprocessing.get_context("spawn")
        )
        self._batches = 0
        self._channels = 0

    async def __aenter__(self) -> Signer:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        self._executor.shutdown(cancel_futures=True)

    async def sign(self, required: PaymentRequired, count: int) -> list[str]:
        """`count` distinct payments answering `required`, spread over the funded payers."""
        required_json = required.model_dump_json(by_alias=True, exclude_none=True)
        loop = asyncio.get_running_loop()
        jobs = []
        for start in range(0, count, BATCH):
            payer = self._batches % len(PAYER_KEYS)
            self._batches += 1
            jobs.append(
                loop.run_in_executor(self._executor, _sign_batch, required_json, payer, min(BATCH, count - start))
            )
        return [header for batch in await asyncio.gather(*jobs) for header in batch]

    def channels(self, count: int, payments: int) -> list[Channel]:
        """`count` new channels of `payments` payments each, spread over the funded
        payers (one payer holds many channels, told apart by a random salt)."""
        channels = []
        for _ in range(count):
            payer = self._channels % len(PAYER_KEYS)
            self._channels += 1
            channels.append(Channel(payer, "0x" + secrets.token_hex(32), payments))
        return channels

    async def sign_channels(self, required: PaymentRequired, channels: list[Channel]) -> list[list[str]]:
        """Every payment of each channel, in order: its deposit, then its vouchers.
        `required` must offer batch-settlement only (its one option is the one paid)."""
        required_json = required.model_dump_json(by_alias=True, exclude_none=True)
        loop = asyncio.get_running_loop()
        jobs = [
            [
                loop.run_in_executor(
                    self._executor, _sign_channel_batch, required_json, channel, first,
                    min(BATCH, channel.payments - first),
                )  # fmt: skip
                for first in range(0, channel.payments, BATCH)
            ]
            for channel in channels
        ]
        signed = await asyncio.gather(*(asyncio.gather(*batches) for batches in jobs))
        return [[header for batch in batches for header in batch] for batches in signed]
