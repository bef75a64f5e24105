"""Any service can charge: the Node/Express example and a Starlette app with the
ASGI middleware, each paid end to end by the project's CLI against the real
sidecar, devnet facilitator and chain. Every test runs against both services."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from x402.http.utils import decode_payment_required_header

from devnet.wallets import MERCHANT_ADDRESS, payer_account
from gateway.cli import build_parser, run_call
from paysidecar.v1 import tracking_pb2
from tests.support.net import closed_port, ledger_state, send_then_vanish, wait_until
from tests.support.calls import receipt
from tests.support.payments import sign_v2

PRICE = "1000"  # "$0.001" in USDC atomic units
# Headers that name the answer, not the data: they differ between any two answers.
PER_ANSWER = {"date", "server", "x-request-id"}
WEATHER = "/weather?city=Lima"


async def cli_call(url: str, capsys, *options: str) -> tuple[int, dict[str, Any]]:
    """`paysidecar-cli call URL --json`: exit code and the printed document."""
    code = await run_call(build_parser().parse_args(["call", url, "--json", *options]))
    return code, json.loads(capsys.readouterr().out)


async def signed_header(service, path: str) -> str:
    """A PAYMENT-SIGNATURE for the requirements the service's own 402 offers."""
    async with service.get(path) as unpaid:
        assert unpaid.status == 402
        required = decode_payment_required_header(unpaid.headers["PAYMENT-REQUIRED"])
    return await sign_v2(required)










async def test_unpaid_request_gets_402_with_payment_required(service):
    async with service.get(WEATHER) as response:
        assert response.status == 402
        required = decode_payment_required_header(response.headers["PAYMENT-REQUIRED"])
        body = await response.json()
    assert body["x402Version"] == 2 and "temperature_c" not in json.dumps(body)
    assert required.resource.url == service.url + WEATHER
    (accepted,) = required.accepts
    assert (accepted.amount, accepted.pay_to, accepted.network) == (PRICE, MERCHANT_ADDRESS, "eip155:84532")


async def test_cli_pays_and_the_transaction_is_on_the_devnet_chain(service, stack, capsys):
    before = stack.chain.balance_of(MERCHANT_ADDRESS)
    code, printed = await cli_call(service.url + WEATHER, capsys, "--payer-index", "1")
    assert code == 0 and printed["status"] == 200
    assert printed["body"] == {"city": "lima", "temperature_c": 19, "conditions": "overcast"}
    assert printed["settlement"]["success"] is True  # decoded from PAYMENT-RESPONSE
    assert printed["payer"] == payer_account(1).address
    assert stack.chain.receipt(printed["transaction"]) is not None
    assert stack.chain.balance_of(MERCHANT_ADDRESS) == before + int(PRICE)


async def test_paid_call_is_tracked_under_the_service_route_key(service, stack, capsys):
    code, printed = await cli_call(service.url + WEATHER, capsys)
    assert code == 0
    found: list[tracking_pb2.Record] = []

    async def tracked() -> bool:  # tracking is written off the request path
        listed = await stack.sidecar.tracking.ListRecords(tracking_pb2.ListRecordsRequest(settled=True))
        found[:] = [r for r in listed.records if r.request_id == printed["request_id"]]
        return bool(found)

    await wait_until(tracked)
    (record,) = found
    assert record.route_key == service.route_key
    assert (record.method, record.path, record.response_status) == ("GET", "/weather", 200)
    assert record.settlement["transaction"] == printed["transaction"]


async def test_replayed_payment_header_is_refused_as_already_used(service, stack):
    header = await signed_header(service, WEATHER)
    async with service.get(WEATHER, headers={"PAYMENT-SIGNATURE": header}) as paid:
        assert paid.status == 200
        assert paid.headers["Cache-Control"] == "private, no-store"
        assert receipt(paid.headers)["success"] is True
    async with service.get(WEATHER, headers={"PAYMENT-SIGNATURE": header}) as replay:
        assert replay.status == 402
        refused = decode_payment_required_header(replay.headers["PAYMENT-REQUIRED"])
        assert "temperature_c" not in await replay.text()
    assert refused.error == "payment_already_used"
    assert stack.chain.transfers_applied == 1


async def test_handler_answer_that_is_not_2xx_is_released_not_charged(service, stack):
    path = "/weather?city=Atlantis"
    header = await signed_header(service, path)
    for _attempt in range(2):
        # A released claim verifies again; a kept one would answer 402 payment_already_used.
        async with service.get(path, headers={"PAYMENT-SIGNATURE": header}) as response:
            assert response.status == 404
            assert (await response.json())["error"]["code"] == "unknown_city"
            assert "PAYMENT-RESPONSE" not in response.headers
    assert stack.facilitator.stats.settle_calls == 0
    assert stack.chain.transfers_applied == 0


