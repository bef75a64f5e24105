"""The gateway's paid routes against the real sidecar, devnet facilitator and chain."""

from __future__ import annotations

import asyncio
import csv
import json

from jsonschema import validate
from x402.http.utils import decode_payment_required_header

from devnet.wallets import MERCHANT_ADDRESS, payer_account
from gateway.constants import SAMPLE_DATA_DIR
from gateway.cli import build_parser, run_call
from tests.support.calls import receipt
from tests.support.payments import sign_for
from tests.support.stack import devnet, sidecar_settings, start_sidecar

from tests.support.net import closed_port

from .conftest import ADMIN, running_gateway

PRICE = 1000  # "$0.001" in USDC atomic units
PAYER = payer_account(0).address


def station_rows() -> list[dict[str, str]]:
    with (SAMPLE_DATA_DIR / "stations.csv").open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


async def test_unpaid_request_gets_the_sidecars_402_bound_to_the_full_url(paid_stack):
    gateway = paid_stack.gateway
    path = "/v1/datasets/stations/records?active=true&_limit=2"
    async with gateway.get(path, headers={"X-Request-ID": "unpaid-1"}) as response:
        assert response.status == 402
        assert response.headers["X-Request-ID"] == "unpaid-1"
        required = decode_payment_required_header(response.headers["PAYMENT-REQUIRED"])
        body = await response.json()
    assert body["x402Version"] == 2 and "ST-001" not in json.dumps(body)
    assert required.resource.url == gateway.url + path
    (accepted,) = required.accepts
    assert (accepted.amount, accepted.pay_to, accepted.network) == (str(PRICE), MERCHANT_ADDRESS, "eip155:84532")
    async with gateway.get("/openapi.json") as answer:
        components = (await answer.json())["components"]
    # The 402 body is what /openapi.json says it is.
    validate(body, {"$ref": "#/components/schemas/PaymentRequired", "components": components})

    async with gateway.get("/v1/telemetry?limit=50", headers=ADMIN) as answer:
        found = (await answer.json())["events"]
    # The challenge shows once: the sidecar records it, the gateway does not repeat it.
    [challenge] = [e for e in found if e["name"] == "payment_challenge_issued" and e["request_id"] == "unpaid-1"]
    assert challenge["route"] == "GET /v1/datasets/stations/records"
    assert challenge["source"] == "sidecar"


async def test_paid_request_settles_once_and_serves_the_records(paid_stack):
    gateway, chain = paid_stack.gateway, paid_stack.chain
    url = gateway.url + "/v1/datasets/stations/records?active=false&_fields=station_id"
    before = chain.balance_of(MERCHANT_ADDRESS)
    header = await sign_for(url)
    async with gateway.get(url.removeprefix(gateway.url), headers={"PAYMENT-SIGNATURE": header}) as response:
        assert response.status == 200
        assert response.headers["Cache-Control"] == "private, no-store"
        settled = receipt(response.headers)
        body = await response.json()
    assert settled["success"] is True and settled["payer"] == PAYER
    assert chain.receipt(settled["transaction"]) is not None
    assert chain.balance_of(MERCHANT_ADDRESS) == before + PRICE
    assert body["data"] == [{"station_id": row["station_id"]} for row in station_rows() if row["active"] == "false"]

    # The same payment again: refused, nothing served, nothing moved.
    async with gateway.get(url.removeprefix(gateway.url), headers={"PAYMENT-SIGNATURE": header}) as replay:
        assert replay.status == 402
        assert "ST-0" not in await replay.text()
    assert chain.balance_of(MERCHANT_ADDRESS) == before + PRICE
    assert paid_stack.facilitator.stats.settle_calls == 1


async def test_paid_head_is_not_settled_and_the_payment_stays_usable(paid_stack):
    gateway, chain = paid_stack.gateway, paid_stack.chain
    url = gateway.url + "/v1/records?city=Oslo&_limit=1"
    header = await sign_for(url)
    transfers = chain.transfers_applied
    async with gateway.request("HEAD", "/v1/records?city=Oslo&_limit=1", headers={"PAYMENT-SIGNATURE": header}) as head:
        assert head.status == 200
        assert await head.read() == b""
        assert "PAYMENT-RESPONSE" not in head.headers
    assert chain.transfers_applied == transfers
    assert paid_stack.facilitator.stats.settle_calls == 0

    async with gateway.get("/v1/records?city=Oslo&_limit=1", headers={"PAYMENT-SIGNATURE": header}) as response:
        assert response.status == 200
        assert (await response.json())["data"][0]["city"] == "Oslo"
    assert chain.transfers_applied == transfers + 1


# Headers that name the answer, not the data: they differ between any two answers.
PER_ANSWER = {"date", "server", "x-request-id", "x-trace-id"}


def data_headers(headers) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items() if name.lower() not in PER_ANSWER}


async def test_paid_head_reveals_nothing_about_the_data_and_charges_nothing(paid_stack):
    """One payment must not answer count queries: with X-Total-Count, Link or the
    body's length, a cell could be found by bisection in a dozen HEADs."""
    gateway, chain = paid_stack.gateway, paid_stack.chain
    header = await sign_for(gateway.url + "/v1/records")
    queries = ["?city=Oslo&_limit=1", "?city=Oslo", "?temp_c__gt=25", "?temp_c__gt=1000", "?_limit=1000", ""]
    answers = []
    for query in queries:
        async with gateway.request("HEAD", "/v1/records" + query, headers={"PAYMENT-SIGNATURE": header}) as head:
            assert head.status == 200
            assert await head.read() == b""
            answers.append(data_headers(head.headers))
    assert all(answer == answers[0] for answer in answers), answers
    for name in ("x-total-count", "link", "etag", "last-modified", "payment-response"):
        assert name not in answers[0]
    assert answers[0].get("content-length", "0") == "0"
    assert answers[0]["cache-control"] == "private, no-store"
    assert paid_stack.facilitator.stats.settle_calls == 0
    assert chain.transfers_applied == 0


