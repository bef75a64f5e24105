"""Bazaar discovery on the devnet facilitator: what settled payments declared is listed at
GET /discovery/resources, paged; nothing else is."""

from __future__ import annotations

from datetime import datetime
from urllib.parse import parse_qsl, urlsplit

import pytest
from x402.extensions.bazaar import (
    BAZAAR,
    DeclareMcpDiscoveryConfig,
    declare_mcp_discovery_extension,
    validate_discovery_extension,
)
from x402.extensions.payment_identifier import (
    PAYMENT_IDENTIFIER,
    append_payment_identifier_to_extensions,
    declare_payment_identifier_extension,
)
from x402.schemas import PaymentRequiredV1, PaymentRequirementsV1

from devnet.chain import USDC_ADDRESS, V1_NETWORK
from devnet.discovery import MAX_ENTRY_BYTES, Catalogue, ListQuery
from devnet.wallets import INITIAL_PAYER_BALANCE, MERCHANT_ADDRESS, payer_account
from tests.devnet.bazaar import STATIONS, declaration, pay, payment_required
from tests.devnet.channels import ChannelPayer, batch_requirements
from tests.support.payments import requirements as exact_requirements

ORIGIN = "http://127.0.0.1:8402"


async def listed(devnet, query: str = "") -> dict:
    status, body = await devnet.get("/discovery/resources" + query)
    assert status == 200, body
    return body


async def settled(devnet, required, payer_index: int = 0) -> None:
    """Pay `required` with the SDK client and settle it at the devnet."""
    payload = await pay(required, payer_index)
    status, answer = await devnet.settle(payload, required.accepts[0])
    assert status == 200 and answer["success"] is True, answer


def with_query(bazaar: dict, url: str) -> dict:
    """The declaration with the query of a real request URL in place of its example."""
    info = {**bazaar["info"], "input": {**bazaar["info"]["input"], "queryParams": dict(parse_qsl(urlsplit(url).query))}}
    return {**bazaar, "info": info}


async def test_a_settled_payment_that_declares_its_resource_is_listed(devnet):
    requirements = exact_requirements()
    url = STATIONS + "?country=JP&_limit=10"
    await settled(devnet, payment_required(requirements, url, service_name="Stations", tags=["weather"]))

    body = await listed(devnet)

    assert body["x402Version"] == 2
    assert body["pagination"] == {"limit": 20, "offset": 0, "total": 1}
    [item] = body["items"]
    assert item["resource"] == STATIONS  # the query is no part of the resource
    assert (item["type"], item["x402Version"]) == ("http", 2)
    assert item["accepts"] == [requirements.model_dump(mode="json", by_alias=True, exclude_none=True)]
    assert item["description"] == "Weather stations: id, city, elevation"
    assert (item["mimeType"], item["serviceName"], item["tags"]) == ("application/json", "Stations", ["weather"])
    assert datetime.fromisoformat(item["lastUpdated"]).tzinfo is not None
    assert item["extensions"] == declaration()
    bazaar = item["extensions"][BAZAAR.key]
    assert bazaar["info"]["input"]["method"] == "GET"
    assert validate_discovery_extension(with_query(bazaar, url + "&elevation_m__gte=-5")).valid
    assert not validate_discovery_extension(with_query(bazaar, STATIONS + "?_limit=ten")).valid
    assert not validate_discovery_extension(with_query(bazaar, STATIONS + "?colour=red")).valid


async def test_a_payment_without_a_declaration_is_not_listed(devnet):
    await settled(devnet, payment_required(exact_requirements(), extensions={}))

    assert (await listed(devnet))["pagination"]["total"] == 0


async def test_a_declaration_that_fails_its_own_schema_is_not_listed(devnet):
    await settled(devnet, payment_required(exact_requirements(), extensions=declaration(query={"_limit": "ten"})))

    assert (await listed(devnet))["items"] == []


async def test_a_declaration_altered_after_one_passed_is_validated_again(devnet):
    await settled(devnet, payment_required(exact_requirements(), STATIONS))
    altered = declaration()
    altered[BAZAAR.key]["info"]["input"]["queryParams"] = {"_limit": "ten"}
    await settled(devnet, payment_required(exact_requirements(), f"{ORIGIN}/v1/altered", extensions=altered))
    await settled(devnet, payment_required(exact_requirements(), f"{ORIGIN}/v1/same"))

    items = (await listed(devnet))["items"]

    assert [item["resource"] for item in items] == [STATIONS, f"{ORIGIN}/v1/same"]


