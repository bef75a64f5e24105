"""Paying a sidecar's routes through batch-settlement channels with the SDK's
client (tests/devnet/channels.py's ChannelPayer), the way a paywalled service
calls the sidecar: Authorize, then Settle or Release."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import aiohttp

from x402.http.utils import decode_payment_required_header, decode_payment_response_header, encode_payment_signature_header
from x402.mechanisms.evm.batch_settlement.client import process_payment_response
from x402.schemas import PaymentPayload, PaymentRequired, PaymentRequirements

from devnet.wallets import MERCHANT_ADDRESS
from paysidecar.v1 import payment_pb2
from tests.devnet.channels import ChannelPayer
from tests.devnet.support import wire
from tests.support.calls import URL

PRICE = 1000  # the route's "$0.001" in USDC atomic units
BATCH = "batch-settlement"


def route(**fields: Any) -> payment_pb2.Route:
    values: dict[str, Any] = dict(key="GET /v1/records", price="$0.001", pay_to=MERCHANT_ADDRESS, network="eip155:84532")
    values.update(fields)
    return payment_pb2.Route(**values)


def authorize_request(header: str = "", **route_fields: Any) -> payment_pb2.AuthorizeRequest:
    return payment_pb2.AuthorizeRequest(
        request_id=uuid.uuid4().hex,
        method="GET",
        url=URL,
        route=route(**route_fields),
        payment_signature=header,
        client_ip="127.0.0.1",
        user_agent="tests",
    )


def settle_request(authorized: payment_pb2.AuthorizeResponse, status: int = 200, charge: str | None = None):
    request = payment_pb2.SettleRequest(
        payment_id=authorized.verified.payment_id,
        tracking_id=authorized.tracking_id,
        claim_token=authorized.verified.claim_token,
        response_status=status,
        response_time_ms=3,
    )
    if charge is not None:
        request.charge = charge
    return request


def release_request(authorized: payment_pb2.AuthorizeResponse, reason: str = "handler_status_500"):
    return payment_pb2.ReleaseRequest(
        payment_id=authorized.verified.payment_id,
        tracking_id=authorized.tracking_id,
        claim_token=authorized.verified.claim_token,
        reason=reason,
        response_status=500,
    )


def required_of(answer: Any) -> PaymentRequired:
    """The PaymentRequired of a 402 the sidecar gave (payment_required or rejected)."""
    return decode_payment_required_header(answer.headers["PAYMENT-REQUIRED"])


def batch_offer(required: PaymentRequired) -> PaymentRequirements:
    return next(offer for offer in required.accepts if offer.scheme == BATCH)


async def facilitator_settle(facilitator: Any, payload: PaymentPayload) -> dict[str, Any]:
    """POST /settle to a devnet facilitator as a server sends claim / settle requests."""
    async with aiohttp.ClientSession() as session:
        async with session.post(facilitator.url + "/settle", json=wire(payload, payload.accepted)) as response:
            assert response.status == 200
            return await response.json()


def receipt(headers: Any) -> dict[str, Any]:
    return decode_payment_response_header(headers["PAYMENT-RESPONSE"]).model_dump(by_alias=True, exclude_none=True)


@dataclass
class Paid:
    payload: PaymentPayload
    authorized: payment_pb2.AuthorizeResponse
    settled: payment_pb2.SettleResponse | None = None

    @property
    def outcome(self) -> str:
        return self.authorized.WhichOneof("outcome")

    @property
    def reason(self) -> str:
        return self.authorized.rejected.reason


class ChannelClient:
    """One payer paying one sidecar's route through its channel."""

    def __init__(self, sidecar: Any, payer: ChannelPayer | None = None, **route_fields: Any) -> None:
        self.sidecar = sidecar
        self.payer = payer or ChannelPayer(0)
        self.route_fields = route_fields
        self.offer: PaymentRequirements | None = None

    async def required(self) -> PaymentRequired:
        answer = await self.sidecar.payments.Authorize(authorize_request(**self.route_fields))
        assert answer.WhichOneof("outcome") == "payment_required", answer
        return required_of(answer.payment_required)

    async def requirements(self) -> PaymentRequirements:
        if self.offer is None:
            self.offer = batch_offer(await self.required())
        return self.offer

    async def next_payload(self) -> PaymentPayload:
        return await self.payer.pay(await self.requirements())

    async def authorize(self, payload: PaymentPayload) -> Paid:
        header = encode_payment_signature_header(payload)
        return Paid(payload, await self.sidecar.payments.Authorize(authorize_request(header, **self.route_fields)))

    async def settle(self, paid: Paid, charge: str | None = None) -> Paid:
        paid.settled = await self.sidecar.payments.Settle(settle_request(paid.authorized, charge=charge))
        if paid.settled.success:
            self.apply(paid)
        return paid

    def apply(self, paid: Paid) -> None:
        """The client's hook on a paid answer: its local channel moves on by the charge."""
        local: dict[str, Any] = {"channel_id": paid.payload.payload["voucher"]["channelId"], "request_amount": str(PRICE)}
        if paid.payload.payload["type"] == "deposit":
            local["deposit_amount"] = paid.payload.payload["deposit"]["amount"]
        process_payment_response(self.payer.storage, paid.settled.headers.get, local)

    async def pay(self, charge: str | None = None) -> Paid:
        """One whole paid request: the next payload, Authorize, then Settle if verified."""
        paid = await self.authorize(await self.next_payload())
        if paid.outcome == "verified":
            await self.settle(paid, charge)
        return paid
