"""Pricing by what is delivered (issue 18, item 5): a dataset priced per row offers
its maximum in the 402 and is charged min(maximum, price_per_row × rows returned)
at Settle (at least one row); an exact payment keeps the fixed price. The charge
shows in PAYMENT-RESPONSE, the tracking record and GET /v1/datasets, and adds up
on the devnet's balances once claimed. A payer shaping the query (_limit, _offset,
_fields, formats, HEAD, a count) gets no row cheaper."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import pytest
from x402.http.utils import decode_payment_required_header, decode_payment_response_header
from x402.mechanisms.evm.batch_settlement.constants import BATCH_SETTLEMENT_ADDRESS
from x402.mechanisms.evm.batch_settlement.types import VoucherClaim

from devnet.wallets import INITIAL_PAYER_BALANCE, MERCHANT_ADDRESS
from gateway.constants import MAX_LIMIT
from sidecar.store.channels import PgChannels
from sidecar.store.db import create_pool
from tests.channels.support import facilitator_settle
from tests.devnet.channels import claim_request, settle_request
from tests.support.calls import receipt
from tests.support.payments import sign_for
from tests.support.stack import PaidStack, running_paid_stack

from .conftest import running_gateway
from .sdk_payer import SdkPayer

OBSERVATIONS_PER_ROW = 10
OBSERVATIONS_MAX = OBSERVATIONS_PER_ROW * MAX_LIMIT  # a full page
STATIONS_PER_ROW = 7
STATIONS_MAX = 50  # reached at 8 rows
STATIONS = "/v1/datasets/stations/records"
OBSERVATIONS = "/v1/datasets/observations/records"
# The per-row prices live in the sidecar's route config; the gateway names the routes.
SIDECAR_ROUTES = {
    "observations": {"price_per_row": OBSERVATIONS_PER_ROW, "amount": str(OBSERVATIONS_MAX)},
    "stations": {"price_per_row": STATIONS_PER_ROW, "amount": str(STATIONS_MAX)},
}
GATEWAY_DATASETS = {name: {"route": name} for name in SIDECAR_ROUTES}


@pytest.fixture
async def row_stack(database_url, tmp_path) -> AsyncIterator[PaidStack]:
    """The devnet, a sidecar offering both schemes whose routes price both sample
    datasets per row, and a gateway naming those routes."""
    schemes = ["exact", "batch-settlement"]
    async with running_paid_stack(database_url, tmp_path / "spool", schemes=schemes, routes=SIDECAR_ROUTES) as stack:
        async with running_gateway(
            sidecar_target=stack.sidecar.target, sidecar_settle_timeout_s=20.0, datasets=GATEWAY_DATASETS
        ) as gateway:
            stack.gateway = gateway
            yield stack


def _payer(stack: PaidStack, index: int = 4) -> SdkPayer:
    return SdkPayer(stack.facilitator.url + "/rpc", index)


def charged(headers: dict) -> int:
    return int(decode_payment_response_header(headers["PAYMENT-RESPONSE"]).extra["chargedAmount"])


async def _channel(database_url: str) -> asyncpg.Record:
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetchrow("SELECT * FROM payment_channels")
    finally:
        await conn.close()


async def _record(stack: PaidStack, request_id: str) -> dict[str, Any]:
    """The settled request's tracking record."""
    await stack.sidecar.sidecar.writer.flush()
    conn = await asyncpg.connect(stack.sidecar.sidecar.settings.database_url)
    try:
        rows = await conn.fetch(
            "SELECT row_to_json(r)::text AS record FROM resource_call_records r WHERE request_id = $1", request_id
        )
    finally:
        await conn.close()
    [record] = [json.loads(row["record"]) for row in rows if json.loads(row["record"]).get("settlement")]
    return record


async def test_the_402_offers_the_routes_maximum(row_stack):
    gateway = row_stack.gateway
    for path, maximum in ((OBSERVATIONS + "?_limit=2", OBSERVATIONS_MAX), (STATIONS + "?_limit=1", STATIONS_MAX)):
        async with gateway.get(path) as response:
            assert response.status == 402
            required = decode_payment_required_header(response.headers["PAYMENT-REQUIRED"])
        assert {offer.scheme for offer in required.accepts} == {"exact", "batch-settlement"}
        assert {offer.amount for offer in required.accepts} == {str(maximum)}


