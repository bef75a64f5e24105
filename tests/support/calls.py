"""Calling the sidecar the way a paywalled service does."""

from __future__ import annotations

import base64
import json
import uuid

from x402.http.utils import decode_payment_required_header, decode_payment_response_header

from devnet.wallets import MERCHANT_ADDRESS
from paysidecar.v1 import payment_pb2

URL = "http://127.0.0.1:8402/v1/records"


def route(price: str = "$0.001", **fields) -> payment_pb2.Route:
    values = dict(key="GET /v1/records", price=price, pay_to=MERCHANT_ADDRESS, network="eip155:84532")
    values.update(fields)
    return payment_pb2.Route(**values)


def authorize_request(header: str = "", *, url: str = URL, v1: bool = False, **route_fields) -> payment_pb2.AuthorizeRequest:
    return payment_pb2.AuthorizeRequest(
        request_id=uuid.uuid4().hex,
        method="GET",
        url=url,
        route=route(**route_fields),
        payment_signature="" if v1 else header,
        x_payment=header if v1 else "",
        client_ip="127.0.0.1",
        user_agent="tests",
        headers={"Accept": "application/json", "Authorization": "Bearer secret-token"},
    )


def settle_request(authorized: payment_pb2.AuthorizeResponse, status: int = 200) -> payment_pb2.SettleRequest:
    return payment_pb2.SettleRequest(
        payment_id=authorized.verified.payment_id,
        tracking_id=authorized.tracking_id,
        response_status=status,
        response_time_ms=3,
        claim_token=authorized.verified.claim_token,
    )


def release_request(authorized: payment_pb2.AuthorizeResponse, reason: str, status: int = 200) -> payment_pb2.ReleaseRequest:
    return payment_pb2.ReleaseRequest(
        payment_id=authorized.verified.payment_id,
        tracking_id=authorized.tracking_id,
        reason=reason,
        response_status=status,
        claim_token=authorized.verified.claim_token,
    )


def receipt(headers) -> dict:
    """The decoded PAYMENT-RESPONSE (or X-PAYMENT-RESPONSE) of an answer."""
    for name in ("PAYMENT-RESPONSE", "X-PAYMENT-RESPONSE"):
        if name in headers:
            return decode_payment_response_header(headers[name]).model_dump(by_alias=True)
    raise AssertionError(f"no payment response header in {dict(headers)}")


def challenge(answer) -> dict:
    header = decode_payment_required_header(answer.headers["PAYMENT-REQUIRED"])
    body = json.loads(answer.body)
    assert header.model_dump(by_alias=True, exclude_none=True) == body
    return body


def b64json(raw: str) -> dict:
    return json.loads(base64.b64decode(raw))
