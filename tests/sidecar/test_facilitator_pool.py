"""DESIGN §5: verify falls back only on transport/format failures; settle stays on
the facilitator that verified; the breaker opens, half-opens and closes."""

from __future__ import annotations

import grpc
import pytest

from paysidecar.v1 import status_pb2
from sidecar.facilitators.pool import MAX_NAMED_BY_CALLERS
from sidecar.facilitators.health import CLOSED, HALF_OPEN, OPEN, Health
from tests.support.net import closed_port
from tests.support.calls import URL, authorize_request, settle_request
from tests.support.payments import sign_for


async def test_first_facilitator_down_second_verifies_and_settles(make_sidecar, facilitators, chain):
    down = f"http://127.0.0.1:{closed_port()}"
    sidecar = await make_sidecar([down, facilitators[1].url])
    try:
        authorized = await sidecar.payments.Authorize(authorize_request(await sign_for(URL)))
        assert authorized.WhichOneof("outcome") == "verified"
        settled = await sidecar.payments.Settle(settle_request(authorized))
    finally:
        await sidecar.stop()
    assert settled.success
    assert facilitators[1].stats.verify_calls == 1
    assert facilitators[1].stats.settle_calls == 1  # settle went where verify succeeded
    assert chain.transfers_applied == 1


async def test_clean_invalid_at_first_facilitator_does_not_fall_back(make_sidecar, facilitators, chain):
    facilitators[0].arm(stage="verify", mode="invalid")
    sidecar = await make_sidecar([facilitators[0].url, facilitators[1].url])
    try:
        response = await sidecar.payments.Authorize(authorize_request(await sign_for(URL)))
    finally:
        await sidecar.stop()
    assert response.WhichOneof("outcome") == "rejected"
    assert response.rejected.reason == "invalid_payment"
    assert facilitators[1].stats.verify_calls == 0


async def test_per_route_facilitators_win_over_configured_ones(make_sidecar, facilitators):
    sidecar = await make_sidecar([facilitators[0].url])
    try:
        request = authorize_request(await sign_for(URL), facilitators=[facilitators[1].url])
        response = await sidecar.payments.Authorize(request)
    finally:
        await sidecar.stop()
    assert response.WhichOneof("outcome") == "verified"
    assert (facilitators[0].stats.verify_calls, facilitators[1].stats.verify_calls) == (0, 1)


async def test_breaker_opens_after_consecutive_failures_and_shows_in_status(make_sidecar, facilitators):
    facilitators[0].arm(stage="verify", mode="status", status=503)
    sidecar = await make_sidecar([facilitators[0].url], breaker_failures=3, breaker_cooldown_s=60)
    try:
        for _ in range(3):
            response = await sidecar.payments.Authorize(authorize_request(await sign_for(URL)))
            assert (response.WhichOneof("outcome"), response.rejected.status) == ("rejected", 503)
        refused = await sidecar.payments.Authorize(authorize_request(await sign_for(URL)))
        status = await sidecar.status.GetStatus(status_pb2.GetStatusRequest())
    finally:
        await sidecar.stop()
    assert refused.rejected.status == 503
    assert facilitators[0].stats.verify_calls == 3  # open: not called a fourth time
    (only,) = status.facilitators
    assert (only.breaker_state, only.consecutive_failures) == (OPEN, 3)


def test_breaker_half_opens_after_cooldown_and_closes_on_success():
    now = [0.0]
    health = Health(failure_threshold=2, cooldown_s=30, clock=lambda: now[0])
    health.record(False, 5)
    assert health.current_state() == CLOSED
    health.record(False, 5)
    assert health.current_state() == OPEN and not health.allow()
    now[0] = 31
    assert health.current_state() == HALF_OPEN
    assert health.allow() is True
    assert health.allow() is False  # one probe at a time
    health.record(True, 5)
    assert health.current_state() == CLOSED and health.allow()


def test_failed_half_open_probe_reopens_the_breaker():
    now = [0.0]
    health = Health(failure_threshold=1, cooldown_s=10, clock=lambda: now[0])
    health.record(False, 5)
    now[0] = 11
    assert health.allow()
    health.record(False, 5)
    assert health.current_state() == OPEN
    now[0] = 15
    assert not health.allow()


def test_healthier_facilitator_is_ordered_first():
    slow, fast = Health(), Health()
    for _ in range(5):
        slow.record(False, 900)
        fast.record(True, 20)
    assert sorted([slow, fast], key=Health.rank) == [fast, slow]


@pytest.mark.parametrize(
    "named",
    [
        ["file:///etc/passwd"],
        ["http://"],
        ["http://[::1"],
        ["ftp://facilitator.example"],
        ["http://f" + "x" * 3000 + ".example"],
        [f"http://f{n}.example" for n in range(9)],
    ],
)
async def test_a_route_naming_odd_or_too_many_facilitators_is_refused(sidecar, named):
    request = authorize_request(await sign_for(URL))
    request.route.facilitators.extend(named)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await sidecar.payments.Authorize(request)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.details().startswith("invalid_route:")


async def test_facilitators_named_by_callers_do_not_grow_the_pool_without_bound(sidecar):
    pool = sidecar.sidecar.facilitators
    configured = {f.url for f in pool.all()}
    for n in range(MAX_NAMED_BY_CALLERS + 30):
        pool.get(f"http://f{n}.example")
    urls = {f.url for f in pool.all()}
    assert configured <= urls  # configured ones are never dropped
    assert len(urls - configured) == MAX_NAMED_BY_CALLERS
    assert "http://f0.example" not in urls and f"http://f{MAX_NAMED_BY_CALLERS + 29}.example" in urls