async def test_paid_head_is_not_settled_and_the_payment_stays_usable(service, stack):
    header = await signed_header(service, WEATHER)
    async with service.session.head(service.url + WEATHER, headers={"PAYMENT-SIGNATURE": header}) as head:
        assert head.status == 200
        assert await head.read() == b""
        assert "PAYMENT-RESPONSE" not in head.headers
    assert stack.facilitator.stats.settle_calls == 0
    async with service.get(WEATHER, headers={"PAYMENT-SIGNATURE": header}) as paid:
        assert paid.status == 200
    assert stack.chain.transfers_applied == 1


async def test_paid_head_carries_no_header_that_depends_on_the_data(service, stack):
    """Lima and Tokyo answer bodies of different lengths (and Express tags them):
    one payment must not tell them apart by HEAD."""
    header = await signed_header(service, WEATHER)
    seen = []
    for city in ("Lima", "Tokyo", "Oslo"):
        async with service.session.head(f"{service.url}/weather?city={city}", headers={"PAYMENT-SIGNATURE": header}) as head:
            assert head.status == 200
            seen.append({k.lower(): v for k, v in head.headers.items() if k.lower() not in PER_ANSWER})
    assert seen[0] == seen[1] == seen[2], seen
    assert not {"etag", "last-modified", "x-total-count", "link"} & set(seen[0])
    assert seen[0].get("content-length", "0") == "0"
    assert seen[0]["cache-control"] == "private, no-store"
    assert stack.facilitator.stats.settle_calls == 0
    assert stack.chain.transfers_applied == 0


async def test_failed_settlement_sends_the_sidecars_answer_not_the_content(service, stack):
    header = await signed_header(service, WEATHER)
    stack.facilitator.arm(stage="settle", mode="invalid")
    async with service.get(WEATHER, headers={"PAYMENT-SIGNATURE": header}) as response:
        assert response.status == 402
        assert "temperature_c" not in await response.text()
        assert receipt(response.headers)["success"] is False
    assert stack.chain.transfers_applied == 0


async def test_unreachable_sidecar_gives_503_never_content(launch, capsys):
    async with launch(f"127.0.0.1:{closed_port()}") as url:
        code, printed = await cli_call(url + WEATHER, capsys)
    assert code == 1 and printed["status"] == 503
    assert printed["body"]["error"]["code"] == "payment_service_unavailable"
    assert "temperature_c" not in json.dumps(printed["body"])


async def test_client_gone_before_settle_is_released_and_charged_nothing(service, stack, database_url):
    header = await signed_header(service, WEATHER)
    stats = stack.facilitator.stats
    stack.facilitator.arm(stage="verify", mode="delay", delay_ms=1000, times=1)

    async def verifying() -> bool:
        return stats.verify_calls == 1

    async def released() -> bool:
        return await ledger_state(database_url) == "released"

    await send_then_vanish(service.url + WEATHER, header, verifying)
    await wait_until(released)
    assert stats.settle_calls == 0
    assert stack.chain.transfers_applied == 0


async def test_answer_lost_after_settle_is_redeemable_once_without_a_new_charge(service, stack, database_url):
    header = await signed_header(service, WEATHER)
    stats = stack.facilitator.stats
    stack.facilitator.arm(stage="settle", mode="delay", delay_ms=1000, times=1)

    async def settling() -> bool:
        return stats.settle_calls == 1

    async def unserved() -> bool:
        return await ledger_state(database_url) == "settled_unserved"

    await send_then_vanish(service.url + WEATHER, header, settling)
    await wait_until(unserved)
    assert stack.chain.transfers_applied == 1

    async with service.get(WEATHER, headers={"PAYMENT-SIGNATURE": header}) as redeemed:
        assert redeemed.status == 200
        assert (await redeemed.json())["city"] == "lima"
    async with service.get(WEATHER, headers={"PAYMENT-SIGNATURE": header}) as again:
        assert again.status == 402
    assert stats.settle_calls == 1
    assert stack.chain.transfers_applied == 1



async def test_sidecar_gone_mid_settle_is_answered_in_doubt_never_nothing_charged(service, stack):
    """The settle reached the facilitator (which moved the money), then the sidecar
    went away: the service cannot know what happened, so its answer says the
    payment is being checked — never that nothing was charged."""
    header = await signed_header(service, WEATHER)
    stack.facilitator.arm(stage="settle", mode="hang", after_transfer=True, times=1)

    async def paid_call() -> tuple[int, str, str]:
        async with service.get(WEATHER, headers={"PAYMENT-SIGNATURE": header}) as response:
            return response.status, response.headers.get("Retry-After", ""), await response.text()

    calling = asyncio.ensure_future(paid_call())

    async def charged() -> bool:
        return stack.chain.transfers_applied == 1

    await wait_until(charged)
    await stack.sidecar.sidecar.server.stop(0)  # in-flight calls end without an answer
    status, retry_after, text = await calling
    assert status == 503 and int(retry_after) >= 1
    assert json.loads(text)["error"]["code"] == "payment_in_doubt"
    assert "nothing was charged" not in text and "temperature_c" not in text
