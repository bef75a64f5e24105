"""The x402 extensions on a route offering both schemes. Every 402 of the route
declares them (payment-identifier and its Bazaar declaration), whatever it offers.
Payment identifiers are kept for exact payments only: a batch-settlement payment
carrying one is refused (400) before its channel is touched, so it is never charged
with the id's promise unkept (a re-signed voucher retried after a lost answer would
be a second charge); sent again without the id, the voucher is charged once."""

from __future__ import annotations

import json

import asyncpg
from x402.extensions.bazaar import BAZAAR, bazaar_resource_server_extension, declare_discovery_extension
from x402.extensions.payment_identifier import (
    PAYMENT_IDENTIFIER,
    append_payment_identifier_to_extensions,
    declare_payment_identifier_extension,
)
from x402.http.types import HTTPRequestContext
from x402.schemas import PaymentPayload

from tests.channels.support import BATCH, PRICE, ChannelClient, Paid, required_of
from tests.devnet.channels import channel_id

PAYMENT_ID = "pay_voucher_retry_000000001"
DECLARATION = bazaar_resource_server_extension.enrich_declaration(
    declare_discovery_extension(input={"_limit": "1"})[BAZAAR.key],
    HTTPRequestContext(adapter=None, path="/v1/records", method="GET"),  # type: ignore[arg-type]
)


def _with_id(payload: PaymentPayload, identifier: str = PAYMENT_ID) -> PaymentPayload:
    """The payload with a payment-identifier id, as an SDK client appends it to
    what the 402 declares (the voucher's signature does not cover extensions)."""
    extensions = {PAYMENT_IDENTIFIER: declare_payment_identifier_extension()}
    append_payment_identifier_to_extensions(extensions, identifier)
    return payload.model_copy(update={"extensions": extensions})


async def _channel(database_url: str, channel: str) -> asyncpg.Record | None:
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetchrow("SELECT * FROM payment_channels WHERE channel_id = $1", channel)
    finally:
        await conn.close()


def _refusal(paid: Paid) -> tuple[str, int, str]:
    return paid.outcome, paid.authorized.rejected.status, paid.reason


async def test_a_route_offering_both_schemes_declares_the_extensions_in_every_402(sidecar):
    client = ChannelClient(sidecar, discovery=json.dumps(DECLARATION))
    challenge = await client.required()
    await client.pay()
    second = await client.pay()
    # The same voucher again: charged already, a corrective 402 from the channel's rules.
    corrective = await client.authorize(second.payload)
    resent = required_of(corrective.authorized.rejected)
    requiring = await ChannelClient(sidecar, payment_identifier_required=True).required()

    assert [offer.scheme for offer in challenge.accepts] == [BATCH, "exact"]
    for required in (challenge, resent):
        assert required.extensions[PAYMENT_IDENTIFIER]["info"] == {"required": False}
        assert required.extensions[BAZAAR.key] == DECLARATION
    assert corrective.authorized.rejected.status == 402
    assert [offer.scheme for offer in resent.accepts] == [BATCH, "exact"]
    # Only exact payments carry ids: a route requiring one offers exact only.
    assert [offer.scheme for offer in requiring.accepts] == ["exact"]
    assert requiring.extensions[PAYMENT_IDENTIFIER]["info"] == {"required": True}


async def test_a_channel_payment_carrying_an_id_is_refused_and_charged_once_without_it(
    sidecar, database_url, facilitators
):
    client = ChannelClient(sidecar)
    deposit = await client.next_payload()
    refused_deposit = await client.authorize(_with_id(deposit))
    verify_calls = facilitators[0].stats.verify_calls
    channel_before_deposit = await _channel(database_url, channel_id(deposit))
    await client.settle(await client.authorize(deposit))

    voucher = await client.next_payload()
    refused_voucher = await client.authorize(_with_id(voucher))
    after_refusal = await _channel(database_url, channel_id(voucher))
    paid = await client.settle(await client.authorize(voucher))
    after_payment = await _channel(database_url, channel_id(voucher))

    for refused in (refused_deposit, refused_voucher):
        assert _refusal(refused) == ("rejected", 400, "payment_identifier_unsupported")
    # Refused before anything: no facilitator asked, no channel opened, held or charged.
    assert verify_calls == 0
    assert channel_before_deposit is None
    assert (after_refusal["charged_cumulative"], after_refusal["reserved_by"]) == (PRICE, None)
    assert paid.settled.success
    assert after_payment["charged_cumulative"] == 2 * PRICE


async def test_an_invalid_id_on_a_channel_payment_is_400(sidecar):
    client = ChannelClient(sidecar)
    payload = await client.next_payload()
    invalid = {PAYMENT_IDENTIFIER: {**declare_payment_identifier_extension(), "info": {"required": False, "id": "short"}}}

    refused = await client.authorize(payload.model_copy(update={"extensions": invalid}))

    assert _refusal(refused) == ("rejected", 400, "invalid_payment_identifier")


async def test_a_route_requiring_ids_refuses_a_channel_payment(sidecar, database_url):
    client = ChannelClient(sidecar)
    payload = await client.next_payload()  # the offer of a route that takes channel payments
    client.route_fields = {"payment_identifier_required": True}

    refused = await client.authorize(payload)

    assert _refusal(refused) == ("rejected", 400, "payment_identifier_required")
    assert await _channel(database_url, channel_id(payload)) is None
