"""The x402 payment-identifier extension: one id is paid at most once per payer.
A payment with an id its payer already paid with is never settled: served again
from the first payment for the same request, 409 for another one or past the
window, 409 in flight (retry later) while the first is under way."""

from __future__ import annotations

import asyncio
import base64
import json

import grpc
import pytest
from google.protobuf.json_format import MessageToDict
from x402.extensions.payment_identifier import PAYMENT_IDENTIFIER
from x402.http.utils import decode_payment_required_header

from devnet.wallets import payer_account
from paysidecar.v1 import tracking_pb2
from tests.support.calls import URL, authorize_request, b64json, receipt, release_request, settle_request
from tests.support.payments import sign_v2, sign_with_identifier

PAYMENT_ID = "pay_retry_safely_0000000001"


async def offer(sidecar, url: str = URL, **route_fields):
    """The route's 402, as a client reads it from the PAYMENT-REQUIRED header."""
    unpaid = await sidecar.payments.Authorize(authorize_request(url=url, **route_fields))
    return decode_payment_required_header(unpaid.payment_required.headers["PAYMENT-REQUIRED"])


async def authorize(sidecar, header: str, url: str = URL, **route_fields):
    return await sidecar.payments.Authorize(authorize_request(header, url=url, **route_fields))


async def buy(sidecar, identifier: str | None = PAYMENT_ID, url: str = URL, payer_index: int = 0, **route_fields):
    """Pay the route's 402 afresh (a new authorization) with `identifier`:
    (Authorize's answer, Settle's answer or None when not verified)."""
    header = await sign_with_identifier(await offer(sidecar, url, **route_fields), identifier, payer_index)
    authorized = await authorize(sidecar, header, url, **route_fields)
    if authorized.WhichOneof("outcome") != "verified":
        return authorized, None
    return authorized, await sidecar.payments.Settle(settle_request(authorized))


def refusal(authorized) -> tuple[int, str, dict]:
    rejected = authorized.rejected
    return rejected.status, rejected.reason, dict(rejected.headers)


async def record(sidecar, tracking_id: str) -> dict:
    await sidecar.sidecar.writer.flush()
    found = await sidecar.tracking.GetRecord(tracking_pb2.GetRecordRequest(id=tracking_id))
    return MessageToDict(found, preserving_proto_field_name=True)


async def test_every_402_declares_the_extension_optional_unless_the_route_requires_it(sidecar):
    optional = await offer(sidecar)
    required = await offer(sidecar, payment_identifier_required=True)

    assert optional.extensions[PAYMENT_IDENTIFIER]["info"] == {"required": False}
    assert required.extensions[PAYMENT_IDENTIFIER]["info"] == {"required": True}
    assert optional.extensions[PAYMENT_IDENTIFIER]["schema"]["properties"]["id"]["minLength"] == 16


async def test_a_resigned_retry_with_the_same_id_is_served_from_the_first_payment(sidecar, chain, facilitators):
    first, first_settled = await buy(sidecar)
    retried, retry_settled = await buy(sidecar)

    assert first_settled.success and retry_settled.success
    assert retried.verified.redeem is True  # Settle will not charge again
    assert receipt(retry_settled.headers) == receipt(first_settled.headers)
    assert retry_settled.transaction == first_settled.transaction
    assert chain.transfers_applied == 1
    assert facilitators[0].stats.settle_calls == 1
    # The retry's own authorization was verified (only the payer may use its id), never settled.
    assert facilitators[0].stats.verify_calls == 2


async def test_the_identical_payment_resent_is_served_again_without_a_transfer(sidecar, chain, facilitators):
    header = await sign_with_identifier(await offer(sidecar), PAYMENT_ID)
    first = await authorize(sidecar, header)
    settled = await sidecar.payments.Settle(settle_request(first))

    again = await authorize(sidecar, header)
    served = await sidecar.payments.Settle(settle_request(again))

    assert settled.success and served.success
    assert served.transaction == settled.transaction
    assert chain.transfers_applied == 1
    # The very payload verified before is its payer's proof already.
    assert facilitators[0].stats.verify_calls == 1


async def test_the_same_id_for_another_request_is_409_and_moves_nothing(sidecar, chain):
    await buy(sidecar, url=URL + "?_limit=1")

    other_query, _ = await buy(sidecar, url=URL + "?_limit=2")
    dearer, _ = await buy(sidecar, url=URL + "?_limit=1", price="$0.002")

    assert refusal(other_query)[:2] == (409, "payment_identifier_conflict")
    assert refusal(dearer)[:2] == (409, "payment_identifier_conflict")
    assert json.loads(other_query.rejected.body)["error"]["code"] == "payment_identifier_conflict"
    assert chain.transfers_applied == 1


