"""Money rule 4 over a facilitator that misbehaves on purpose: for every fault, at
verify and at settle, what the client gets, whether content may be served, how
much money moved (never twice) and which attempt reason codes were recorded.

A settle answered with a clean "no" failed: nothing was paid. A settle that may
have reached the facilitator and acted (timeout, 5xx, bad JSON, dropped, pending)
and that the chain does not show is in doubt: 503 `payment_in_doubt`, the ledger
row `unknown` until the chain decides."""

from __future__ import annotations

import json
import uuid

import asyncpg
import pytest

from tests.support.calls import URL, authorize_request, receipt, settle_request
from tests.support.payments import sign_for

FAST = dict(verify_timeout_s=0.5, settle_timeout_s=0.5, reconcile_window_s=0.3, reconcile_poll_s=0.05)

# mode, fault fields, expected Authorize outcome, rejected status, reason-code suffix
VERIFY_FAULTS = [
    ("status_503", dict(mode="status", status=503, body="busy"), "rejected", 503, "_http_503"),
    ("status_500_json", dict(mode="status", status=500, body='{"isValid": true}'), "rejected", 503, "_http_500"),
    ("html", dict(mode="html"), "rejected", 503, "_invalid_json"),
    ("garbage", dict(mode="garbage"), "rejected", 503, "_invalid_json"),
    ("truncated", dict(mode="truncated"), "rejected", 503, "_invalid_json"),
    ("no_is_valid", dict(mode="no_success"), "rejected", 503, "_invalid_response"),
    ("hang", dict(mode="hang"), "rejected", 503, "_timeout"),
    ("drop", dict(mode="drop"), "rejected", 503, "_unreachable"),
    ("invalid", dict(mode="invalid"), "rejected", 402, ""),
    ("delay_within_timeout", dict(mode="delay", delay_ms=50), "verified", 0, ""),
]


@pytest.mark.parametrize("case", VERIFY_FAULTS, ids=[c[0] for c in VERIFY_FAULTS])
async def test_verify_fault(case, make_sidecar, facilitators, chain):
    _, fault, outcome, status, suffix = case
    facilitators[0].arm(stage="verify", **fault)
    sidecar = await make_sidecar(**FAST)
    try:
        response = await sidecar.payments.Authorize(authorize_request(await sign_for(URL)))
        assert response.WhichOneof("outcome") == outcome
        if outcome == "rejected":
            assert response.rejected.status == status
        await sidecar.sidecar.writer.flush()
        attempts = await _attempts(sidecar, response.tracking_id, "verify_attempts")
    finally:
        await sidecar.stop()
    assert facilitators[0].stats.settle_calls == 0
    assert chain.transfers_applied == 0
    reasons = [a["reason"] for a in attempts]
    assert reasons and (reasons[0].endswith(suffix) if suffix else reasons[0] == "")


SERVED, FAILED, IN_DOUBT = "served", "failed", "in_doubt"

# mode, fault fields, outcome, transfers, source of the verdict
SETTLE_FAULTS = [
    ("status_503_nothing_moved", dict(mode="status", status=503), IN_DOUBT, 0, None),
    ("html_nothing_moved", dict(mode="html"), IN_DOUBT, 0, None),
    ("garbage_nothing_moved", dict(mode="garbage"), IN_DOUBT, 0, None),
    ("hang_nothing_moved", dict(mode="hang"), IN_DOUBT, 0, None),
    ("drop_nothing_moved", dict(mode="drop"), IN_DOUBT, 0, None),
    ("pending_never_mined", dict(mode="settlement_pending"), IN_DOUBT, 0, None),
    ("clean_failure", dict(mode="invalid"), FAILED, 0, None),
    ("503_with_success_body", dict(mode="success_status", status=503), SERVED, 1, "chain"),
    ("truncated_after_transfer", dict(mode="truncated"), SERVED, 1, "chain"),
    ("missing_success_after_transfer", dict(mode="no_success"), SERVED, 1, "chain"),
    ("500_after_transfer", dict(mode="status", status=500, after_transfer=True), SERVED, 1, "chain"),
    ("drop_after_transfer", dict(mode="drop", after_transfer=True), SERVED, 1, "chain"),
    ("hang_after_transfer", dict(mode="hang", after_transfer=True), SERVED, 1, "chain"),
    ("pending_then_mined", dict(mode="settlement_pending", mine_after_ms=100), SERVED, 1, "chain"),
    ("delay", dict(mode="delay", delay_ms=50), SERVED, 1, "facilitator"),
]
# What the payer is told when nothing is served: status, reason code, ledger state.
REFUSALS = {FAILED: (402, "settlement_failed", "failed"), IN_DOUBT: (503, "payment_in_doubt", "unknown")}


