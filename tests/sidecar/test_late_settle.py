"""A pending settle that is mined late is still a payment. The facilitator answers
settlement_pending with the transaction, which is mined only after the reconcile
window. The settle stays `unknown` (never `failed`) and the payer is told it is
being checked — retry with the same header, never "nothing was charged". The
recovery job keeps asking the chain until it sees the transfer (then the same
header redeems the payment once) or the nonce still unused after validBefore."""

from __future__ import annotations

import json
import time

from devnet.wallets import MERCHANT_ADDRESS
from tests.reliability.observe import eventually, execute, ledger_row, tracking_record
from tests.support.calls import URL, authorize_request, receipt, settle_request
from tests.support.payments import sign_for

from .test_reconcile import _state

PRICE = 1000
# Small windows so the test needs no long waits: the transaction is mined 1.5 s
# after the settle, well after the 0.5 s reconcile window.
LATE = dict(settle_timeout_s=0.5, settle_retries=0, reconcile_window_s=0.5, reconcile_poll_s=0.05)
MINED_AFTER_MS = 1500


def _assert_in_doubt(answer, request_id: str) -> dict:
    """The one in-doubt answer: 503 payment_in_doubt, Retry-After, retry the same
    header; in the error shape of every answer, with the call's request id."""
    assert answer.status == 503
    assert int(answer.headers["Retry-After"]) >= 1
    error = json.loads(answer.body)["error"]
    assert error["code"] == "payment_in_doubt"
    assert error["request_id"] == request_id
    assert "retry with the same payment header" in error["message"]
    assert "nothing" not in error["message"].lower()
    return error


async def test_a_pending_settle_mined_after_the_window_is_redeemed_once(make_sidecar, facilitators, chain, database_url):
    facilitators[0].arm(stage="settle", mode="settlement_pending", mine_after_ms=MINED_AFTER_MS, times=1)
    sidecar = await make_sidecar(**LATE)
    header = await sign_for(URL, amount=PRICE)
    merchant = chain.balance_of(MERCHANT_ADDRESS)
    try:
        authorizing = authorize_request(header)
        authorized = await sidecar.payments.Authorize(authorizing)
        payment_id = authorized.verified.payment_id
        first = await sidecar.payments.Settle(settle_request(authorized))
        assert not first.success
        _assert_in_doubt(first.answer, authorizing.request_id)
        pending = receipt(first.answer.headers)
        assert (pending["success"], pending["errorReason"]) == (False, "payment_in_doubt")
        transaction = pending["transaction"]
        assert transaction and chain.is_pending(transaction)
        assert await _state(database_url, payment_id) == "unknown"

        # Retried before the chain tells: still being checked, not "already used"
        # (which would send the payer to pay a second time).
        retried = authorize_request(header)
        early = await sidecar.payments.Authorize(retried)
        assert early.rejected.reason == "payment_in_doubt"
        _assert_in_doubt(early.rejected, retried.request_id)

        async def recovered() -> bool:
            await sidecar.sidecar.recover()
            state = await _state(database_url, payment_id)
            assert state != "failed", "a pending payment was written off"
            return state == "settled_unserved"

        await eventually(recovered, "recovery to see the late transfer", timeout_s=10.0)
        row = await ledger_row(database_url, payment_id)
        assert (row["transaction"], row["reconciled_by"]) == (transaction, "chain")

        redeem = await sidecar.payments.Authorize(authorize_request(header))
        assert redeem.verified.redeem is True
        served = await sidecar.payments.Settle(settle_request(redeem))
        assert served.success
        assert receipt(served.headers)["transaction"] == transaction
        third = await sidecar.payments.Authorize(authorize_request(header))
        assert third.rejected.reason == "payment_already_used"
        await sidecar.sidecar.writer.flush()
        record = await tracking_record(database_url, authorized.tracking_id)
    finally:
        await sidecar.stop()
    assert record["response_status"] == 503
    assert record["settlement"]["status"] == "settled_unserved"  # recovery's finding
    assert chain.transfers_applied == 1
    assert chain.balance_of(MERCHANT_ADDRESS) == merchant + PRICE
    assert facilitators[0].stats.settle_calls == 1  # never settled again


async def test_an_unresolved_settle_fails_only_after_valid_before(make_sidecar, facilitators, chain, database_url):
    """A pending transaction never mined: in doubt while the authorization may still
    be used; failed (expired_unsettled) once validBefore has passed with the nonce unused."""
    facilitators[0].arm(stage="settle", mode="settlement_pending", times=1)  # held in the mempool
    sidecar = await make_sidecar(**LATE)
    header = await sign_for(URL, amount=PRICE)
    try:
        authorizing = authorize_request(header)
        authorized = await sidecar.payments.Authorize(authorizing)
        payment_id = authorized.verified.payment_id
        first = await sidecar.payments.Settle(settle_request(authorized))
    finally:
        await sidecar.stop()
    _assert_in_doubt(first.answer, authorizing.request_id)
    assert await _state(database_url, payment_id) == "unknown"

    seeing = await make_sidecar(settle_timeout_s=0.01, settle_retries=0, reconcile_window_s=0.0)
    try:
        for _ in range(3):  # asked again and again: still unused, still valid
            await seeing.sidecar.recover()
            assert await _state(database_url, payment_id) == "unknown"
        # validBefore passes (as time would), the nonce still unused.
        past = int(time.time()) - 3600
        await execute(database_url, f"UPDATE payment_ledger SET valid_before = {past} WHERE payment_id = '{payment_id}'")
        await seeing.sidecar.recover()
    finally:
        await seeing.stop()
    row = await ledger_row(database_url, payment_id)
    assert (row["state"], row["settle_reason"]) == ("failed", "expired_unsettled")
    assert chain.transfers_applied == 0