async def test_the_query_in_another_order_is_the_same_request(sidecar, chain):
    await buy(sidecar, url=URL + "?city=Oslo&_limit=1")

    _, settled = await buy(sidecar, url=URL + "?_limit=1&city=Oslo")

    assert settled.success
    assert chain.transfers_applied == 1


async def test_past_the_window_a_delivered_payment_is_409(make_sidecar, chain):
    # A window shorter than any Authorize-to-Settle round trip: over by the retry.
    sidecar = await make_sidecar(idempotency_window_s=0.001)
    try:
        _, first = await buy(sidecar)
        late, _ = await buy(sidecar)
    finally:
        await sidecar.stop()
    assert first.success
    assert refusal(late)[:2] == (409, "payment_identifier_expired")
    assert chain.transfers_applied == 1


async def test_a_payment_never_delivered_is_served_to_its_id_past_the_window(make_sidecar, chain):
    sidecar = await make_sidecar(idempotency_window_s=0.001)
    try:
        first, settled = await buy(sidecar)
        # The paid answer never reached the client.
        await sidecar.payments.Release(release_request(first, "response_not_delivered"))
        retried, served = await buy(sidecar)
        # Delivered now: the window holds from here on.
        late, _ = await buy(sidecar)
    finally:
        await sidecar.stop()
    assert settled.success and retried.verified.redeem and served.success
    assert served.transaction == settled.transaction
    assert refusal(late)[:2] == (409, "payment_identifier_expired")
    assert chain.transfers_applied == 1


async def test_another_payer_with_the_same_id_makes_a_purchase_of_its_own(sidecar, chain):
    _, mine = await buy(sidecar, payer_index=0)
    _, theirs = await buy(sidecar, payer_index=2)

    assert mine.success and theirs.success
    assert mine.transaction != theirs.transaction
    assert chain.transfers_applied == 2


async def test_a_payment_posing_as_another_payer_cannot_use_its_id(sidecar, chain):
    await buy(sidecar, payer_index=0)
    # Payer 2 signs, then writes payer 0 as the authorization's signer.
    forged = b64json(await sign_with_identifier(await offer(sidecar), PAYMENT_ID, payer_index=2))
    forged["payload"]["authorization"]["from"] = payer_account(0).address
    header = base64.b64encode(json.dumps(forged).encode()).decode()

    answer = await authorize(sidecar, header)

    assert refusal(answer)[:2] == (402, "invalid_payment")
    assert chain.transfers_applied == 1


async def test_while_the_first_payment_is_under_way_a_retry_gets_409_to_retry(sidecar, chain):
    first = await authorize(sidecar, await sign_with_identifier(await offer(sidecar), PAYMENT_ID))
    assert first.WhichOneof("outcome") == "verified"

    meanwhile, _ = await buy(sidecar)
    status, reason, headers = refusal(meanwhile)
    settled = await sidecar.payments.Settle(settle_request(first))
    _, after = await buy(sidecar)

    assert (status, reason, headers["Retry-After"]) == (409, "payment_identifier_in_flight", "1")
    assert settled.success and after.success and after.transaction == settled.transaction
    assert chain.transfers_applied == 1


async def test_a_released_first_payment_leaves_the_id_free(sidecar, chain):
    first = await authorize(sidecar, await sign_with_identifier(await offer(sidecar), PAYMENT_ID))
    await sidecar.payments.Release(release_request(first, "handler_status_500", status=500))

    retried, settled = await buy(sidecar)

    assert retried.verified.redeem is False and settled.success
    assert chain.transfers_applied == 1


async def test_concurrent_requests_with_one_id_settle_once(sidecar, chain, facilitators):
    required = await offer(sidecar)
    headers = [await sign_with_identifier(required, PAYMENT_ID) for _ in range(8)]

    async def pay(header: str):
        authorized = await authorize(sidecar, header)
        if authorized.WhichOneof("outcome") != "verified":
            return authorized.rejected.reason
        settled = await sidecar.payments.Settle(settle_request(authorized))
        return settled.transaction if settled.success else settled.reason

    answers = await asyncio.gather(*(pay(header) for header in headers))

    transactions = {answer for answer in answers if answer.startswith("0x")}
    assert len(transactions) == 1
    assert set(answers) - transactions <= {"payment_identifier_in_flight"}
    assert chain.transfers_applied == 1
    assert facilitators[0].stats.settle_calls == 1


async def test_one_replay_at_a_time(sidecar, chain):
    await buy(sidecar)
    replaying = await authorize(sidecar, await sign_with_identifier(await offer(sidecar), PAYMENT_ID))

    meanwhile, _ = await buy(sidecar)
    await sidecar.payments.Release(release_request(replaying, "handler_status_500", status=500))
    _, after = await buy(sidecar)

    assert replaying.verified.redeem is True
    assert refusal(meanwhile)[:2] == (409, "payment_identifier_in_flight")
    assert after.success
    assert chain.transfers_applied == 1


