"""Every request's tracking record ends complete (its own settlement or release and
its answer) or marked by recovery — including a redeem and the request whose
answer was lost before it."""

from __future__ import annotations

import asyncio

from paysidecar.client import SidecarClient
from tests.support.calls import URL, authorize_request, release_request, settle_request
from tests.support.payments import sign_for

from .observe import ledger_states, tracking_record


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


PAID_CALLS = 20
UNPAID_CALLS = 5  # each of: no payment (a 402 challenge), a malformed payment (400)


def _complete(record: dict | None, status: int) -> bool:
    """Finalized with the call's answer; a paid one verified and settled too."""
    if not record or record["response_status"] != status:
        return False
    if status != 200:
        return record["payment_verified"] is False
    return bool(
        record["payment_verified"] and (record["settlement"] or {}).get("success") is True and record["handler_executed"]
    )


async def test_a_crash_right_after_answers_loses_no_record(spawn_sidecar, database_url):
    """SIGKILL the moment the last answer is back: once the sidecar is up again,
    every answered call has its whole record — the 20 paid ones verification,
    settlement and finalize, as the ledger has them settled; the 402 challenges
    and the rejections their answer."""
    headers = [await sign_for(URL, payer_index=n % 8) for n in range(PAID_CALLS)]
    # Batching that keeps steps in memory for up to a second (a setting the config
    # allows): whatever the batching, an answered call's steps must survive.
    first = await spawn_sidecar({"PAYSIDECAR_TRACKING_FLUSH_INTERVAL_S": "1.0"})
    async with SidecarClient(first.target) as client:

        async def pay(header: str) -> tuple[str, int, str]:
            request = authorize_request(header)
            authorized = await client.authorize(request)
            settled = await client.settle(
                payment_id=authorized.verified.payment_id,
                claim_token=authorized.verified.claim_token,
                tracking_id=authorized.tracking_id,
                response_status=200,
                response_time_ms=3,
                request_id=request.request_id,
            )
            assert settled.success
            return authorized.tracking_id, 200, authorized.verified.payment_id

        async def unpaid(header: str, status: int) -> tuple[str, int, str]:
            answered = await client.authorize(authorize_request(header))
            outcome = getattr(answered, answered.WhichOneof("outcome"))
            assert outcome.status == status
            return answered.tracking_id, status, ""

        calls = [pay(header) for header in headers]
        calls += [unpaid("", 402) for _ in range(UNPAID_CALLS)]
        calls += [unpaid("not a payment header", 400) for _ in range(UNPAID_CALLS)]
        answered = await asyncio.gather(*calls)
        await first.kill()
    await first.closed()
    paid = [pid for _, _, pid in answered if pid]
    assert set((await ledger_states(database_url, paid)).values()) == {"settled"}

    await spawn_sidecar()
    records = {tracking_id: (await tracking_record(database_url, tracking_id), status) for tracking_id, status, _ in answered}
    missing = sorted(tracking_id for tracking_id, (record, _) in records.items() if record is None)
    incomplete = sorted(
        tracking_id for tracking_id, (record, status) in records.items() if record and not _complete(record, status)
    )
    assert (missing, incomplete) == ([], []), f"{len(missing)} records missing, {len(incomplete)} incomplete"
