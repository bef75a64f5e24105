"""The gateway as an agent meets it (README "For agents"): it finds the datasets in
a facilitator's Bazaar, pays a 402 with the SDK client, and retries a lost answer
with the same payment identifier without paying twice."""

from __future__ import annotations

import base64
import json
from urllib.parse import parse_qsl, urlsplit

import pytest
from google.protobuf.json_format import MessageToDict
from jsonschema import validate
from x402 import x402Client
from x402.extensions.bazaar import BAZAAR, validate_discovery_extension
from x402.extensions.payment_identifier import PAYMENT_IDENTIFIER
from x402.http.utils import decode_payment_required_header, encode_payment_signature_header
from x402.mechanisms.evm.exact.register import register_exact_evm_client
from x402.schemas import PaymentRequired
from x402.schemas.v1 import PaymentRequiredV1

from devnet.wallets import MERCHANT_ADDRESS, payer_account
from gateway.cli import CliError, build_parser, run_call
from gateway.constants import SAMPLE_DATA_DIR
from paysidecar.v1 import tracking_pb2
from tests.support.calls import receipt
from tests.support.net import ledger_state, send_then_vanish, wait_until
from tests.support.payments import sign_v1_for, sign_with_identifier

PAYMENT_ID = "pay_agent_retry_000000000001"
DATASETS = sorted(path.stem for path in SAMPLE_DATA_DIR.glob("*.csv"))


async def offer(gateway, path: str) -> PaymentRequired:
    async with gateway.get(path) as unpaid:
        assert unpaid.status == 402
        return decode_payment_required_header(unpaid.headers["PAYMENT-REQUIRED"])


async def paid_get(gateway, path: str, header: str, name: str = "PAYMENT-SIGNATURE"):
    """(status, headers, JSON body) of a paid GET."""
    async with gateway.get(path, headers={name: header}) as answer:
        return answer.status, answer.headers, await answer.json()


async def catalogue(facilitator_url: str, session) -> list[dict]:
    async with session.get(facilitator_url + "/discovery/resources?limit=100") as answer:
        assert answer.status == 200
        return (await answer.json())["items"]


def with_query(declaration: dict, url: str) -> dict:
    """The declaration with a real request's query in place of its example."""
    declared = declaration["info"]["input"]
    info = {**declaration["info"], "input": {**declared, "queryParams": dict(parse_qsl(urlsplit(url).query))}}
    return {**declaration, "info": info}


def row_validator(declaration: dict) -> dict:
    return declaration["schema"]["properties"]["output"]["properties"]["example"]


async def test_a_lost_answer_and_a_resigned_retry_cost_one_transfer_and_deliver_the_content(
    paid_stack, database_url
):
    gateway, chain, facilitator = paid_stack.gateway, paid_stack.chain, paid_stack.facilitator
    path = "/v1/datasets/stations/records?country=JP&_limit=5"
    payer = payer_account(0).address
    before = chain.balance_of(payer)
    first = await sign_with_identifier(await offer(gateway, path), PAYMENT_ID)
    facilitator.arm(stage="settle", mode="delay", delay_ms=1000, times=1)

    async def settling() -> bool:
        return facilitator.stats.settle_calls == 1

    async def unserved() -> bool:
        return await ledger_state(database_url) == "settled_unserved"

    # The client goes away while its payment settles: the answer is lost.
    await send_then_vanish(gateway.url + path, first, settling)
    await wait_until(unserved)
    # It signs a fresh payment with the same id and sends it again.
    retry = await sign_with_identifier(await offer(gateway, path), PAYMENT_ID)
    status, headers, body = await paid_get(gateway, path, retry)

    assert status == 200
    assert [row["country"] for row in body["data"]] and {row["country"] for row in body["data"]} == {"JP"}
    settled = receipt(headers)
    assert settled["success"] is True and settled["payer"] == payer
    assert chain.receipt(settled["transaction"]) is not None
    assert chain.transfers_applied == 1
    assert facilitator.stats.settle_calls == 1
    assert chain.balance_of(payer) == before - 1000

    await paid_stack.sidecar.sidecar.writer.flush()
    listed = await paid_stack.sidecar.tracking.ListRecords(
        tracking_pb2.ListRecordsRequest(path="/v1/datasets/stations/records", verified=True)
    )
    records = [MessageToDict(r, preserving_proto_field_name=True) for r in listed.records]
    assert [r["metadata"]["payment_identifier"]["id"] for r in records] == [PAYMENT_ID, PAYMENT_ID]
    retried, original = records  # newest first
    assert retried["metadata"]["payment_identifier"]["replay_of"] == retried["settlement"]["replay_of"]
    assert retried["settlement"]["transaction"] == settled["transaction"]
    # The first call settled, and says its answer never reached the client.
    assert original["settlement"]["ledger_state"] == "settled_unserved"