async def test_a_voucher_is_charged_per_row_in_the_receipt_the_record_and_the_channel(row_stack):
    gateway, payer = row_stack.gateway, _payer(row_stack)
    async with aiohttp.ClientSession() as session:
        for limit in (3, 1):
            request_id = f"rows-{limit}-{uuid.uuid4().hex[:8]}"
            url = f"{gateway.url}{OBSERVATIONS}?_limit={limit}"
            status, headers = await payer.get(session, url, headers={"X-Request-ID": request_id})
            assert status == 200
            assert len(json.loads(payer.body)["data"]) == limit
            assert charged(headers) == limit * OBSERVATIONS_PER_ROW
            record = await _record(row_stack, request_id)
            assert record["payment"]["amount"] == str(limit * OBSERVATIONS_PER_ROW)
            assert record["settlement"]["charged"] == str(limit * OBSERVATIONS_PER_ROW)
    channel = await _channel(row_stack.sidecar.sidecar.settings.database_url)
    assert channel["charged_cumulative"] == 4 * OBSERVATIONS_PER_ROW
    # The payer signed for the maximum each time; we charged the rows, never above.
    assert channel["signed_max_claimable"] == 3 * OBSERVATIONS_PER_ROW + OBSERVATIONS_MAX


async def test_the_charge_is_capped_at_the_routes_maximum(row_stack):
    gateway, payer = row_stack.gateway, _payer(row_stack)
    async with aiohttp.ClientSession() as session:
        status, headers = await payer.get(session, f"{gateway.url}{STATIONS}?_limit=10")
        assert status == 200 and len(json.loads(payer.body)["data"]) == 10
        assert charged(headers) == STATIONS_MAX  # not 70
        status, headers = await payer.get(session, f"{gateway.url}{STATIONS}?_limit=5")
        assert status == 200 and charged(headers) == 5 * STATIONS_PER_ROW


async def test_an_exact_payment_keeps_the_fixed_price(row_stack):
    gateway, chain = row_stack.gateway, row_stack.chain
    url = f"{gateway.url}{STATIONS}?_limit=1"
    before = chain.balance_of(MERCHANT_ADDRESS)
    header = await sign_for(url, amount=STATIONS_MAX)
    async with gateway.get(url.removeprefix(gateway.url), headers={"PAYMENT-SIGNATURE": header}) as response:
        assert response.status == 200
        settled = receipt(response.headers)
        assert len((await response.json())["data"]) == 1
    assert settled["success"] is True and "chargedAmount" not in (settled.get("extra") or {})
    assert chain.balance_of(MERCHANT_ADDRESS) == before + STATIONS_MAX


async def test_datasets_say_how_they_are_priced(row_stack):
    async with row_stack.gateway.get("/v1/datasets") as response:
        listed = {d["name"]: d for d in (await response.json())["datasets"]}
    stations, observations = listed["stations"], listed["observations"]
    assert (stations["pricing"], stations["price_per_row"], stations["amount"]) == (
        "per_row",
        str(STATIONS_PER_ROW),
        str(STATIONS_MAX),
    )
    assert (observations["price_per_row"], observations["amount"]) == (str(OBSERVATIONS_PER_ROW), str(OBSERVATIONS_MAX))
    async with running_gateway(sidecar_target=row_stack.sidecar.target) as plain:  # the sidecar's default route
        async with plain.get("/v1/datasets/stations") as response:
            described = await response.json()
    assert (described["pricing"], described["price_per_row"], described["price"]) == ("per_request", None, "$0.001")


async def test_fields_and_formats_do_not_lower_the_charge(row_stack):
    """Fewer columns or another format: still the rows it carries."""
    gateway, payer = row_stack.gateway, _payer(row_stack)
    queries = ("_limit=3", "_limit=3&_fields=station_id", "_limit=3&_format=csv", "_limit=3&_format=ndjson")
    async with aiohttp.ClientSession() as session:
        for query in queries:
            status, headers = await payer.get(session, f"{gateway.url}{STATIONS}?{query}")
            assert status == 200 and charged(headers) == 3 * STATIONS_PER_ROW, query
        status, headers = await payer.get(session, f"{gateway.url}{STATIONS}?_limit=3", headers={"Accept": "text/csv"})
        assert status == 200 and charged(headers) == 3 * STATIONS_PER_ROW
        assert len(payer.body.decode().strip().splitlines()) == 1 + 3  # header line + rows


async def test_an_empty_answer_costs_one_row(row_stack):
    """'Nothing matches' or 'past the end' is an answer too: never free to ask."""
    gateway, payer = row_stack.gateway, _payer(row_stack)
    async with aiohttp.ClientSession() as session:
        for query in ("_offset=100000", "country=XX"):
            status, headers = await payer.get(session, f"{gateway.url}{STATIONS}?{query}")
            assert status == 200 and json.loads(payer.body)["data"] == []
            assert charged(headers) == STATIONS_PER_ROW, query


