"""The paid flow over real gRPC against the devnet: challenge, pay, settle once."""

from __future__ import annotations

import base64
import json

import asyncpg
import pytest

from devnet.wallets import MERCHANT_ADDRESS, payer_account
from tests.support.calls import URL, authorize_request, challenge, receipt, release_request, settle_request
from tests.support.payments import sign_for, sign_v1_for

PRICE = 1000  # $0.001 in USDC atomic units
PAYER = payer_account(0).address


async def test_unpaid_request_gets_decodable_402(sidecar):
    response = await sidecar.payments.Authorize(authorize_request())
    assert response.WhichOneof("outcome") == "payment_required"
    answer = response.payment_required
    assert answer.status == 402
    body = challenge(answer)
    assert body["x402Version"] == 2
    (accept,) = body["accepts"]
    assert accept["amount"] == str(PRICE)
    assert accept["payTo"] == MERCHANT_ADDRESS
    assert accept["network"] == "eip155:84532"
    assert body["resource"]["url"] == URL


async def test_malformed_payment_is_answered_in_the_one_error_shape_with_the_request_id(sidecar):
    request = authorize_request("!!not base64!!")
    response = await sidecar.payments.Authorize(request)
    rejected = response.rejected
    assert rejected.status == 400
    assert rejected.headers["Content-Type"].startswith("application/json")
    assert json.loads(rejected.body) == {
        "error": {"code": rejected.reason, "message": rejected.message, "request_id": request.request_id}
    }


async def test_a_route_named_in_the_config_fills_what_the_caller_leaves_out(make_sidecar):
    other = "0x" + "34" * 20
    sidecar = await make_sidecar(routes={"dear": {"price": "$0.05", "pay_to": other, "description": "dear rows"}})
    request = authorize_request(price="", pay_to="", network="", key="")
    request.route.name = "dear"
    request.route.description = "what the caller says"
    try:
        response = await sidecar.payments.Authorize(request)
    finally:
        await sidecar.stop()
    body = challenge(response.payment_required)
    (accept,) = body["accepts"]
    assert (accept["amount"], accept["payTo"], accept["network"]) == ("50000", other, "eip155:84532")
    assert body["resource"]["description"] == "what the caller says"


async def test_paid_request_settles_and_moves_the_price(sidecar, chain):
    before = chain.balance_of(PAYER), chain.balance_of(MERCHANT_ADDRESS)
    authorized = await sidecar.payments.Authorize(authorize_request(await sign_for(URL)))
    assert authorized.WhichOneof("outcome") == "verified"
    assert authorized.verified.payer == PAYER

    settled = await sidecar.payments.Settle(settle_request(authorized))
    assert settled.success
    paid = receipt(settled.headers)
    assert paid["success"] is True
    assert chain.receipt(paid["transaction"]) is not None
    assert chain.balance_of(PAYER) == before[0] - PRICE
    assert chain.balance_of(MERCHANT_ADDRESS) == before[1] + PRICE


async def test_same_payment_twice_is_refused_and_moves_money_once(sidecar, chain, facilitators):
    header = await sign_for(URL)
    first = await sidecar.payments.Authorize(authorize_request(header))
    assert (await sidecar.payments.Settle(settle_request(first))).success
    transfers = chain.transfers_applied

    second = await sidecar.payments.Authorize(authorize_request(header))
    assert second.WhichOneof("outcome") == "rejected"
    assert (second.rejected.status, second.rejected.reason) == (402, "payment_already_used")
    assert chain.transfers_applied == transfers
    assert facilitators[0].stats.settle_calls == 1


async def test_tampered_signature_is_refused_without_settle(sidecar, chain, facilitators):
    wire = json.loads(base64.b64decode(await sign_for(URL)))
    signature = wire["payload"]["signature"]
    wire["payload"]["signature"] = signature[:-4] + ("0000" if signature[-4:] != "0000" else "1111")
    tampered = base64.b64encode(json.dumps(wire).encode()).decode()

    response = await sidecar.payments.Authorize(authorize_request(tampered))
    assert response.WhichOneof("outcome") == "rejected"
    assert response.rejected.status == 402
    assert facilitators[0].stats.settle_calls == 0
    assert chain.transfers_applied == 0