async def test_an_id_answers_409_through_the_gateway_as_the_sidecar_says(paid_stack):
    gateway = paid_stack.gateway
    path = "/v1/datasets/stations/records?_limit=1"
    status, _, _ = await paid_get(gateway, path, await sign_with_identifier(await offer(gateway, path), PAYMENT_ID))
    other = "/v1/datasets/stations/records?_limit=2"

    conflict, headers, body = await paid_get(
        gateway, other, await sign_with_identifier(await offer(gateway, other), PAYMENT_ID)
    )

    assert status == 200
    assert conflict == 409
    assert body["error"]["code"] == "payment_identifier_conflict"
    assert body["error"]["request_id"] == headers["X-Request-ID"]
    assert "ST-0" not in json.dumps(body)
    assert paid_stack.chain.transfers_applied == 1


async def test_a_gateway_that_requires_ids_declares_it_and_refuses_payments_without(sidecar_stack):
    from .conftest import running_gateway

    async with running_gateway(sidecar_target=sidecar_stack.sidecar.target, require_payment_identifier=True) as gateway:
        path = "/v1/records?_limit=1"
        required = await offer(gateway, path)
        status, _, body = await paid_get(gateway, path, await sign_with_identifier(required, None))

    assert required.extensions[PAYMENT_IDENTIFIER]["info"]["required"] is True
    assert (status, body["error"]["code"]) == (400, "payment_identifier_required")
    assert sidecar_stack.chain.transfers_applied == 0


async def test_after_one_paid_call_per_dataset_the_bazaar_lists_each_with_schemas_that_fit(paid_stack):
    gateway, facilitator = paid_stack.gateway, paid_stack.facilitator
    queries = {"observations": "?city=Oslo&temp_c__gt=0&_sort=-date&_limit=3", "stations": "?active=true&_limit=2"}
    rows = {}
    for name in DATASETS:
        path = f"/v1/datasets/{name}/records{queries.get(name, '?_limit=2')}"
        status, _, body = await paid_get(gateway, path, await sign_with_identifier(await offer(gateway, path), None))
        assert status == 200
        rows[name] = body["data"]

    items = {item["resource"]: item for item in await catalogue(facilitator.url, gateway.session)}

    assert sorted(items) == [f"{gateway.url}/v1/datasets/{name}/records" for name in DATASETS]
    for name in DATASETS:
        item = items[f"{gateway.url}/v1/datasets/{name}/records"]
        declaration = item["extensions"][BAZAAR.key]
        assert declaration["info"]["input"]["method"] == "GET"
        assert item["description"] == f"Records of the {name} dataset"
        assert item["tags"] == ["dataset", name] and item["serviceName"] == "paysidecar datasets"
        (accepted,) = item["accepts"]
        assert (accepted["amount"], accepted["payTo"]) == ("1000", MERCHANT_ADDRESS)
        real_query = gateway.url + f"/v1/datasets/{name}/records{queries.get(name, '?_limit=2')}"
        assert validate_discovery_extension(with_query(declaration, real_query)).valid
        assert not validate_discovery_extension(with_query(declaration, real_query + "&_limit=ten")).valid
        assert not validate_discovery_extension(with_query(declaration, real_query + "&colour=red")).valid
        for row in rows[name]:
            validate(row, row_validator(declaration))


