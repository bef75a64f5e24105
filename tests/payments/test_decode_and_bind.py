"""Money rules 1 and 5 at the domain edge: malformed headers are 400s with a
reason; a payment not bound to the route is refused before any facilitator."""

from __future__ import annotations

import base64
import json

import pytest

from sidecar.constants import Reason
from sidecar.payments.binding import bind
from sidecar.payments.codec import decode_payment
from sidecar.payments.errors import PaymentError
from sidecar.payments.routes import RouteTerms, price_route
from tests.support.payments import sign_for, sign_v1_for
from devnet.wallets import MERCHANT_ADDRESS

URL = "http://127.0.0.1:8402/v1/records"
ROUTE = price_route(RouteTerms(key="GET /v1/records", price="$0.001", pay_to=MERCHANT_ADDRESS, network="eip155:84532"))


def b64(value) -> str:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return base64.b64encode(raw).decode()


async def _valid_wire() -> dict:
    return json.loads(base64.b64decode(await sign_for(URL)))


MALFORMED = {
    "not_base64": ("%%%not-base64%%%", Reason.INVALID_HEADER),
    "not_json": (b64(b"\xff\xfe not json"), Reason.INVALID_HEADER),
    "json_array": (b64([1, 2, 3]), Reason.INVALID_HEADER),
    "version_3": (b64({"x402Version": 3}), Reason.UNSUPPORTED_VERSION),
    "version_string": (b64({"x402Version": "2"}), Reason.UNSUPPORTED_VERSION),
    "missing_payload": (b64({"x402Version": 2}), Reason.INVALID_HEADER),
    "oversize": ("A" * (17 * 1024), Reason.HEADER_TOO_LARGE),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_payment_header_is_a_400_with_reason(name):
    value, reason = MALFORMED[name]
    with pytest.raises(PaymentError) as caught:
        decode_payment("PAYMENT-SIGNATURE", value)
    assert caught.value.status == 400
    assert caught.value.reason == reason


@pytest.mark.parametrize(
    "path, bad_value",
    [
        (("payload", "authorization", "value"), 1000),  # number, not string
        (("payload", "authorization", "nonce"), "0x1234"),
        (("payload", "authorization", "from"), "not-an-address"),
        (("payload", "signature"), 12345),
        (("accepted",), "exact"),
    ],
)
async def test_wrong_types_in_payload_are_400(path, bad_value):
    wire = await _valid_wire()
    target = wire
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = bad_value
    with pytest.raises(PaymentError) as caught:
        decode_payment("PAYMENT-SIGNATURE", b64(wire))
    assert (caught.value.status, caught.value.reason) == (400, Reason.INVALID_HEADER)


async def test_bound_payment_yields_requirements_for_what_was_signed():
    payment = decode_payment("PAYMENT-SIGNATURE", await sign_for(URL))
    requirements = bind(payment, ROUTE, URL)
    assert requirements["amount"] == "1000"
    assert requirements["payTo"] == MERCHANT_ADDRESS
    assert requirements["asset"] == ROUTE.asset


async def test_payment_for_cheap_route_is_refused_on_dear_route():
    dear = price_route(RouteTerms(key="dear", price="$0.01", pay_to=MERCHANT_ADDRESS, network="eip155:84532"))
    payment = decode_payment("PAYMENT-SIGNATURE", await sign_for(URL, amount=1000))
    with pytest.raises(PaymentError) as caught:
        bind(payment, dear, URL)
    assert caught.value.reason == Reason.AMOUNT_TOO_LOW


@pytest.mark.parametrize(
    "overrides, reason",
    [
        ({"pay_to": "0x90F79bf6EB2c4f870365E785982E1f101E93b906"}, Reason.PAY_TO_MISMATCH),
        ({"network": "eip155:8453"}, Reason.NETWORK_MISMATCH),
        ({"asset": "0x0000000000000000000000000000000000000001"}, Reason.ASSET_MISMATCH),
    ],
)
async def test_altered_terms_are_refused_before_any_facilitator(overrides, reason):
    payment = decode_payment("PAYMENT-SIGNATURE", await sign_for(URL, **overrides))
    with pytest.raises(PaymentError) as caught:
        bind(payment, ROUTE, URL)
    assert (caught.value.status, caught.value.reason) == (402, reason)


@pytest.mark.parametrize(
    "field, value",
    [
        ("maxTimeoutSeconds", -5),
        ("maxTimeoutSeconds", 10**9),
        ("maxTimeoutSeconds", 0),
        ("extra", {"name": "USDC", "version": "3"}),
        ("extra", {"name": "USDC"}),
        ("extra", {"name": "USDC", "version": "2", "chosen": "by the payer"}),
    ],
)
async def test_accepted_requirements_must_be_the_routes_own(field, value):
    wire = await _valid_wire()
    wire["accepted"][field] = value
    payment = decode_payment("PAYMENT-SIGNATURE", b64(wire))
    with pytest.raises(PaymentError) as caught:
        bind(payment, ROUTE, URL)
    assert (caught.value.status, caught.value.reason) == (402, Reason.REQUIREMENTS_MISMATCH)


async def test_v2_network_must_be_named_as_the_route_names_it():
    wire = await _valid_wire()
    wire["accepted"]["network"] = "base-sepolia"  # the v1 name of the same chain
    with pytest.raises(PaymentError) as caught:
        bind(decode_payment("PAYMENT-SIGNATURE", b64(wire)), ROUTE, URL)
    assert caught.value.reason == Reason.NETWORK_MISMATCH


async def test_bound_v2_requirements_are_the_offer_with_the_signed_amount():
    payment = decode_payment("PAYMENT-SIGNATURE", await sign_for(URL, amount=1500))
    requirements = bind(payment, ROUTE, URL)
    assert requirements["maxTimeoutSeconds"] == ROUTE.max_timeout_seconds
    assert requirements["extra"] == ROUTE.extra
    assert requirements["amount"] == "1500"


async def test_payment_for_another_resource_is_refused():
    payment = decode_payment("PAYMENT-SIGNATURE", await sign_for("http://127.0.0.1:8402/v1/datasets/other/records"))
    with pytest.raises(PaymentError) as caught:
        bind(payment, ROUTE, URL)
    assert caught.value.reason == Reason.RESOURCE_MISMATCH


async def test_v1_payment_binds_with_v1_requirements():
    payment = decode_payment("X-PAYMENT", await sign_v1_for(URL))
    requirements = bind(payment, ROUTE, URL)
    assert payment.version == 1
    assert requirements["network"] == "base-sepolia"
    assert requirements["maxAmountRequired"] == "1000"