async def test_a_route_that_requires_an_id_refuses_a_payment_without_one(sidecar, chain, facilitators):
    answer, _ = await buy(sidecar, identifier=None, payment_identifier_required=True)

    assert refusal(answer)[:2] == (400, "payment_identifier_required")
    assert facilitators[0].stats.verify_calls == 0
    assert chain.transfers_applied == 0


@pytest.mark.parametrize(
    "info",
    [
        {"required": False, "id": "too_short"},
        {"required": False, "id": "x" * 129},
        {"required": False, "id": "pay_with spaces_0001"},
        {"required": False, "id": "pay_ünïcode_000000001"},
        {"required": False, "id": 1234567890123456},
        {"required": "no", "id": PAYMENT_ID},
        "not an object",
    ],
)
async def test_an_id_the_extension_refuses_is_400(sidecar, chain, facilitators, info):
    required = await offer(sidecar)
    declared = required.extensions[PAYMENT_IDENTIFIER]
    extensions = {**required.extensions, PAYMENT_IDENTIFIER: {**declared, "info": info}}

    answer = await authorize(sidecar, await sign_v2(required, extensions=extensions))

    assert refusal(answer)[:2] == (400, "invalid_payment_identifier")
    assert facilitators[0].stats.verify_calls == 0
    assert chain.transfers_applied == 0


async def test_an_id_is_checked_by_the_extensions_schema_not_the_payers(sidecar, chain):
    required = await offer(sidecar)
    lax = {"info": {"required": False, "id": "short"}, "schema": {"type": "object"}}
    extensions = {**required.extensions, PAYMENT_IDENTIFIER: lax}

    answer = await authorize(sidecar, await sign_v2(required, extensions=extensions))

    assert refusal(answer)[:2] == (400, "invalid_payment_identifier")


async def test_tracking_records_link_a_retry_to_the_first_call_by_the_id(sidecar):
    first, _ = await buy(sidecar)
    retried, _ = await buy(sidecar)

    first_record = await record(sidecar, first.tracking_id)
    retry_record = await record(sidecar, retried.tracking_id)

    assert first_record["metadata"]["payment_identifier"] == {"id": PAYMENT_ID}
    assert retry_record["metadata"]["payment_identifier"] == {
        "id": PAYMENT_ID,
        "replay_of": retried.verified.payment_id,
    }
    assert retried.verified.payment_id == first.verified.payment_id
    assert retry_record["settlement"]["success"] is True
    assert retry_record["settlement"]["transaction"] == first_record["settlement"]["transaction"]
    assert retry_record["settlement"]["replay_of"] == first.verified.payment_id
    assert retry_record["payload_hash"] != first_record["payload_hash"]


async def test_another_replica_settles_or_releases_a_replay(make_sidecar, chain):
    a, b = await make_sidecar(), await make_sidecar()
    try:
        await buy(a)
        header = await sign_with_identifier(await offer(a), PAYMENT_ID)
        replaying = await authorize(a, header)
        request = settle_request(replaying)
        with pytest.raises(grpc.aio.AioRpcError) as headerless:
            await b.payments.Settle(request)
        request.payment_signature = header
        served = await b.payments.Settle(request)

        released_elsewhere = await authorize(a, await sign_with_identifier(await offer(a), PAYMENT_ID))
        released = await b.payments.Release(release_request(released_elsewhere, "client_gone"))
        _, after = await buy(a)
    finally:
        await a.stop()
        await b.stop()
    assert headerless.value.code() == grpc.StatusCode.NOT_FOUND
    assert served.success
    assert released.state == "settled"
    assert after.success
    assert chain.transfers_applied == 1


async def test_a_settle_in_doubt_answers_its_id_in_doubt(make_sidecar, facilitators, chain):
    sidecar = await make_sidecar(settle_timeout_s=0.3, reconcile_window_s=0.2, reconcile_poll_s=0.05)
    try:
        # The settle and its retry on the same facilitator go unanswered.
        facilitators[0].arm(stage="settle", mode="hang", times=2)
        first = await authorize(sidecar, await sign_with_identifier(await offer(sidecar), PAYMENT_ID))
        in_doubt = await sidecar.payments.Settle(settle_request(first))
        retried, _ = await buy(sidecar)
    finally:
        await sidecar.stop()
    assert in_doubt.success is False and in_doubt.reason == "payment_in_doubt"
    assert refusal(retried)[:2] == (503, "payment_in_doubt")
    assert chain.transfers_applied == 0
