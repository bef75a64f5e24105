"""Pre-signed payments: distinct real x402 payments (the SDK client, the devnet's
funded keys, a fresh EIP-3009 nonce each), made in a process pool before a level
starts, so signing (about 1 ms each) is never part of a measured exchange.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import multiprocessing
import os

from x402 import x402Client
from x402.http.utils import encode_payment_signature_header
from x402.mechanisms.evm.exact.register import register_exact_evm_client
from x402.schemas import PaymentRequired

from devnet.wallets import PAYER_KEYS, payer_account

BATCH = 200


def _sign_batch(required_json: str, payer_index: int, count: int) -> list[str]:
    """`count` PAYMENT-SIGNATURE values from one payer (runs in a worker process)."""
    required = PaymentRequired.model_validate_json(required_json)
    client = register_exact_evm_client(x402Client(), payer_account(payer_index))

    async def sign_all() -> list[str]:
        return [encode_payment_signature_header(await client.create_payment_payload(required)) for _ in range(count)]

    return asyncio.run(sign_all())


class Signer:
    """A pool of worker processes signing payments; use as an async context manager."""

    def __init__(self, processes: int | None = None) -> None:
        # spawn: the parent holds gRPC channels and an event loop, which fork would copy.
        self._executor = concurrent.futures.ProcessPoolExecutor(
            max_workers=processes or os.cpu_count() or 1, mp_context=multiprocessing.get_context("spawn")
        )
        self._batches = 0

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
