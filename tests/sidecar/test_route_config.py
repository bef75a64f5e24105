"""The sidecar's route config is the one place for money terms: a caller names a
route, the sidecar answers its terms (DescribeRoute, the same as Authorize's 402
offers), and a name it does not know is a clear FAILED_PRECONDITION, never a
payment."""

from __future__ import annotations

import grpc
import pytest

from devnet.wallets import MERCHANT_ADDRESS
from paysidecar.v1 import payment_pb2
from tests.support.calls import URL, authorize_request, challenge
from tests.support.payments import sign_for

OTHER = "0x" + "34" * 20
ROUTES = {
    "dear": {"price": "$0.05", "pay_to": OTHER, "schemes": ["exact"]},
    "units": {"amount": "2500"},
    "rows": {"amount": "50", "price_per_row": 7},
}


@pytest.fixture
async def configured(make_sidecar):
    handle = await make_sidecar(routes=ROUTES)
    yield handle
    await handle.stop()


def named(name: str, header: str = "") -> payment_pb2.AuthorizeRequest:
    """An Authorize that names its route and sets no money term."""
    request = authorize_request(header, price="", pay_to="", network="")
    request.route.name = name
    return request


async def test_an_unknown_route_name_is_failed_precondition_and_nothing_is_verified(configured, facilitators):
    request = named("no-such-route", await sign_for(URL))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await configured.payments.Authorize(request)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert refused.value.details() == "unknown_route: no route named 'no-such-route' in the sidecar config"
    with pytest.raises(grpc.aio.AioRpcError) as described:
        await configured.payments.DescribeRoute(payment_pb2.DescribeRouteRequest(route=request.route))
    assert described.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert facilitators[0].stats.verify_calls == 0


@pytest.mark.parametrize("name", ["dear", "units", ""])
async def test_describe_route_says_what_the_402_offers(configured, name):
    request = named(name)
    described = await configured.payments.DescribeRoute(payment_pb2.DescribeRouteRequest(route=request.route))
    offer = challenge((await configured.payments.Authorize(request)).payment_required)["accepts"][0]
    assert (described.amount, described.asset, described.pay_to, described.network) == (
        offer["amount"],
        offer["asset"],
        offer["payTo"],
        offer["network"],
    )
    assert (described.asset_name, described.asset_version) == (offer["extra"]["name"], offer["extra"]["version"])
    assert (described.key, described.name, described.max_timeout_seconds) == (
        request.route.key,
        name,
        offer["maxTimeoutSeconds"],
    )


async def test_describe_route_gives_the_configured_price_and_its_atomic_amount(configured):
    def describe(name: str):
        route = payment_pb2.Route(key="GET /x", name=name)
        return configured.payments.DescribeRoute(payment_pb2.DescribeRouteRequest(route=route))

    dear, units, default = await describe("dear"), await describe("units"), await describe("")
    assert (dear.price, dear.amount, dear.pay_to, list(dear.schemes)) == ("$0.05", "50000", OTHER, ["exact"])
    assert (units.price, units.amount, units.asset_name) == ("", "2500", "USDC")
    assert (default.price, default.amount, default.pay_to) == ("$0.001", "1000", MERCHANT_ADDRESS)
    rows = await describe("rows")
    assert (rows.amount, rows.price_per_row, default.price_per_row) == ("50", "7", "")


async def test_verified_tells_the_caller_the_routes_price_per_row(configured):
    for name, per_row in (("rows", "7"), ("", "")):
        request = named(name)
        offer = challenge((await configured.payments.Authorize(request)).payment_required)["accepts"][0]
        paid = named(name, await sign_for(URL, amount=int(offer["amount"])))
        verified = (await configured.payments.Authorize(paid)).verified
        assert (verified.amount, verified.price_per_row) == (offer["amount"], per_row)
        await configured.payments.Release(
            payment_pb2.ReleaseRequest(
                payment_id=verified.payment_id, claim_token=verified.claim_token, reason="handler_status_500"
            )
        )
