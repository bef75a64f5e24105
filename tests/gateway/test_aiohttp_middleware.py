"""paysidecar.aiohttp_middleware on a small aiohttp app, against the real sidecar:
content only after a settle; every other outcome releases the claim."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web

from devnet.wallets import MERCHANT_ADDRESS
from paysidecar.aiohttp_middleware import request_id, set_charge, x402_middleware
from paysidecar.client import SidecarClient
from tests.support.net import ledger_state, send_then_vanish, wait_until
from tests.support.calls import receipt
from tests.support.payments import pay_once_the_sidecar_stopped, sign_for

SECRET = "paid-content-7f3a"
PRICED = {"price": "$0.001", "pay_to": MERCHANT_ADDRESS, "network": "eip155:84532"}


async def ok(request: web.Request) -> web.Response:
    return web.json_response({"secret": SECRET, "request_id": request_id(request)})


async def created(request: web.Request) -> web.Response:
    return web.json_response({"secret": SECRET}, status=201)


async def broken(request: web.Request) -> web.Response:
    return web.Response(status=500, text="handler broke")


async def missing(request: web.Request) -> web.Response:
    raise web.HTTPNotFound(text="nothing here")


async def redirect(request: web.Request) -> web.Response:
    raise web.HTTPFound("/ok")


async def crash(request: web.Request) -> web.Response:
    raise RuntimeError("handler crashed")


async def counted(request: web.Request) -> web.Response:
    """An answer whose headers tell about the data: a count, a version, a next page."""
    rows = int(request.query.get("rows", "1"))
    headers = {"X-Total-Count": str(rows), "ETag": f'"v{rows}"', "Link": f'</counted?after={rows}>; rel="next"'}
    return web.json_response({"secret": SECRET, "rows": list(range(rows))}, headers=headers)


async def charged(request: web.Request) -> web.Response:
    """An answer priced by what it carries: the charge comes in the query."""
    set_charge(request, int(request.query["charge"]))
    return web.json_response({"secret": SECRET})


HANDLERS = {
    "/ok": ok,
    "/charged": charged,
    "/created": created,
    "/broken": broken,
    "/missing": missing,
    "/redirect": redirect,
    "/crash": crash,
    "/counted": counted,
}


@dataclass
class Paywalled:
    url: str
    session: aiohttp.ClientSession
    # What on_event heard: (name, request_id, route, attributes).
    events: list[tuple[str, str, str, dict]] = field(default_factory=list)


@contextlib.asynccontextmanager
async def paywalled_app(target: str) -> AsyncIterator[Paywalled]:
    client = SidecarClient(target, timeout_s=5.0)
    seen: list = []
    table = {("GET", path): PRICED for path in HANDLERS}
    app = web.Application(
        middlewares=[
            x402_middleware(
                client,
                table,
                on_event=lambda name, *, request_id, route, **attributes: seen.append(
                    (name, request_id, route, attributes)
                ),
            )
        ]
    )
    for path, handler in HANDLERS.items():
        app.router.add_get(path, handler)
    app.router.add_get("/free", ok)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        async with aiohttp.ClientSession() as session:
            yield Paywalled(f"http://127.0.0.1:{runner.addresses[0][1]}", session, seen)
    finally:
        await runner.cleanup()
        await client.close()


@pytest.fixture
async def paywalled(sidecar_stack) -> AsyncIterator[Paywalled]:
    async with paywalled_app(sidecar_stack.sidecar.target) as app:
        yield app


async def test_free_route_is_untouched(paywalled):
    async with paywalled.session.get(paywalled.url + "/free") as response:
        assert response.status == 200
        assert "Cache-Control" not in response.headers


async def test_unpaid_gets_402_and_the_sidecar_records_the_challenge_once(paywalled, sidecar_stack):
    async with paywalled.session.get(paywalled.url + "/ok", headers={"X-Request-ID": "c-1"}) as response:
        assert response.status == 402
        assert "PAYMENT-REQUIRED" in response.headers
        assert SECRET not in await response.text()
    [event] = await sidecar_stack.sidecar.events("payment_challenge_issued", "c-1")
    assert event.route == "GET /ok"
    assert paywalled.events == []  # the payment events are the sidecar's alone


@pytest.mark.parametrize("path", ["/ok", "/created"])
async def test_2xx_settles_then_serves_with_payment_response(paywalled, sidecar_stack, path):
    url = paywalled.url + path
    async with paywalled.session.get(url, headers={"PAYMENT-SIGNATURE": await sign_for(url), "X-Request-ID": "p-1"}) as response:
        assert response.status in (200, 201)
        assert response.headers["Cache-Control"] == "private, no-store"
        body = await response.json()
        settled = receipt(response.headers)
    assert body["secret"] == SECRET
    assert settled["success"] is True
    assert sidecar_stack.chain.receipt(settled["transaction"]) is not None
    [event] = await sidecar_stack.sidecar.events("payment_settled", "p-1")
    assert event.attributes["transaction"] == settled["transaction"]
    assert paywalled.events == []


@pytest.mark.parametrize(
    ("path", "status"),
    [("/broken", 500), ("/missing", 404), ("/redirect", 302), ("/crash", 500)],
)
async def test_no_settle_when_the_handler_does_not_answer_2xx(paywalled, sidecar_stack, path, status):
    url = paywalled.url + path
    header = await sign_for(url)
    for _attempt in range(2):
        # A released claim verifies again; a kept one would answer 402 payment_already_used.
        async with paywalled.session.get(url, headers={"PAYMENT-SIGNATURE": header}, allow_redirects=False) as response:
            assert response.status == status
            assert "PAYMENT-RESPONSE" not in response.headers
            assert SECRET not in await response.text()
    assert sidecar_stack.facilitator.stats.settle_calls == 0
    assert sidecar_stack.chain.transfers_applied == 0


async def test_an_exact_payment_settles_what_it_signed_whatever_the_charge(paywalled, sidecar_stack):
    chain = sidecar_stack.chain
    before = chain.balance_of(MERCHANT_ADDRESS)
    url = paywalled.url + "/charged?charge=1"
    async with paywalled.session.get(url, headers={"PAYMENT-SIGNATURE": await sign_for(url)}) as response:
        assert response.status == 200 and receipt(response.headers)["success"] is True
    assert chain.balance_of(MERCHANT_ADDRESS) == before + 1000


async def test_an_invalid_charge_is_a_500_and_nothing_is_charged(paywalled, sidecar_stack):
    url = paywalled.url + "/charged?charge=-5"
    header = await sign_for(url)
    for _attempt in range(2):
        # The claim is released: the same payment verifies again (a kept one: 402).
        async with paywalled.session.get(url, headers={"PAYMENT-SIGNATURE": header}) as response:
            assert response.status == 500
            assert "PAYMENT-RESPONSE" not in response.headers
            assert SECRET not in await response.text()
    assert sidecar_stack.facilitator.stats.settle_calls == 0
    assert sidecar_stack.chain.transfers_applied == 0


async def test_head_is_not_settled_and_has_no_body(paywalled, sidecar_stack):
    url = paywalled.url + "/ok"
    header = await sign_for(url)
    async with paywalled.session.head(url, headers={"PAYMENT-SIGNATURE": header}) as response:
        assert response.status == 200
        assert await response.read() == b""
    assert sidecar_stack.facilitator.stats.settle_calls == 0
    async with paywalled.session.get(url, headers={"PAYMENT-SIGNATURE": header}) as response:
        assert response.status == 200
    assert sidecar_stack.chain.transfers_applied == 1


async def test_paid_head_carries_no_header_that_depends_on_the_data(paywalled, sidecar_stack):
    header = await sign_for(paywalled.url + "/counted")
    seen = []
    for rows in (1, 7, 300):
        url = f"{paywalled.url}/counted?rows={rows}"
        async with paywalled.session.head(url, headers={"PAYMENT-SIGNATURE": header}) as response:
            assert response.status == 200
            seen.append({k.lower(): v for k, v in response.headers.items() if k.lower() not in ("date", "server")})
    assert seen[0] == seen[1] == seen[2], seen
    assert not {"x-total-count", "etag", "link"} & set(seen[0])
    assert seen[0].get("content-length", "0") == "0"
    assert seen[0]["content-type"].startswith("application/json")
    assert seen[0]["cache-control"] == "private, no-store"
    assert sidecar_stack.facilitator.stats.settle_calls == 0


async def test_replayed_payment_is_refused_with_a_verify_failed_event(paywalled, sidecar_stack):
    url = paywalled.url + "/ok"
    header = await sign_for(url)
    async with paywalled.session.get(url, headers={"PAYMENT-SIGNATURE": header}) as first:
        assert first.status == 200
    async with paywalled.session.get(url, headers={"PAYMENT-SIGNATURE": header, "X-Request-ID": "again"}) as second:
        assert second.status == 402
        assert SECRET not in await second.text()
    [event] = await sidecar_stack.sidecar.events("payment_verify_failed", "again")
    assert event.attributes["reason"] == "payment_already_used"


async def test_sidecar_gone_mid_way_means_503_never_content(sidecar_stack):
    async with paywalled_app(sidecar_stack.sidecar.target) as app:
        url = app.url + "/ok"
        status, body = await pay_once_the_sidecar_stopped(app.session, url, sidecar_stack.sidecar.stop, "down")
    assert status == 503
    assert body["error"]["code"] == "payment_service_unavailable"
    assert body["error"]["request_id"] == "down"
    assert SECRET not in str(body)
    # The one event the sidecar cannot record is the middleware's to tell.
    assert app.events == [("sidecar_call_failed", "down", "GET /ok", {"call": "authorize", "code": "UNAVAILABLE"})]








async def test_client_gone_before_settle_releases_and_takes_nothing(paywalled, sidecar_stack, database_url):
    url = paywalled.url + "/ok"
    header = await sign_for(url)
    stats = sidecar_stack.facilitator.stats
    sidecar_stack.facilitator.arm(stage="verify", mode="delay", delay_ms=1000, times=1)

    async def verifying() -> bool:
        return stats.verify_calls == 1

    async def released() -> bool:
        return await ledger_state(database_url) == "released"

    await send_then_vanish(url, header, verifying)
    await wait_until(released)
    assert stats.settle_calls == 0
    assert sidecar_stack.chain.transfers_applied == 0


async def test_paid_answer_lost_after_settle_is_redeemable_once_without_a_new_charge(
    paywalled, sidecar_stack, database_url
):
    url = paywalled.url + "/ok"
    header = await sign_for(url)
    stats = sidecar_stack.facilitator.stats
    sidecar_stack.facilitator.arm(stage="settle", mode="delay", delay_ms=1000, times=1)

    async def settling() -> bool:
        return stats.settle_calls == 1

    async def unserved() -> bool:
        return await ledger_state(database_url) == "settled_unserved"

    await send_then_vanish(url, header, settling)
    await wait_until(unserved)
    assert sidecar_stack.chain.transfers_applied == 1

    async with paywalled.session.get(url, headers={"PAYMENT-SIGNATURE": header}) as redeemed:
        assert redeemed.status == 200
        assert (await redeemed.json())["secret"] == SECRET
    async with paywalled.session.get(url, headers={"PAYMENT-SIGNATURE": header}) as again:
        assert again.status == 402
    assert stats.settle_calls == 1
    assert sidecar_stack.chain.transfers_applied == 1
