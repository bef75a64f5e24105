"""The payment-identifier rules (sidecar/payments/idempotency.py), pure: what an
id is bound to, and what a payment carrying one gets."""

from __future__ import annotations

import dataclasses
import uuid

import pytest
from x402.extensions.payment_identifier import PAYMENT_IDENTIFIER, declare_payment_identifier_extension
from x402.schemas import PaymentRequired, ResourceInfo

from devnet.wallets import MERCHANT_ADDRESS
from sidecar.payments import ledger
from sidecar.payments.codec import decode_payment
from sidecar.payments.errors import PaymentError
from sidecar.payments.idempotency import Binding, IdempotencyPolicy, Verdict, decide, fingerprint, identify
from sidecar.payments.ledger import LedgerEntry
from sidecar.payments.routes import RouteTerms, price_route
from tests.support.payments import requirements, sign_with_identifier

URL = "http://127.0.0.1:8402/v1/records"
ROUTE = price_route(RouteTerms(key="GET /v1/records", price="$0.001", pay_to=MERCHANT_ADDRESS, network="eip155:84532"))
POLICY = IdempotencyPolicy(window_s=60.0, replay_timeout_s=600.0)
PAYMENT_ID = "pay_rules_00000000000001"


async def _payment(identifier: str | None = PAYMENT_ID, amount: int = 1000):
    required = PaymentRequired(
        accepts=[requirements(amount)],
        resource=ResourceInfo(url=URL),
        extensions={PAYMENT_IDENTIFIER: declare_payment_identifier_extension()},
    )
    return decode_payment("PAYMENT-SIGNATURE", await sign_with_identifier(required, identifier))


async def test_a_resigned_payment_for_the_same_request_has_the_same_fingerprint():
    first, second = await _payment(), await _payment()

    assert first.payload_hash != second.payload_hash
    assert fingerprint(first, ROUTE, "GET", URL + "?a=1&b=2") == fingerprint(second, ROUTE, "get", URL + "?b=2&a=1")


@pytest.mark.parametrize(
    "method, url, amount, route_key",
    [
        ("HEAD", URL + "?a=1", 1000, "GET /v1/records"),  # method
        ("GET", URL + "?a=2", 1000, "GET /v1/records"),  # query
        ("GET", URL + "?a=1&a=1", 1000, "GET /v1/records"),  # a parameter twice
        ("GET", "http://127.0.0.1:8402/v1/other?a=1", 1000, "GET /v1/records"),  # path under one route key
        ("GET", URL + "?a=1", 2000, "GET /v1/records"),  # amount paid
        ("GET", URL + "?a=1", 1000, "GET /v1/other"),  # route
    ],
)
async def test_anything_else_about_the_request_changes_the_fingerprint(method, url, amount, route_key):
    payment, other = await _payment(), await _payment(amount=amount)
    route = dataclasses.replace(ROUTE, key=route_key)

    assert fingerprint(payment, ROUTE, "GET", URL + "?a=1") != fingerprint(other, route, method, url)


async def test_identify_names_the_payer_in_lower_case_and_the_id():
    payment = await _payment()

    request = identify(payment, ROUTE, "GET", URL)

    assert request is not None
    assert (request.payer, request.identifier) == (payment.authorization.payer.lower(), PAYMENT_ID)


async def test_without_an_id_there_is_nothing_to_identify_unless_the_route_requires_one():
    payment = await _payment(identifier=None)

    assert identify(payment, ROUTE, "GET", URL) is None
    with pytest.raises(PaymentError) as caught:
        identify(payment, dataclasses.replace(ROUTE, payment_identifier_required=True), "GET", URL)
    assert (caught.value.status, caught.value.reason) == (400, "payment_identifier_required")


def _entry(state: str, served: bool = False) -> LedgerEntry:
    return LedgerEntry(
        payment_id="sha256:" + "ab" * 32,
        state=state,
        claim_token=uuid.uuid4(),
        route_key="GET /v1/records",
        resource=URL,
        scheme="exact",
        network="eip155:84532",
        asset="0x036CbD53842c5426634e7929541eC2318f3dCF7e",
        pay_to=MERCHANT_ADDRESS,
        amount=1000,
        payer="0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
        nonce="0x" + "00" * 32,
        valid_before=2_000_000_000,
        x402_version=2,
        facilitator="http://127.0.0.1:4021",
        requirements={},
        payload_hash="cd" * 32,
        requirements_hash="ef" * 32,
        served=served,
    )


async def _decided(state: str | None, *, served: bool = False, same_request: bool = True, age_s: float = 1.0):
    request = identify(await _payment(), ROUTE, "GET", URL)
    bound_to = request.fingerprint if same_request else "another request"
    binding = Binding(request.payer, PAYMENT_ID, bound_to, "sha256:" + "ab" * 32, age_s)
    return decide(binding if state else None, _entry(state, served) if state else None, request, POLICY)


@pytest.mark.parametrize(
    "state, served, same_request, age_s, verdict",
    [
        (None, False, True, 0.0, Verdict.NEW),  # never seen
        (ledger.RELEASED, False, False, 1.0, Verdict.NEW),  # its payment moved no money
        (ledger.FAILED, False, True, 1.0, Verdict.NEW),
        (ledger.VERIFIED, False, True, 1.0, Verdict.IN_FLIGHT),  # its handler runs
        (ledger.SETTLING, False, True, 1.0, Verdict.IN_FLIGHT),
        (ledger.REDEEMING, False, True, 1.0, Verdict.IN_FLIGHT),
        (ledger.UNKNOWN, False, True, 1.0, Verdict.IN_DOUBT),
        (ledger.SETTLED, True, True, 1.0, Verdict.REPLAY),
        (ledger.SETTLED_UNSERVED, False, True, 1.0, Verdict.REPLAY),
        (ledger.SETTLED, True, False, 1.0, Verdict.CONFLICT),  # another request
        (ledger.VERIFIED, False, False, 1.0, Verdict.CONFLICT),
        (ledger.SETTLED, True, True, 61.0, Verdict.EXPIRED),  # past the window
        (ledger.SETTLED_UNSERVED, False, True, 61.0, Verdict.REPLAY),  # never delivered: no window
    ],
)
async def test_what_a_payment_with_a_bound_id_gets(state, served, same_request, age_s, verdict):
    assert await _decided(state, served=served, same_request=same_request, age_s=age_s) is verdict
