"""Issue: charged but not served. With no chain reader an ambiguous settle is
refused and left `unknown`; the recovery job later asks the chain (never guesses),
and the payer redeems the payment once with the same header."""

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


async def test_unknown_settle_without_chain_reader_is_resolved_by_recovery(make_sidecar, facilitators, chain, database_url):
    facilitators[0].arm(stage="settle", mode="drop", after_transfer=True, times=2)
    blind = await make_sidecar(chain_rpc_urls={}, settle_timeout_s=0.5)
    header = await sign_for(URL)
    try:
        authorized = await blind.payments.Authorize(authorize_request(header))
        settled = await blind.payments.Settle(settle_request(authorized))
        # Still unknown: a replay is refused rather than settled again.
        replay = await blind.payments.Authorize(authorize_request(header))
    finally:
        await blind.stop()
    assert not settled.success
    assert settled.answer.status == 402
    assert receipt(settled.answer.headers)["errorReason"] == "settlement_unknown"
    assert replay.rejected.reason == "payment_already_used"
    payment_id = authorized.verified.payment_id
    assert await _state(database_url, payment_id) == "unknown"
    assert chain.transfers_applied == 1

    seeing = await make_sidecar(settle_timeout_s=0.01, settle_retries=0, reconcile_window_s=0.0)
    try:
        for _ in range(100):  # bounded: the row must age past the (tiny) settle timeout
            if await _state(database_url, payment_id) == "settled_unserved":
                break
            await seeing.sidecar.recover()
            await asyncio.sleep(0.02)
        assert await _state(database_url, payment_id) == "settled_unserved"

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
    facilitators[0].arm(stage="settle", mode="drop")
    blind = await make_sidecar(chain_rpc_urls={}, settle_timeout_s=0.5)
    header = await sign_for(URL)
    try:
        authorized = await blind.payments.Authorize(authorize_request(header))
        await blind.payments.Settle(settle_request(authorized))
    finally:
        await blind.stop()
    payment_id = authorized.verified.payment_id
    assert await _state(database_url, payment_id) == "unknown"

    conn = await asyncpg.connect(database_url)
    try:  # let the authorization expire (as time would)
        await conn.execute("UPDATE payment_ledger SET valid_before = 1 WHERE payment_id = $1", payment_id)
    finally:
        await conn.close()
    seeing = await make_sidecar(settle_timeout_s=0.01, settle_retries=0, reconcile_window_s=0.0)
    try:
        for _ in range(100):
            if await _state(database_url, payment_id) == "failed":
                break
            await seeing.sidecar.recover()
            await asyncio.sleep(0.02)
    finally:
        await seeing.stop()
    assert await _state(database_url, payment_id) == "failed"
    assert chain.transfers_applied == 0
