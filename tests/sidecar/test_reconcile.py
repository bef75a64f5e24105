"""Issue: charged but not served. With no chain reader an ambiguous settle is
refused as in doubt and left `unknown`; the recovery job later asks the chain
(never guesses), and the payer redeems the payment once with the same header."""

from __future__ import annotations

import asyncio

import asyncpg

from tests.support.calls import URL, authorize_request, receipt, settle_request
from tests.support.payments import sign_for


async def _state(database_url: str, payment_id: str) -> str:
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetchval("SELECT state FROM payment_ledger WHERE payment_id = $1", payment_id)
    finally:
        await conn.close()


async def _recover_until(seeing, database_url: str, payment_id: str, state: str) -> None:
    """Run recovery until the payment reaches `state`; bounded: the row must first
    age past the (tiny) settle timeout of `seeing`."""
    for _ in range(100):
        if await _state(database_url, payment_id) == state:
            return
        await seeing.sidecar.recover()
        await asyncio.sleep(0.02)
    assert await _state(database_url, payment_id) == state


async def _recover_and_retry(make_sidecar, database_url: str, payment_id: str, state: str, header: str):
    """A sidecar that reads the chain runs recovery until the payment is `state`;
    then the payer sends the same header again. That Authorize answer."""
    seeing = await make_sidecar(settle_timeout_s=0.01, settle_retries=0, reconcile_window_s=0.0)
    try:
        await _recover_until(seeing, database_url, payment_id, state)
        return await seeing.payments.Authorize(authorize_request(header))
    finally:
        await seeing.stop()


async def _left_unknown(make_sidecar, facilitators, database_url: str) -> tuple[str, str]:
    """A payment whose settle was in doubt, seen by a sidecar with no chain reader:
    left `unknown` (the facilitator dropped the settle and its retry, before any transfer)."""
    facilitators[0].arm(stage="settle", mode="drop", times=2)
    blind = await make_sidecar(chain_rpc_urls={}, settle_timeout_s=0.5)
    header = await sign_for(URL)
    try:
        authorized = await blind.payments.Authorize(authorize_request(header))
        await blind.payments.Settle(settle_request(authorized))
    finally:
        await blind.stop()
    payment_id = authorized.verified.payment_id
    assert await _state(database_url, payment_id) == "unknown"
    return header, payment_id


async def test_unknown_settle_without_chain_reader_is_resolved_by_recovery(make_sidecar, facilitators, chain, database_url):
    facilitators[0].arm(stage="settle", mode="drop", after_transfer=True, times=2)
    blind = await make_sidecar(chain_rpc_urls={}, settle_timeout_s=0.5)
    header = await sign_for(URL)
    try:
        authorized = await blind.payments.Authorize(authorize_request(header))
        settled = await blind.payments.Settle(settle_request(authorized))
        # Still unknown: a replay is told to wait, rather than settled again.
        replay = await blind.payments.Authorize(authorize_request(header))
    finally:
        await blind.stop()
    assert not settled.success
    assert settled.answer.status == 503
    assert receipt(settled.answer.headers)["errorReason"] == "payment_in_doubt"
    assert (replay.rejected.status, replay.rejected.reason) == (503, "payment_in_doubt")
    payment_id = authorized.verified.payment_id
    assert await _state(database_url, payment_id) == "unknown"
    assert chain.transfers_applied == 1

    seeing = await make_sidecar(settle_timeout_s=0.01, settle_retries=0, reconcile_window_s=0.0)
    try:
        await _recover_until(seeing, database_url, payment_id, "settled_unserved")

        redeem = await seeing.payments.Authorize(authorize_request(header))
        assert redeem.verified.redeem is True
        served = await seeing.payments.Settle(settle_request(redeem))
        assert served.success
        transaction = receipt(served.headers)["transaction"]
        assert transaction and chain.receipt(transaction) is not None  # found by its AuthorizationUsed event
        third = await seeing.payments.Authorize(authorize_request(header))
        assert third.rejected.reason == "payment_already_used"
    finally:
        await seeing.stop()
    assert chain.transfers_applied == 1
    assert facilitators[0].stats.settle_calls == 2  # the first try and its one retry, no more


async def test_recovery_fails_an_expired_unused_payment(make_sidecar, facilitators, chain, database_url):
    """Unused on chain and past validBefore: it can never be mined, nothing was taken."""
    _, payment_id = await _left_unknown(make_sidecar, facilitators, database_url)

    conn = await asyncpg.connect(database_url)
    try:  # let the authorization expire (as time would)
        await conn.execute("UPDATE payment_ledger SET valid_before = 1 WHERE payment_id = $1", payment_id)
    finally:
        await conn.close()
    seeing = await make_sidecar(settle_timeout_s=0.01, settle_retries=0, reconcile_window_s=0.0)
    try:
        await _recover_until(seeing, database_url, payment_id, "failed")
    finally:
        await seeing.stop()
    assert chain.transfers_applied == 0


async def _authorization(database_url: str, payment_id: str) -> tuple[str, str]:
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow("SELECT payer, nonce FROM payment_ledger WHERE payment_id = $1", payment_id)
    finally:
        await conn.close()
    return row["payer"], row["nonce"]


async def test_a_nonce_the_payer_canceled_during_the_settle_is_not_served(make_sidecar, facilitators, chain, database_url):
    """authorizationState is true after a cancel too: with no transfer on chain,
    an ambiguous settle must end failed, never served."""
    facilitators[0].arm(stage="settle", mode="drop")  # the settle is in doubt
    sidecar = await make_sidecar(settle_timeout_s=0.5, reconcile_window_s=0.0)
    header = await sign_for(URL)
    try:
        authorized = await sidecar.payments.Authorize(authorize_request(header))
        payer, nonce = await _authorization(database_url, authorized.verified.payment_id)
        chain.cancel_authorization(payer, nonce)  # the payer's own cancelAuthorization
        settled = await sidecar.payments.Settle(settle_request(authorized))
    finally:
        await sidecar.stop()
    assert not settled.success
    assert settled.answer.status == 402
    assert receipt(settled.answer.headers)["errorReason"] == "authorization_canceled"
    assert await _state(database_url, authorized.verified.payment_id) == "failed"
    assert chain.transfers_applied == 0


async def test_recovery_fails_a_payment_whose_nonce_the_payer_canceled(make_sidecar, facilitators, chain, database_url):
    header, payment_id = await _left_unknown(make_sidecar, facilitators, database_url)
    chain.cancel_authorization(*await _authorization(database_url, payment_id))

    again = await _recover_and_retry(make_sidecar, database_url, payment_id, "failed", header)
    assert again.WhichOneof("outcome") == "rejected"  # never redeemed: nothing was paid
    assert chain.transfers_applied == 0