@pytest.mark.parametrize("case", SETTLE_FAULTS, ids=[c[0] for c in SETTLE_FAULTS])
async def test_settle_fault(case, make_sidecar, facilitators, chain, database_url):
    _, fault, expected, transfers, source = case
    served = expected == SERVED
    facilitators[0].arm(stage="settle", **fault)
    sidecar = await make_sidecar(**FAST)
    try:
        authorized = await sidecar.payments.Authorize(authorize_request(await sign_for(URL)))
        assert authorized.WhichOneof("outcome") == "verified"
        settled = await sidecar.payments.Settle(settle_request(authorized))
        await sidecar.sidecar.writer.flush()
        record = await _record(database_url, authorized.tracking_id)
        state = await _ledger_state(database_url, authorized.verified.payment_id)
    finally:
        await sidecar.stop()

    assert settled.success is served
    assert chain.transfers_applied == transfers  # never twice
    paid = receipt(settled.headers if served else settled.answer.headers)
    assert paid["success"] is served
    if served:
        assert state == "settled"
        assert record["settlement"]["source"] == source
        assert record["settlement"]["reconciled"] is (source == "chain")
        assert paid["transaction"] and chain.receipt(paid["transaction"]) is not None
        assert record["settlement"]["transaction"] == paid["transaction"]
    else:
        assert (settled.answer.status, paid["errorReason"], state) == REFUSALS[expected]
        assert b"FiatToken" not in settled.answer.body and b"<html" not in settled.answer.body.lower()
    # Ambiguous answers are retried on the same facilitator only; never on another one.
    assert facilitators[1].stats.settle_calls == 0
    assert record["metadata"]["settle_attempts"]


# A settle refused with a clean "no" moved nothing: the payment is still good and
# must go through once the facilitator is healthy.
NOTHING_MOVED = [c for c in SETTLE_FAULTS if c[2] == FAILED]


@pytest.mark.parametrize("case", NOTHING_MOVED, ids=[c[0] for c in NOTHING_MOVED])
async def test_same_payment_succeeds_later_when_facilitator_is_healthy(case, make_sidecar, facilitators, chain):
    sidecar = await make_sidecar(**FAST)
    try:
        again = await _refused_then_retried(sidecar, facilitators[0], case[1])
        assert again.WhichOneof("outcome") == "verified"
        assert (await sidecar.payments.Settle(settle_request(again))).success
    finally:
        await sidecar.stop()
    assert chain.transfers_applied == 1


IN_DOUBT_CASES = [c for c in SETTLE_FAULTS if c[2] == IN_DOUBT]


@pytest.mark.parametrize("case", IN_DOUBT_CASES, ids=[c[0] for c in IN_DOUBT_CASES])
async def test_same_payment_in_doubt_is_neither_settled_again_nor_called_used(case, make_sidecar, facilitators, chain):
    """The facilitator may still move the money (a pending transaction can be mined):
    the same header is told to retry later, never settled a second time, and never
    answered "already used", which would send the payer to pay again."""
    sidecar = await make_sidecar(**FAST)
    try:
        again = await _refused_then_retried(sidecar, facilitators[0], case[1])
    finally:
        await sidecar.stop()
    assert (again.rejected.status, again.rejected.reason) == (503, "payment_in_doubt")
    assert again.rejected.headers["Retry-After"]
    assert chain.transfers_applied == 0


async def _refused_then_retried(sidecar, facilitator, fault: dict):
    """A payment whose settle `fault` refused; then the facilitator heals and the
    payer sends the same header again. That Authorize answer."""
    facilitator.arm(stage="settle", **fault)
    header = await sign_for(URL)
    first = await sidecar.payments.Authorize(authorize_request(header))
    assert not (await sidecar.payments.Settle(settle_request(first))).success
    facilitator.faults.clear()
    return await sidecar.payments.Authorize(authorize_request(header))


async def _record(database_url: str, tracking_id: str) -> dict:
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow(
            "SELECT settlement::text, metadata::text FROM resource_call_records WHERE id = $1", uuid.UUID(tracking_id)
        )
    finally:
        await conn.close()
    return {"settlement": json.loads(row["settlement"] or "null"), "metadata": json.loads(row["metadata"] or "{}")}


async def _attempts(sidecar, tracking_id: str, key: str) -> list[dict]:
    conn = await asyncpg.connect(sidecar.sidecar.settings.database_url)
    try:
        text = await conn.fetchval(
            "SELECT metadata::text FROM resource_call_records WHERE id = $1", uuid.UUID(tracking_id)
        )
    finally:
        await conn.close()
    return json.loads(text or "{}").get(key, [])


async def _ledger_state(database_url: str, payment_id: str) -> str:
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetchval("SELECT state FROM payment_ledger WHERE payment_id = $1", payment_id)
    finally:
        await conn.close()