async def test_v1_payment_is_answered_in_v1(sidecar, chain):
    authorized = await sidecar.payments.Authorize(authorize_request(await sign_v1_for(URL), v1=True))
    assert authorized.verified.x402_version == 1
    settled = await sidecar.payments.Settle(settle_request(authorized))
    assert settled.success
    assert "X-PAYMENT-RESPONSE" in settled.headers
    assert receipt(settled.headers)["network"] == "base-sepolia"
    assert chain.transfers_applied == 1


async def test_released_payment_moves_nothing_and_can_be_used_later(sidecar, chain):
    header = await sign_for(URL)
    first = await sidecar.payments.Authorize(authorize_request(header))
    released = await sidecar.payments.Release(release_request(first, "handler_status_500", status=500))
    assert released.state == "released"
    assert chain.transfers_applied == 0

    again = await sidecar.payments.Authorize(authorize_request(header))
    assert again.WhichOneof("outcome") == "verified"
    assert (await sidecar.payments.Settle(settle_request(again))).success
    assert chain.transfers_applied == 1


async def test_tracking_record_has_payment_fields_and_no_raw_signature(sidecar, database_url):
    header = await sign_for(URL)
    authorized = await sidecar.payments.Authorize(authorize_request(header))
    await sidecar.payments.Settle(settle_request(authorized))
    await sidecar.sidecar.writer.flush()

    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow(
            "SELECT *, row_to_json(r)::text AS everything FROM resource_call_records r WHERE id = $1",
            __import__("uuid").UUID(authorized.tracking_id),
        )
        ledger_text = await conn.fetchval("SELECT json_agg(l)::text FROM payment_ledger l")
    finally:
        await conn.close()
    assert row["payment_verified"] is True
    assert row["verification_error"] is None
    payment = json.loads(row["payment"]) if isinstance(row["payment"], str) else row["payment"]
    assert payment["payer"] == PAYER and payment["amount"] == "1000" and payment["pay_to"] == MERCHANT_ADDRESS
    settlement = json.loads(row["settlement"]) if isinstance(row["settlement"], str) else row["settlement"]
    assert settlement["success"] is True and settlement["transaction"]
    assert row["x402_version"] == 2 and row["payment_nonce"] and row["payload_hash"]
    signature = json.loads(base64.b64decode(header))["payload"]["signature"]
    for stored in (row["everything"], ledger_text):
        assert signature[2:].lower() not in stored.lower()
        assert header not in stored
    assert "secret-token" not in row["everything"]


def _edited(header: str, field: str, value) -> str:
    """The same signed payment with one field of `accepted` changed: the payer signs
    only the authorization, so everything else in `accepted` is the payer's to write."""
    wire = json.loads(base64.b64decode(header))
    wire["accepted"][field] = value
    return base64.b64encode(json.dumps(wire).encode()).decode()


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("maxTimeoutSeconds", -5, "requirements_mismatch"),
        ("maxTimeoutSeconds", 10**9, "requirements_mismatch"),
        ("maxTimeoutSeconds", 61, "requirements_mismatch"),
        ("extra", {"name": "USDC", "version": "2", "note": "mine"}, "requirements_mismatch"),
        ("extra", {"name": "USD Coin", "version": "2"}, "requirements_mismatch"),
        ("extra", {}, "requirements_mismatch"),
        ("network", "base-sepolia", "network_mismatch"),
        ("scheme", "EXACT", "scheme_mismatch"),
    ],
)
async def test_accepted_terms_other_than_the_routes_are_a_402_before_any_facilitator(
    sidecar, chain, facilitators, field, value, reason
):
    header = _edited(await sign_for(URL), field, value)
    response = await sidecar.payments.Authorize(authorize_request(header))
    assert response.WhichOneof("outcome") == "rejected"
    assert (response.rejected.status, response.rejected.reason) == (402, reason)
    assert challenge(response.rejected)["error"] == reason
    assert facilitators[0].stats.verify_calls == 0
    assert chain.transfers_applied == 0