async def test_a_per_row_answer_tells_no_count(row_stack):
    """A count of the rows matching would answer about all of them for one row's price."""
    gateway, payer = row_stack.gateway, _payer(row_stack)
    async with aiohttp.ClientSession() as session:
        status, headers = await payer.get(session, f"{gateway.url}{STATIONS}?_limit=1")
        assert status == 200 and "X-Total-Count" not in headers
        meta = json.loads(payer.body)["meta"]
        assert meta["total"] is None
        # A full page links the next one, whether or not more rows exist.
        assert meta["next"] and "_offset=1" in headers["Link"]
        status, headers = await payer.get(session, f"{gateway.url}{STATIONS}?_limit=1000&active=true")
        assert status == 200 and "Link" not in headers and json.loads(payer.body)["meta"]["next"] is None


async def test_a_paid_head_is_never_charged(row_stack):
    gateway, payer = row_stack.gateway, _payer(row_stack)
    database_url = row_stack.sidecar.sidecar.settings.database_url
    async with aiohttp.ClientSession() as session:
        status, headers = await payer.get(session, f"{gateway.url}{STATIONS}?_limit=2")
        assert status == 200 and charged(headers) == 2 * STATIONS_PER_ROW
        status, headers = await payer.get(session, f"{gateway.url}{STATIONS}?_limit=2", method="HEAD")
        assert status == 200
        assert not {"PAYMENT-RESPONSE", "X-Total-Count", "Link"} & set(headers)
        assert (await _channel(database_url))["charged_cumulative"] == 2 * STATIONS_PER_ROW
        # The voucher the HEAD carried was not counted: the next request pays on.
        status, headers = await payer.get(session, f"{gateway.url}{STATIONS}?_limit=1")
        assert status == 200 and charged(headers) == STATIONS_PER_ROW
    assert (await _channel(database_url))["charged_cumulative"] == 3 * STATIONS_PER_ROW


async def test_per_row_charges_add_up_on_the_devnet_balances_after_a_claim(row_stack):
    stack, payer = row_stack, _payer(row_stack)
    chain = stack.chain
    merchant_before = chain.balance_of(MERCHANT_ADDRESS)
    requests = [(OBSERVATIONS, 1), (OBSERVATIONS, 17), (STATIONS, 3), (STATIONS, 12), (OBSERVATIONS, 2), (STATIONS, 1)]
    expected = 0
    total = 0
    async with aiohttp.ClientSession() as session:
        for path, limit in requests:
            status, headers = await payer.get(session, f"{stack.gateway.url}{path}?_limit={limit}")
            assert status == 200
            per_row, maximum = (
                (OBSERVATIONS_PER_ROW, OBSERVATIONS_MAX) if path == OBSERVATIONS else (STATIONS_PER_ROW, STATIONS_MAX)
            )
            expected += min(maximum, per_row * limit)
            total += charged(headers)
    assert total == expected == 10 + 170 + 21 + 50 + 20 + 7

    # Claim the channel's latest voucher for what we charged, then sweep to payTo.
    pool = await create_pool(stack.sidecar.sidecar.settings.database_url, min_size=1, max_size=1)
    try:
        [channel] = await PgChannels(pool).page("", 10)
    finally:
        await pool.close()
    assert channel.charged == total
    claim = VoucherClaim(
        channel=channel.config,
        max_claimable_amount=str(channel.signed_max_claimable),
        signature=channel.voucher_signature,
        total_claimed=str(total),
    )
    claimed = await facilitator_settle(stack.facilitator, claim_request([claim]))
    assert claimed["success"] is True
    swept = await facilitator_settle(stack.facilitator, settle_request())
    assert swept["success"] is True

    deposited = INITIAL_PAYER_BALANCE - chain.balance_of(payer.address)
    assert chain.balance_of(MERCHANT_ADDRESS) - merchant_before == total
    # What the payer deposited and was not charged stays in its channel, to the unit.
    assert chain.balance_of(BATCH_SETTLEMENT_ADDRESS) == deposited - total


async def test_a_development_gateway_may_override_the_price_per_row(database_url, tmp_path):
    """The sidecar's route prices stations at 7 a row; a development gateway trying
    3 a row is charged 3 (a production sidecar would refuse the override)."""
    schemes = ["exact", "batch-settlement"]
    datasets = {"stations": {"route": "stations", "price_per_row": 3}}
    async with running_paid_stack(database_url, tmp_path / "spool", schemes=schemes, routes=SIDECAR_ROUTES) as stack:
        async with running_gateway(
            env="development", sidecar_target=stack.sidecar.target, sidecar_settle_timeout_s=20.0, datasets=datasets
        ) as gateway:
            stack.gateway = gateway
            async with aiohttp.ClientSession() as session:
                status, headers = await _payer(stack).get(session, f"{gateway.url}{STATIONS}?_limit=2")
    assert status == 200 and charged(headers) == 2 * 3