async def test_a_payment_that_does_not_settle_is_not_listed(devnet):
    requirements = exact_requirements()
    payload = await pay(payment_required(requirements))
    _, verified = await devnet.verify(payload, requirements)
    assert verified["isValid"] is True
    dearer = exact_requirements(amount=2000)
    over = payload.model_copy(update={"accepted": dearer})
    _, refused = await devnet.settle(over, dearer)
    assert refused["success"] is False

    assert (await listed(devnet))["items"] == []


async def test_a_declaration_the_sdk_cannot_read_does_not_fail_the_settle(devnet):
    # The SDK's extraction raises on this URL; the payment has settled all the same.
    requirements = exact_requirements()
    payload = await pay(payment_required(requirements, "http://[::1/v1/records"))

    status, answer = await devnet.settle(payload, requirements)

    assert (status, answer["success"]) == (200, True)
    assert devnet.chain.balance_of(MERCHANT_ADDRESS) == 1000
    assert (await listed(devnet))["items"] == []


async def test_what_a_payer_adds_beyond_the_declaration_is_not_listed(devnet):
    extensions = {**declaration(), PAYMENT_IDENTIFIER: declare_payment_identifier_extension()}
    append_payment_identifier_to_extensions(extensions, "pay_private_identifier_0001")
    required = payment_required(
        exact_requirements(),
        extensions=extensions,
        tags=["weather", "bad\x07tag"],
        icon_url="http://127.0.0.1/icon.png",
        service_name="x" * 33,
    )
    await settled(devnet, required)

    [item] = (await listed(devnet))["items"]

    assert set(item["extensions"]) == {BAZAAR.key}
    assert "pay_private_identifier_0001" not in str(item)
    assert item["tags"] == ["weather"]
    assert "iconUrl" not in item and "serviceName" not in item


async def test_an_oversized_declaration_is_not_listed(devnet):
    huge = declaration(query={"country": "x" * MAX_ENTRY_BYTES})
    await settled(devnet, payment_required(exact_requirements(), extensions=huge))

    assert (await listed(devnet))["items"] == []


async def test_the_latest_declaration_wins_and_offers_of_other_schemes_are_kept(devnet):
    await settled(devnet, payment_required(exact_requirements(), description="first"))
    [first] = (await listed(devnet))["items"]

    deposit = await ChannelPayer(1).client.create_payment_payload(
        payment_required(batch_requirements(), description="second")
    )
    _, answer = await devnet.settle(deposit, batch_requirements())
    assert answer["success"] is True
    [second] = (await listed(devnet))["items"]

    await settled(devnet, payment_required(exact_requirements(amount=2000), description="third"), payer_index=2)
    [third] = (await listed(devnet))["items"]

    assert second["description"] == "second"
    assert [(a["scheme"], a["amount"]) for a in second["accepts"]] == [("batch-settlement", "1000"), ("exact", "1000")]
    assert third["description"] == "third"
    assert [(a["scheme"], a["amount"]) for a in third["accepts"]] == [("batch-settlement", "1000"), ("exact", "2000")]
    assert first["lastUpdated"] <= second["lastUpdated"] <= third["lastUpdated"]


async def test_a_v1_payment_declares_its_resource_in_output_schema(devnet, client):
    requirements = PaymentRequirementsV1(
        scheme="exact",
        network=V1_NETWORK,
        max_amount_required="1000",
        resource=STATIONS + "?country=JP",
        description="Weather stations",
        mime_type="application/json",
        pay_to=MERCHANT_ADDRESS,
        max_timeout_seconds=60,
        asset=USDC_ADDRESS,
        output_schema={
            "input": {"type": "http", "method": "GET", "queryParams": {"country": "JP"}},
            "output": {"id": "ST-014", "city": "Tokyo"},
        },
        extra={"name": "USDC", "version": "2"},
    )
    payload = await client.create_payment_payload(PaymentRequiredV1(accepts=[requirements]))
    _, answer = await devnet.settle(payload, requirements)
    assert answer["success"] is True

    [item] = (await listed(devnet))["items"]

    assert (item["resource"], item["x402Version"], item["description"]) == (STATIONS, 1, "Weather stations")
    assert item["accepts"] == [requirements.model_dump(mode="json", by_alias=True, exclude_none=True)]
    bazaar = item["extensions"][BAZAAR.key]
    assert bazaar["info"]["input"] == {"type": "http", "method": "GET", "queryParams": {"country": "JP"}}
    assert validate_discovery_extension(bazaar).valid


