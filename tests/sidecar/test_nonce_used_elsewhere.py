"""A used nonce is not proof that this payment was made. While our settle is slow,
the payer signs another authorization with the same nonce (1 unit to himself, or
1 unit to the merchant) and has the chain execute it. Our settle then fails and the
chain reports the nonce used, with an AuthorizationUsed(payer, nonce) event. The
payment counts as paid only when the transaction that used the nonce moved the
amount from the payer to the payTo: here it did not, so the payment is `failed`
(`nonce_used_elsewhere`), never served — in the live settle and in recovery."""

from __future__ import annotations

import asyncio

import pytest

from devnet.wallets import MERCHANT_ADDRESS
from tests.devnet.support import eventually
from tests.reliability.observe import ledger_row, tracking_record
from tests.support.calls import URL, authorize_request, receipt, settle_request
from tests.support.hostile_payer import spend_nonce_elsewhere
from tests.support.payments import sign_for

from .test_reconcile import _left_unknown, _recover_and_retry, _state

PRICE = 1000

# Where the payer sends the other authorization: himself, or too little to the merchant.
ELSEWHERE = [("to_himself", None), ("one_unit_to_the_merchant", MERCHANT_ADDRESS)]


async def _settle_while_the_payer_spends_the_nonce(sidecar, facilitator, header: str, to: str | None):
    """Authorize, then Settle; once the settle reached the facilitator, the payer
    has another authorization with the same nonce executed. The Settle answer."""
    authorized = await sidecar.payments.Authorize(authorize_request(header))
    assert authorized.WhichOneof("outcome") == "verified"
    settling = asyncio.ensure_future(sidecar.payments.Settle(settle_request(authorized)))
    await eventually(lambda: facilitator.stats.settle_calls == 1)
    await spend_nonce_elsewhere(facilitator.url + "/rpc", header, to=to, value=1)
    return authorized, await settling


async def _assert_failed_elsewhere(sidecar, database_url: str, authorized, settled) -> None:
    assert not settled.success
    assert settled.answer.status == 402
    paid = receipt(settled.answer.headers)
    assert paid["success"] is False
    assert paid["errorReason"] == "nonce_used_elsewhere"
    assert not paid["transaction"]  # the transaction that used the nonce is not this payment's
    assert b"FiatToken" not in settled.answer.body
    row = await ledger_row(database_url, authorized.verified.payment_id)
    assert (row["state"], row["settle_reason"], row["served"]) == ("failed", "nonce_used_elsewhere", False)
    await sidecar.sidecar.writer.flush()
    record = await tracking_record(database_url, authorized.tracking_id)
    assert record["settlement"]["success"] is False
    assert record["settlement"]["error_reason"] == "nonce_used_elsewhere"
    assert record["response_status"] == 402


@pytest.mark.parametrize("to", [to for _, to in ELSEWHERE], ids=[name for name, _ in ELSEWHERE])
async def test_a_nonce_spent_elsewhere_during_a_slow_settle_is_not_served(to, make_sidecar, facilitators, chain, database_url):
    """The slow settle runs after the payer's transfer, and the facilitator refuses it."""
    facilitators[0].arm(stage="settle", mode="delay", delay_ms=1000, times=1)
    sidecar = await make_sidecar()
    header = await sign_for(URL, amount=PRICE)
    merchant = chain.balance_of(MERCHANT_ADDRESS)
    try:
        authorized, settled = await _settle_while_the_payer_spends_the_nonce(sidecar, facilitators[0], header, to)
        await _assert_failed_elsewhere(sidecar, database_url, authorized, settled)
        replay = await sidecar.payments.Authorize(authorize_request(header))
    finally:
        await sidecar.stop()
    assert replay.WhichOneof("outcome") == "rejected"  # the nonce is spent: never verified again
    assert chain.balance_of(MERCHANT_ADDRESS) == merchant + (1 if to else 0)
    assert chain.transfers_applied == 1  # the payer's own, not ours


async def test_a_nonce_spent_elsewhere_during_a_timed_out_settle_is_not_served(make_sidecar, facilitators, chain, database_url):
    """The settle times out (in doubt); the chain, asked during the reconcile window,
    shows the nonce used by the payer's own transfer."""
    facilitators[0].arm(stage="settle", mode="delay", delay_ms=1500)
    sidecar = await make_sidecar(settle_timeout_s=0.3, settle_retries=1)
    header = await sign_for(URL, amount=PRICE)
    try:
        authorized, settled = await _settle_while_the_payer_spends_the_nonce(sidecar, facilitators[0], header, None)
        await _assert_failed_elsewhere(sidecar, database_url, authorized, settled)
    finally:
        await sidecar.stop()
    assert chain.transfers_applied == 1


async def test_a_payment_front_run_in_the_mempool_is_not_served(make_sidecar, facilitators, chain, database_url):
    """The facilitator broadcasts our transfer and answers settlement_pending with its
    hash; the payer's own transfer of the nonce is mined first, so ours reverts. The
    transaction a facilitator names is judged by its receipt, never trusted."""
    facilitators[0].arm(stage="settle", mode="settlement_pending", times=1)  # held in the mempool
    sidecar = await make_sidecar(settle_retries=0, reconcile_window_s=3.0)
    header = await sign_for(URL, amount=PRICE)
    try:
        authorized = await sidecar.payments.Authorize(authorize_request(header))
        settling = asyncio.ensure_future(sidecar.payments.Settle(settle_request(authorized)))
        await eventually(lambda: bool(chain.pending()))
        (ours,) = chain.pending()
        await spend_nonce_elsewhere(facilitators[0].url + "/rpc", header)
        assert chain.mine(ours).status == 0  # reverted: the nonce was used
        settled = await settling
        await _assert_failed_elsewhere(sidecar, database_url, authorized, settled)
    finally:
        await sidecar.stop()
    assert chain.transfers_applied == 1


async def test_recovery_fails_a_payment_whose_nonce_was_spent_elsewhere(make_sidecar, facilitators, chain, database_url):
    """A settle left in doubt (no chain reader); meanwhile the payer spends the nonce.
    Recovery finds the nonce used by another transfer: failed, never redeemable."""
    header, payment_id = await _left_unknown(make_sidecar, facilitators, database_url)
    await spend_nonce_elsewhere(facilitators[0].url + "/rpc", header)

    again = await _recover_and_retry(make_sidecar, database_url, payment_id, "failed", header)
    row = await ledger_row(database_url, payment_id)
    assert (row["settle_reason"], row["reconciled_by"], row["served"]) == ("nonce_used_elsewhere", "chain", False)
    record = await tracking_record(database_url, str(row["tracking_id"]))
    assert record["settlement"]["error_reason"] == "nonce_used_elsewhere"
    assert record["settlement"]["success"] is False
    assert again.WhichOneof("outcome") == "rejected"
    assert await _state(database_url, payment_id) == "failed"
    assert chain.transfers_applied == 1  # the payer's own
