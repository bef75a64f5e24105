"""Every request's tracking record ends complete (its own settlement or release and
its answer) or marked by recovery — including a redeem and the request whose
answer was lost before it."""

from __future__ import annotations


from tests.support.calls import URL, authorize_request, release_request, settle_request
from tests.support.payments import sign_for

from .observe import tracking_record


async def test_a_redeem_completes_its_own_record_and_keeps_the_first(make_sidecar, database_url):
    sidecar = await make_sidecar()
    header = await sign_for(URL)
    first = await sidecar.payments.Authorize(authorize_request(header))
    assert (await sidecar.payments.Settle(settle_request(first))).success
    # The answer could not be written to the client.
    await sidecar.payments.Release(release_request(first, "response_not_delivered"))
    redeem = await sidecar.payments.Authorize(authorize_request(header))
    assert redeem.verified.redeem
    assert (await sidecar.payments.Settle(settle_request(redeem))).success
    await sidecar.sidecar.writer.flush()

    undelivered = await tracking_record(database_url, first.tracking_id)
    redeemed = await tracking_record(database_url, redeem.tracking_id)
    assert undelivered["settlement"].get("ledger_state") == "settled_unserved"
    assert redeemed["settlement"]["success"] is True
    assert redeemed["settlement"]["redeemed"] is True
    assert redeemed["response_status"] == 200