async def test_resources_are_paged_in_url_order(devnet):
    urls = [f"{ORIGIN}/v1/datasets/set{n}/records" for n in (3, 1, 4, 0, 2)]
    for url in urls:
        await settled(devnet, payment_required(exact_requirements(), url))

    pages = [await listed(devnet, f"?limit=2&offset={offset}") for offset in (0, 2, 4, 6)]

    assert [page["pagination"] for page in pages] == [
        {"limit": 2, "offset": offset, "total": 5} for offset in (0, 2, 4, 6)
    ]
    assert [item["resource"] for page in pages for item in page["items"]] == sorted(urls)
    assert pages[3]["items"] == []
    assert devnet.chain.balance_of(payer_account(0).address) == INITIAL_PAYER_BALANCE - 5 * 1000


@pytest.mark.parametrize(
    "query",
    [
        "?limit=0",
        "?limit=101",
        "?limit=-1",
        "?limit=abc",
        "?limit=1.5",
        "?limit=",
        "?offset=-1",
        "?offset=1e3",
        "?offset=%D9%A5",  # an Arabic-Indic five: a digit to Python's int(), not to us
        "?limit=1&limit=2",
        "?offset=" + "9" * 40,
    ],
)
async def test_bad_paging_is_a_400(devnet, query):
    status, body = await devnet.get("/discovery/resources" + query)

    assert status == 400
    assert body["error"]["code"] == "invalid_query"


async def test_filters_by_type_scheme_network_and_pay_to(devnet):
    await settled(devnet, payment_required(exact_requirements(), STATIONS))
    other_merchant = payer_account(3).address
    await settled(devnet, payment_required(exact_requirements(pay_to=other_merchant), f"{ORIGIN}/v1/other"))
    deposit = await ChannelPayer(1).client.create_payment_payload(payment_required(batch_requirements(), f"{ORIGIN}/v1/batch"))
    _, answer = await devnet.settle(deposit, batch_requirements())
    assert answer["success"] is True
    tool = declare_mcp_discovery_extension(
        DeclareMcpDiscoveryConfig(tool_name="station_lookup", input_schema={"properties": {"id": {"type": "string"}}})
    )
    await settled(devnet, payment_required(exact_requirements(), f"{ORIGIN}/mcp", extensions=tool))

    async def resources(query: str) -> list[str]:
        return [item["resource"] for item in (await listed(devnet, query))["items"]]

    assert await resources("?type=mcp") == [f"{ORIGIN}/mcp"]
    assert await resources("?type=http&scheme=exact") == [STATIONS, f"{ORIGIN}/v1/other"]
    assert await resources("?scheme=batch-settlement") == [f"{ORIGIN}/v1/batch"]
    assert await resources(f"?payTo={other_merchant.lower()}") == [f"{ORIGIN}/v1/other"]
    assert await resources("?network=base-sepolia") == []
    assert len(await resources("?network=eip155:84532")) == 4


async def test_supported_lists_the_bazaar_extension(devnet):
    _, supported = await devnet.get("/supported")

    assert supported["extensions"] == [BAZAAR.key]


async def test_the_catalogue_keeps_the_most_recently_updated_resources():
    catalogue = Catalogue(max_resources=2)
    requirements = exact_requirements()
    payloads = [await pay(payment_required(requirements, f"{ORIGIN}/r{n}")) for n in range(3)]
    catalogue.record(payloads[0], requirements)
    catalogue.record(payloads[1], requirements)
    catalogue.record(payloads[0], requirements)  # r0 is now the most recently updated

    catalogue.record(payloads[2], requirements)

    items = catalogue.page(ListQuery())["items"]
    assert [item["resource"] for item in items] == [f"{ORIGIN}/r0", f"{ORIGIN}/r2"]