async def test_unpaid_head_gets_the_same_402_as_get(paid_stack):
    gateway = paid_stack.gateway
    path = "/v1/records?city=Oslo&_limit=1"
    async with gateway.get(path) as get, gateway.request("HEAD", path) as head:
        assert get.status == head.status == 402
        assert data_headers(get.headers) == data_headers(head.headers)


async def test_failed_settlement_answers_without_the_content(paid_stack):
    gateway = paid_stack.gateway
    paid_stack.facilitator.arm(stage="settle", mode="invalid")
    url = gateway.url + "/v1/records?city=Lima&_limit=3"
    async with gateway.get("/v1/records?city=Lima&_limit=3", headers={"PAYMENT-SIGNATURE": await sign_for(url)}) as response:
        assert response.status == 402
        text = await response.text()
    assert '"data"' not in text and "Lima," not in text
    assert receipt(response.headers)["success"] is False


PAYMENT_EVENTS = {"payment_challenge_issued", "payment_verify_failed", "payment_settlement_failed", "payment_settled"}


async def test_telemetry_shows_each_payment_event_once_newest_first(paid_stack):
    gateway = paid_stack.gateway
    url = gateway.url + "/v1/records?city=Oslo&_limit=1"
    header = await sign_for(url)
    for request_id in ("once-unpaid", "once-paid", "once-replayed"):
        payment = {} if request_id == "once-unpaid" else {"PAYMENT-SIGNATURE": header}
        async with gateway.get("/v1/records?city=Oslo&_limit=1", headers={"X-Request-ID": request_id, **payment}):
            pass
    async with gateway.get("/v1/telemetry?limit=100", headers=ADMIN) as answer:
        found = (await answer.json())["events"]
    shown = [(e["request_id"], e["name"], e["source"]) for e in found if e["name"] in PAYMENT_EVENTS]
    assert shown == [
        ("once-replayed", "payment_verify_failed", "sidecar"),
        ("once-paid", "payment_settled", "sidecar"),
        ("once-unpaid", "payment_challenge_issued", "sidecar"),
    ]
    timestamps = [e["timestamp"] for e in found]
    assert timestamps == sorted(timestamps, reverse=True)


async def test_cli_call_pays_with_v2_and_prints_payer_and_transaction(paid_stack, capsys):
    url = paid_stack.gateway.url + "/v1/records?city=Cairo&_limit=2"
    args = build_parser().parse_args(["call", url, "--payer-index", "1", "--json"])
    assert await run_call(args) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["status"] == 200
    assert printed["payer"] == payer_account(1).address
    assert paid_stack.chain.receipt(printed["transaction"]) is not None
    assert [row["city"] for row in printed["body"]["data"]] == ["Cairo", "Cairo"]


async def test_cli_call_pays_with_v1_x_payment(paid_stack, capsys):
    url = paid_stack.gateway.url + "/v1/datasets/stations/records?_limit=1"
    args = build_parser().parse_args(["call", url, "--x402-version", "1", "--json"])
    assert await run_call(args) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["status"] == 200
    assert printed["settlement"]["success"] is True
    assert printed["body"]["data"][0]["station_id"] == "ST-001"


async def test_gateway_recovers_within_seconds_when_the_sidecar_comes_back(database_url, tmp_path):
    port = closed_port()
    async with running_gateway(sidecar_target=f"127.0.0.1:{port}") as gateway, devnet(count=1) as (_chain, (fac,)):
        async with gateway.get("/v1/records") as response:
            assert response.status == 503
        sidecar = await start_sidecar(sidecar_settings(database_url, tmp_path / "spool", [fac.url], port=port))
        try:
            async with asyncio.timeout(10):
                while True:
                    async with gateway.get("/v1/records") as response:
                        if response.status == 402:
                            break
                        assert response.status == 503
                    await asyncio.sleep(0.1)
        finally:
            await sidecar.stop()


async def test_settle_past_its_deadline_is_answered_in_doubt_never_nothing_charged(sidecar_stack):
    """The settle may have reached the facilitator when the gateway stops waiting for
    it: the answer says the payment is being checked (retry the same header), never
    that nothing was charged."""
    sidecar_stack.facilitator.arm(stage="settle", mode="delay", delay_ms=1500, times=1)
    target = sidecar_stack.sidecar.target
    async with running_gateway(sidecar_target=target, sidecar_settle_timeout_s=0.3) as gateway:
        path = "/v1/records?city=Oslo&_limit=1"
        header = await sign_for(gateway.url + path)
        async with gateway.get(path, headers={"PAYMENT-SIGNATURE": header, "X-Request-ID": "in-doubt-1"}) as response:
            assert response.status == 503
            assert int(response.headers["Retry-After"]) >= 1
            text = await response.text()
    error = json.loads(text)["error"]
    assert error == {
        "code": "payment_in_doubt",
        "message": "the payment is being checked; retry with the same payment header",
        "request_id": "in-doubt-1",
    }
    assert "nothing was charged" not in text and "Oslo" not in text