async def test_the_bazaar_lists_the_routes_own_declaration_not_what_a_payer_wrote(paid_stack):
    gateway, facilitator = paid_stack.gateway, paid_stack.facilitator
    path = "/v1/datasets/stations/records?_limit=1"
    required = await offer(gateway, path)
    forged = json.loads(base64.b64decode(await sign_with_identifier(required, None)))
    forged["resource"]["description"] = "FREE records, pay elsewhere"
    forged["resource"]["serviceName"] = "forged"
    forged["extensions"][BAZAAR.key]["info"]["output"]["example"] = {"station_id": "forged"}
    header = base64.b64encode(json.dumps(forged).encode()).decode()

    status, _, _ = await paid_get(gateway, path, header)
    [item] = await catalogue(facilitator.url, gateway.session)

    assert status == 200
    assert item["description"] == "Records of the stations dataset"
    assert item["serviceName"] == "paysidecar datasets"
    assert item["extensions"][BAZAAR.key] == required.extensions[BAZAAR.key]


async def test_a_v1_client_finds_the_declaration_in_output_schema_and_the_bazaar_lists_it(paid_stack):
    gateway, facilitator = paid_stack.gateway, paid_stack.facilitator
    path = "/v1/datasets/stations/records?country=JP&_limit=2"
    # A v1 client is answered in v1: here, to a payment too small for the route.
    async with gateway.get(path, headers={"X-PAYMENT": await sign_v1_for(gateway.url + path, amount=1)}) as refused:
        assert refused.status == 402
        v1_required = PaymentRequiredV1.model_validate(await refused.json())
    (offered,) = v1_required.accepts
    client = register_exact_evm_client(x402Client(), payer_account(0))
    header = encode_payment_signature_header(await client.create_payment_payload(v1_required))

    status, headers, body = await paid_get(gateway, path, header, name="X-PAYMENT")
    [item] = await catalogue(facilitator.url, gateway.session)

    assert offered.output_schema["input"]["method"] == "GET"
    assert status == 200 and receipt(headers)["success"] is True
    assert (item["resource"], item["x402Version"]) == (gateway.url + "/v1/datasets/stations/records", 1)
    declared = item["extensions"][BAZAAR.key]["info"]
    assert declared["input"]["queryParams"]["country"] == {"type": "string"}
    assert declared["input"]["queryParams"]["elevation_m__in"]["pattern"].startswith("^[+-]?[0-9]")
    assert declared["output"]["example"]["properties"]["elevation_m"] == {"type": "integer"}
    for row in body["data"]:
        validate(row, declared["output"]["example"])


async def test_the_cli_called_twice_with_one_payment_id_pays_once(paid_stack, capsys):
    url = paid_stack.gateway.url + "/v1/records?city=Cairo&_limit=2"
    answers = []
    for _ in range(2):
        args = build_parser().parse_args(["call", url, "--payment-id", PAYMENT_ID, "--json"])
        assert await run_call(args) == 0
        answers.append(json.loads(capsys.readouterr().out))

    assert [answer["status"] for answer in answers] == [200, 200]
    assert answers[0]["transaction"] == answers[1]["transaction"]
    assert answers[1]["body"]["data"] == answers[0]["body"]["data"]
    assert paid_stack.chain.transfers_applied == 1


async def test_the_cli_refuses_a_payment_id_the_extension_would_refuse(paid_stack, capsys):
    url = paid_stack.gateway.url + "/v1/records?_limit=1"
    args = build_parser().parse_args(["call", url, "--payment-id", "short"])

    with pytest.raises(CliError, match="--payment-id"):
        await run_call(args)
    assert paid_stack.chain.transfers_applied == 0


async def test_the_cli_refuses_a_payment_id_on_a_channel_payment(channel_stack):
    # Ids are kept for exact payments only (the sidecar refuses one on a voucher).
    url = channel_stack.gateway.url + "/v1/records?_limit=1"
    args = build_parser().parse_args(["call", url, "--scheme", "batch-settlement", "--payment-id", PAYMENT_ID])

    with pytest.raises(CliError, match="--payment-id is for exact payments"):
        await run_call(args)
    assert channel_stack.chain.transfers_applied == 0
