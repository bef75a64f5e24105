"""What the load generator drives. Each target answers three questions: what a
payment must answer (`challenge`, None for free targets), how a signed payment
becomes a ready-made request (`prepare`, with a request id when the caller wants
to find the request's tracking record later), and how one exchange goes
(`connect` yields the `Send` for a level, holding its connections).

- HttpTarget: a URL, free (expects 200) or paid (PAYMENT-SIGNATURE; expects 200
  with PAYMENT-RESPONSE) — the gateway's routes and the SDK peer's.
- ChannelTarget: a paid URL paid with batch-settlement vouchers, one payment
  channel per concurrent client (bench/channels.py) — the SDK batch peer's route
  and, once the gateway offers the scheme, ours. Skipped when the URL's 402 does
  not offer batch-settlement.
- SidecarTarget: the sidecar alone over gRPC, Authorize then Settle, as the
  gateway calls it, without the gateway.
- FacilitatorTarget: the facilitator alone, POST /verify then /settle with the
  bodies the sidecar sends: the facilitator's own share of a paid request.
"""

from __future__ import annotations

import base64
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
import grpc
from x402.http.utils import decode_payment_required_header, decode_payment_response_header
from x402.mechanisms.evm.batch_settlement.constants import SCHEME_BATCH_SETTLEMENT
from x402.schemas import PaymentRequired

from paysidecar.aiohttp_middleware import RouteSpec
from paysidecar.v1 import payment_pb2, payment_pb2_grpc

from .loadgen import Send, require_loopback

REQUEST_TIMEOUT_S = 30.0
USER_AGENT = "paysidecar-bench/1"


class TargetError(Exception):
    """A target did not answer as a benchmark needs (e.g. no 402 challenge)."""


class TargetSkipped(Exception):
    """A target that does not offer what it would be measured with; the message says why."""


class Target(Protocol):
    name: str

    async def challenge(self) -> PaymentRequired | None: ...

    def prepare(self, payment: str | None, request_id: str | None = None) -> Any: ...

    def connect(self, concurrency: int) -> AbstractAsyncContextManager[Send]: ...


def _connector(concurrency: int) -> aiohttp.TCPConnector:
    return aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)


def _session(concurrency: int) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=_connector(concurrency),
        timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S),
        headers={"User-Agent": USER_AGENT},
    )


@dataclass
class HttpTarget:
    name: str
    url: str
    paid: bool

    def __post_init__(self) -> None:
        require_loopback(self.url)

    async def challenge(self) -> PaymentRequired | None:
        if not self.paid:
            return None
        async with _session(1) as session, session.get(self.url) as response:
            await response.read()
            header = response.headers.get("PAYMENT-REQUIRED")
            if response.status != 402 or header is None:
                raise TargetError(f"{self.name}: expected a 402 with PAYMENT-REQUIRED, got {response.status}")
            return decode_payment_required_header(header)

    def prepare(self, payment: str | None, request_id: str | None = None) -> dict[str, str]:
        headers = {"PAYMENT-SIGNATURE": payment} if payment is not None else {}
        if request_id is not None:
            headers["X-Request-ID"] = request_id
        return headers

    @contextlib.asynccontextmanager
    async def connect(self, concurrency: int) -> AsyncIterator[Send]:
        async with _session(concurrency) as session:

            async def send(headers: dict[str, str]) -> str | None:
                async with session.get(self.url, headers=headers) as response:
                    await response.read()
                    if response.status == 402:
                        return f"http_402 {_refusal(response.headers)}"
                    if response.status != 200:
                        return f"http_{response.status}"
                    if self.paid and "PAYMENT-RESPONSE" not in response.headers:
                        return "no_payment_response"
                    return None

            yield send


def _refusal(headers: Any) -> str:
    """Why a 402 refused a payment: the failed settlement's reason, else the challenge's error."""
    try:
        if "PAYMENT-RESPONSE" in headers:
            return decode_payment_response_header(headers["PAYMENT-RESPONSE"]).error_reason or "settle_failed"
        if "PAYMENT-REQUIRED" in headers:
            return decode_payment_required_header(headers["PAYMENT-REQUIRED"]).error or "payment_required"
    except ValueError:
        return "undecodable"
    return "no_header"


@dataclass
class ChannelTarget(HttpTarget):
    """A paid URL paid through batch-settlement channels: the deposit opening each
    channel and the vouchers after it are all ordinary paid requests (PAYMENT-SIGNATURE;
    200 with PAYMENT-RESPONSE)."""

    paid: bool = True

    async def challenge(self) -> PaymentRequired:
        """The 402 narrowed to its first batch-settlement option."""
        required = await super().challenge()
        assert required is not None
        options = [option for option in required.accepts if option.scheme == SCHEME_BATCH_SETTLEMENT]
        if not options:
            offered = ", ".join(sorted({option.scheme for option in required.accepts})) or "nothing"
            raise TargetSkipped(f"its 402 offers no {SCHEME_BATCH_SETTLEMENT} (accepts: {offered})")
        return required.model_copy(update={"accepts": options[:1]})


