"""The official SDK's batch-settlement client paying the gateway over HTTP, as a
payer would: the 402, the payment, one retry after a corrective 402."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from dataclasses import dataclass, field

import aiohttp
from x402 import x402ClientSync
from x402.http.x402_http_client import x402HTTPClientSync
from x402.mechanisms.evm.batch_settlement.client import (
    BatchSettlementEvmScheme,
    BatchSettlementEvmSchemeOptions,
    InMemoryClientChannelStorage,
)
from x402.mechanisms.evm.batch_settlement.client.refund import _RefundResponse
from x402.mechanisms.evm.signers import EthAccountSignerWithRPC

from devnet.chain import NETWORK
from devnet.wallets import payer_account


def fetch(url: str, headers: dict[str, str]) -> _RefundResponse:
    """The SDK's refund transport, over the standard library (it runs in a thread)."""
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return _RefundResponse(response.status, dict(response.headers))
    except urllib.error.HTTPError as error:
        return _RefundResponse(error.code, dict(error.headers))


@dataclass
class SdkPayer:
    """The SDK's batch-settlement client (sync, with an RPC signer that reads the
    channel on chain): its blocking calls run in a thread, off the test's loop,
    which also serves the devnet and the gateway."""

    rpc_url: str
    payer_index: int = 4
    storage: InMemoryClientChannelStorage = field(default_factory=InMemoryClientChannelStorage)
    statuses: list[int] = field(default_factory=list)
    header_sizes: list[int] = field(default_factory=list)  # of each PAYMENT-SIGNATURE sent
    body: bytes = b""

    def __post_init__(self) -> None:
        signer = EthAccountSignerWithRPC(payer_account(self.payer_index), self.rpc_url)
        self.scheme = BatchSettlementEvmScheme(signer, BatchSettlementEvmSchemeOptions(storage=self.storage))
        self.http = x402HTTPClientSync(x402ClientSync().register(NETWORK, self.scheme))

    @property
    def address(self) -> str:
        return payer_account(self.payer_index).address

    async def get(
        self, session: aiohttp.ClientSession, url: str, method: str = "GET", headers: dict[str, str] | None = None
    ) -> tuple[int, dict]:
        """One paid request as the SDK's HTTP transports do it: the 402, the payment,
        and one retry after a corrective 402 the client recovered from. The answer's
        body is in `self.body`."""
        headers = headers or {}
        async with session.request(method, url, headers=headers) as challenge:
            assert challenge.status == 402
            body = await challenge.json() if method != "HEAD" else None
            required = self.http.get_payment_required_response(challenge.headers.get, body)
        for _ in range(2):
            payload = await asyncio.to_thread(self.http.create_payment_payload, required)
            signature = self.http.encode_payment_signature_header(payload)
            self.header_sizes.append(sum(len(value) for value in signature.values()))
            paying = {**headers, **signature}
            async with session.request(method, url, headers=paying) as paid:
                self.body = await paid.read()
                status, answer = paid.status, dict(paid.headers)
            self.statuses.append(status)
            if method == "HEAD":
                return status, answer
            result = await asyncio.to_thread(self.http.process_payment_result, payload, answer.get, status)
            if not result.recovered:
                return status, answer
        return status, answer
