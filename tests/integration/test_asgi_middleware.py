"""paysidecar.asgi_middleware rules beyond the shared service tests: other 2xx,
failing handlers, streamed answers, path patterns, telemetry events (the sidecar's,
once), and a bare
ASGI app with no framework around it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest

from paysidecar.asgi_middleware import REQUEST_ID_SCOPE_KEY, X402Middleware
from paysidecar.client import SidecarClient
from tests.support.calls import receipt
from tests.support.payments import pay_once_the_sidecar_stopped, sign_for

from .conftest import serve_asgi
from .weather_asgi import PRICED, SECRET, weather_app


@dataclass
class Paywalled:
    url: str
    session: aiohttp.ClientSession
    # What on_event heard: (name, request_id, route, attributes).
    events: list[tuple[str, str, str, dict[str, str]]] = field(default_factory=list)


@pytest.fixture
async def paywalled(stack) -> AsyncIterator[Paywalled]:
    events: list = []
    async with serve_asgi(weather_app(stack.sidecar.target, events)) as url, aiohttp.ClientSession() as session:
        yield Paywalled(url, session, events)


async def test_free_route_is_untouched(paywalled, stack):
    async with paywalled.session.get(paywalled.url + "/free") as response:
        assert response.status == 200
        assert "Cache-Control" not in response.headers
    assert stack.facilitator.stats.verify_calls == 0


async def test_other_2xx_settles_and_the_app_sees_the_request_id(paywalled, stack):
    url = paywalled.url + "/created"
    headers = {"PAYMENT-SIGNATURE": await sign_for(url), "X-Request-ID": "p-201"}
    async with paywalled.session.get(url, headers=headers) as response:
        assert response.status == 201
        assert response.headers["Cache-Control"] == "private, no-store"
        body = await response.json()
        settled = receipt(response.headers)
    assert body == {"secret": SECRET, "request_id": "p-201"}
    assert stack.chain.receipt(settled["transaction"]) is not None
    [event] = await stack.sidecar.events("payment_settled", "p-201")
    assert event.route == "GET /created" and event.attributes["transaction"] == settled["transaction"]
    assert paywalled.events == []  # the payment events are the sidecar's alone


@pytest.mark.parametrize(("path", "status"), [("/broken", 500), ("/redirect", 302), ("/crash", 500)])
async def test_no_settle_when_the_app_does_not_answer_2xx(paywalled, stack, path, status):
    url = paywalled.url + path
    header = await sign_for(url)
    for _attempt in range(2):
        # A released claim verifies again; a kept one would answer 402 payment_already_used.
        async with paywalled.session.get(url, headers={"PAYMENT-SIGNATURE": header}, allow_redirects=False) as response:
            assert response.status == status
            assert "PAYMENT-RESPONSE" not in response.headers
            if path != "/crash":  # the app's own answer goes through
                assert SECRET in await response.text() or SECRET in response.headers.get("Location", "")
    assert stack.facilitator.stats.settle_calls == 0
    assert stack.chain.transfers_applied == 0


async def test_the_apps_charge_reaches_settle_and_a_bad_one_charges_nothing(paywalled, stack):
    url = paywalled.url + "/charged?charge=-5"
    header = await sign_for(url)
    for _attempt in range(2):
        # Released, not kept: the same payment verifies again.
        async with paywalled.session.get(url, headers={"PAYMENT-SIGNATURE": header}) as response:
            assert response.status == 500
            assert "PAYMENT-RESPONSE" not in response.headers and SECRET not in await response.text()
    assert stack.facilitator.stats.settle_calls == 0
    url = paywalled.url + "/charged?charge=1"
    async with paywalled.session.get(url, headers={"PAYMENT-SIGNATURE": await sign_for(url)}) as response:
        # An exact payment settles what its payer signed.
        assert response.status == 200 and receipt(response.headers)["success"] is True


async def test_the_app_reads_the_price_per_row_of_the_sidecars_route(paywalled):
    url = paywalled.url + "/rows"
    async with paywalled.session.get(url, headers={"PAYMENT-SIGNATURE": await sign_for(url)}) as response:
        assert response.status == 200 and receipt(response.headers)["success"] is True
        assert (await response.json())["price_per_row"] == 7


async def test_streamed_answer_is_held_until_settled_then_sent_whole(paywalled, stack):
    url = paywalled.url + "/streamed"
    async with paywalled.session.get(url) as unpaid:
        assert unpaid.status == 402
        assert SECRET not in await unpaid.text()
    async with paywalled.session.get(url, headers={"PAYMENT-SIGNATURE": await sign_for(url)}) as paid:
        assert paid.status == 200
        assert await paid.text() == f"stream:{SECRET}:end"
        assert receipt(paid.headers)["success"] is True


async def test_path_pattern_route_is_paid_under_its_pattern_key(paywalled, stack):
    url = paywalled.url + "/items/42"
    async with paywalled.session.get(url, headers={"X-Request-ID": "item-1"}) as unpaid:
        assert unpaid.status == 402
    [event] = await stack.sidecar.events("payment_challenge_issued", "item-1")
    assert event.route == "GET /items/{item_id}"
    async with paywalled.session.get(url, headers={"PAYMENT-SIGNATURE": await sign_for(url)}) as paid:
        assert paid.status == 200
        assert await paid.json() == {"item": "42", "secret": SECRET}


async def test_replay_raises_a_verify_failed_event_with_the_reason(paywalled, stack):
    url = paywalled.url + "/created"
    header = await sign_for(url)
    async with paywalled.session.get(url, headers={"PAYMENT-SIGNATURE": header}) as first:
        assert first.status == 201
    async with paywalled.session.get(url, headers={"PAYMENT-SIGNATURE": header, "X-Request-ID": "again"}) as second:
        assert second.status == 402
    [event] = await stack.sidecar.events("payment_verify_failed", "again")
    assert event.attributes["reason"] == "payment_already_used"


async def test_sidecar_gone_is_a_503_and_the_event_the_middleware_tells(paywalled, stack):
    url = paywalled.url + "/created"
    status, body = await pay_once_the_sidecar_stopped(paywalled.session, url, stack.sidecar.stop, "down")
    assert status == 503
    assert body["error"]["code"] == "payment_service_unavailable" and body["error"]["request_id"] == "down"
    assert SECRET not in str(body)
    assert paywalled.events == [
        ("sidecar_call_failed", "down", "GET /created", {"call": "authorize", "code": "UNAVAILABLE"})
    ]


async def bare_app(scope, receive, send) -> None:
    """An ASGI app with no framework: the body in two parts."""
    if scope["type"] != "http":
        return
    request_id = scope[REQUEST_ID_SCOPE_KEY].encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": SECRET.encode(), "more_body": True})
    await send({"type": "http.response.body", "body": b" for " + request_id})


async def test_wraps_a_bare_asgi_app_with_a_client_it_is_given(stack):
    async with SidecarClient(stack.sidecar.target, timeout_s=5.0) as client:
        app = X402Middleware(bare_app, client, routes={("GET", "/raw"): PRICED})
        async with serve_asgi(app) as base, aiohttp.ClientSession() as session:
            url = base + "/raw"
            async with session.get(url) as unpaid:
                assert unpaid.status == 402
                assert SECRET not in await unpaid.text()
            headers = {"PAYMENT-SIGNATURE": await sign_for(url), "X-Request-ID": "bare-1"}
            async with session.get(url, headers=headers) as paid:
                assert paid.status == 200
                assert await paid.text() == f"{SECRET} for bare-1"
                settled = receipt(paid.headers)
    assert stack.chain.receipt(settled["transaction"]) is not None