@dataclass
class SidecarTarget:
    """Authorize + Settle for `url`, paid like the gateway's records route."""

    name: str
    target: str  # host:port
    url: str
    route: RouteSpec

    def __post_init__(self) -> None:
        require_loopback(self.target)
        require_loopback(self.url)

    def _authorize(self, payment: str, request_id: str | None = None) -> payment_pb2.AuthorizeRequest:
        return payment_pb2.AuthorizeRequest(
            request_id=request_id or uuid.uuid4().hex,
            method="GET",
            url=self.url,
            route=self.route.to_proto(),
            payment_signature=payment,
            client_ip="127.0.0.1",
            user_agent=USER_AGENT,
            headers={"accept": "*/*", "user-agent": USER_AGENT, "host": self.url.split("/")[2]},
            query=self.url.partition("?")[2],
        )

    async def challenge(self) -> PaymentRequired:
        async with grpc.aio.insecure_channel(self.target) as channel:
            answer = await payment_pb2_grpc.PaymentServiceStub(channel).Authorize(
                self._authorize(""), timeout=REQUEST_TIMEOUT_S
            )
        if answer.WhichOneof("outcome") != "payment_required":
            raise TargetError(f"{self.name}: Authorize without payment gave {answer.WhichOneof('outcome')}")
        return decode_payment_required_header(answer.payment_required.headers["PAYMENT-REQUIRED"])

    def prepare(self, payment: str, request_id: str | None = None) -> payment_pb2.AuthorizeRequest:
        return self._authorize(payment, request_id)

    @contextlib.asynccontextmanager
    async def connect(self, concurrency: int) -> AsyncIterator[Send]:
        async with grpc.aio.insecure_channel(self.target) as channel:
            stub = payment_pb2_grpc.PaymentServiceStub(channel)

            async def send(request: payment_pb2.AuthorizeRequest) -> str | None:
                metadata = (("x-request-id", request.request_id),)
                authorized = await stub.Authorize(request, timeout=REQUEST_TIMEOUT_S, metadata=metadata)
                outcome = authorized.WhichOneof("outcome")
                if outcome != "verified":
                    return authorized.rejected.reason if outcome == "rejected" else str(outcome)
                settled = await stub.Settle(
                    payment_pb2.SettleRequest(
                        payment_id=authorized.verified.payment_id,
                        claim_token=authorized.verified.claim_token,
                        tracking_id=authorized.tracking_id,
                        response_status=200,
                        response_time_ms=1,
                        request_id=request.request_id,
                    ),
                    timeout=REQUEST_TIMEOUT_S,
                    metadata=metadata,
                )
                return None if settled.success else f"settle_{settled.reason or 'failed'}"

            yield send


@dataclass
class FacilitatorTarget:
    """POST /verify then /settle, bodies as the sidecar sends them."""

    name: str
    url: str
    # Payments for the facilitator alone answer the sidecar's own challenge.
    requirements_from: Callable[[], Awaitable[PaymentRequired]]

    def __post_init__(self) -> None:
        require_loopback(self.url)

    async def challenge(self) -> PaymentRequired:
        return await self.requirements_from()

    def prepare(self, payment: str, request_id: str | None = None) -> bytes:
        payload: dict[str, Any] = json.loads(base64.b64decode(payment))
        # A v2 payload carries the requirements it accepted; for these payments they are
        # what the sidecar sends (its route, the amount signed).
        requirements = payload["accepted"]
        return json.dumps(
            {"x402Version": payload["x402Version"], "paymentPayload": payload, "paymentRequirements": requirements}
        ).encode()

    @contextlib.asynccontextmanager
    async def connect(self, concurrency: int) -> AsyncIterator[Send]:
        headers = {"Content-Type": "application/json"}
        async with _session(concurrency) as session:

            async def send(body: bytes) -> str | None:
                async with session.post(f"{self.url}/verify", data=body, headers=headers) as response:
                    verified = await response.json()
                if not verified.get("isValid"):
                    return f"verify_{verified.get('invalidReason', response.status)}"
                async with session.post(f"{self.url}/settle", data=body, headers=headers) as response:
                    settled = await response.json()
                return None if settled.get("success") else f"settle_{settled.get('errorReason', response.status)}"

            yield send
