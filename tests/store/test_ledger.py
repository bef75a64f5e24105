"""The ledger's statements (sidecar/store/ledger.py): one claim per payment, and
state transitions that move only a claim held in an expected state, setting the
columns they name and keeping every other."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from sidecar.payments import ledger
from sidecar.payments.ledger import LedgerEntry
from sidecar.store.ledger import PgLedger


def _entry(payment_id: str = "sha256:" + "ab" * 32, **overrides) -> LedgerEntry:
    values = dict(
        payment_id=payment_id,
        state=ledger.VERIFIED,
        claim_token=uuid.uuid4(),
        route_key="GET /weather",
        resource="http://127.0.0.1/weather",
        scheme="exact",
        network="eip155:84532",
        asset="0x036CbD53842c5426634e7929541eC2318f3dCF7e",
        pay_to="0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
        amount=1000,
        payer="0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
        nonce="0x" + uuid.uuid4().hex * 2,
        valid_before=2_000_000_000,
        x402_version=2,
        facilitator="http://127.0.0.1:4021",
        requirements={"scheme": "exact", "amount": "1000"},
        payload_hash="cd" * 32,
        requirements_hash="ef" * 32,
        tracking_id=uuid.uuid4(),
    )
    values.update(overrides)
    return LedgerEntry(**values)


@pytest.fixture
async def store(pool) -> PgLedger:
    return PgLedger(pool)


async def test_a_payment_is_claimed_once(store):
    entry = _entry()
    first = await store.claim(entry)
    again = await store.claim(_entry(claim_token=uuid.uuid4()))
    assert first is not None and first.state == ledger.VERIFIED and first.claim_token == entry.claim_token
    assert again is None


async def test_a_released_payment_is_claimed_again_under_a_new_token(store):
    entry = await store.claim(_entry())
    await store.transition(entry.payment_id, entry.claim_token, (ledger.VERIFIED,), ledger.RELEASED)
    token = uuid.uuid4()
    reclaimed = await store.claim(_entry(claim_token=token))
    assert reclaimed is not None and (reclaimed.state, reclaimed.claim_token) == (ledger.VERIFIED, token)


async def test_transition_sets_the_columns_it_names_and_keeps_the_others(store):
    entry = await store.claim(_entry())
    settling = await store.transition(
        entry.payment_id, entry.claim_token, (ledger.VERIFIED,), ledger.SETTLING, settle_attempts=1
    )
    settled = await store.transition(
        entry.payment_id,
        entry.claim_token,
        (ledger.SETTLING,),
        ledger.SETTLED,
        transaction="0xabc",
        reconciled_by="facilitator",
        served=True,
        served_at=datetime.now(UTC),
    )
    assert settling.state == ledger.SETTLING and settling.settle_attempts == 1
    assert (settled.state, settled.transaction, settled.reconciled_by, settled.served) == (
        ledger.SETTLED,
        "0xabc",
        "facilitator",
        True,
    )
    assert settled.settle_attempts == 1  # not named: kept


async def test_transition_clears_a_column_it_names_with_none(store, pool):
    entry = await store.claim(_entry())
    await store.transition(entry.payment_id, entry.claim_token, (ledger.VERIFIED,), ledger.SETTLING)
    served_at = datetime.now(UTC)
    await store.transition(
        entry.payment_id, entry.claim_token, (ledger.SETTLING,), ledger.SETTLED, served=True, served_at=served_at
    )
    unserved = await store.transition(
        entry.payment_id,
        entry.claim_token,
        (ledger.SETTLED,),
        ledger.SETTLED_UNSERVED,
        served=False,
        served_at=None,
    )
    assert unserved.state == ledger.SETTLED_UNSERVED and unserved.served is False
    assert await pool.fetchval("SELECT served_at FROM payment_ledger WHERE payment_id = $1", entry.payment_id) is None


async def test_transition_moves_only_a_claim_held_in_an_expected_state(store):
    entry = await store.claim(_entry())
    other_token = await store.transition(entry.payment_id, uuid.uuid4(), (ledger.VERIFIED,), ledger.RELEASED)
    other_state = await store.transition(entry.payment_id, entry.claim_token, (ledger.SETTLING,), ledger.SETTLED)
    assert other_token is None and other_state is None
    assert (await store.get(entry.payment_id)).state == ledger.VERIFIED


async def test_transition_refuses_a_column_it_may_not_set(store):
    entry = await store.claim(_entry())
    with pytest.raises(TypeError):
        await store.transition(entry.payment_id, entry.claim_token, (ledger.VERIFIED,), ledger.SETTLING, amount=1)
    assert (await store.get(entry.payment_id)).state == ledger.VERIFIED


async def test_a_settled_unserved_payment_is_redeemed_by_its_payload_only(store):
    entry = await store.claim(_entry())
    for start, end in ((ledger.VERIFIED, ledger.SETTLING), (ledger.SETTLING, ledger.SETTLED_UNSERVED)):
        await store.transition(entry.payment_id, entry.claim_token, (start,), end)
    assert await store.claim_redeem(entry.payment_id, "00" * 32, uuid.uuid4()) is None
    token = uuid.uuid4()
    redeeming = await store.claim_redeem(entry.payment_id, entry.payload_hash, token)
    assert redeeming is not None and (redeeming.state, redeeming.claim_token) == (ledger.REDEEMING, token)
    assert await store.claim_redeem(entry.payment_id, entry.payload_hash, uuid.uuid4()) is None
