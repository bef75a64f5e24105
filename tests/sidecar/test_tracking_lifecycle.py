"""Issue 5: every call to a paid route leaves one record whose lifecycle fields say
what happened — paid, settle failed, verify failed, malformed, unpaid, released."""

from __future__ import annotations

import base64
import json
import uuid

import asyncpg
import grpc
import pytest

from tests.support.calls import URL, authorize_request, release_request, settle_request
from tests.support.payments import sign_for

FAST = dict(settle_timeout_s=0.5, reconcile_window_s=0.2, reconcile_poll_s=0.05)


async def _row(database_url: str, tracking_id: str) -> dict:
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow(
            "SELECT row_to_json(r)::text FROM resource_call_records r WHERE id = $1", uuid.UUID(tracking_id)
        )
        count = await conn.fetchval("SELECT count(*) FROM resource_call_records")
    finally:
        await conn.close()
    assert count == 1, "one record per call"
    return json.loads(row[0])


async def _finish(sidecar, database_url, tracking_id) -> dict:
    await sidecar.sidecar.writer.flush()
    return await _row(database_url, tracking_id)


async def test_paid_success_record(make_sidecar, database_url):
    sidecar = await make_sidecar()
    try:
        authorized = await sidecar.payments.Authorize(authorize_request(await sign_for(URL)))
        await sidecar.payments.Settle(settle_request(authorized))
        row = await _finish(sidecar, database_url, authorized.tracking_id)
    finally:
        await sidecar.stop()
    assert row["payment_required"] and row["payment_verified"] and row["verification_error"] is None
    assert row["settlement"]["success"] is True and row["settlement"]["transaction"]
    assert row["handler_executed"] is True and row["response_status"] == 200
    assert row["payment"]["amount"] == "1000" and row["payment"]["network"] == "eip155:84532"
    assert row["payload_hash"] and row["requirements_hash"] and row["payment_signature_hash"]
    assert row["metadata"]["verify_attempts"][0]["outcome"] == "ok"
    assert row["request"]["headers"].get("authorization") is None  # secrets dropped


async def test_paid_settle_failed_record(make_sidecar, facilitators, database_url):
    facilitators[0].arm(stage="settle", mode="status", status=503)
    sidecar = await make_sidecar(**FAST)
    try:
        authorized = await sidecar.payments.Authorize(authorize_request(await sign_for(URL)))
        await sidecar.payments.Settle(settle_request(authorized))
        row = await _finish(sidecar, database_url, authorized.tracking_id)
    finally:
        await sidecar.stop()
    assert row["payment_verified"] is True
    assert row["settlement"]["success"] is False
    # Two 503s: the settle may have reached the facilitator, so it is in doubt.
    assert row["settlement"]["error_reason"] == "payment_in_doubt"
    assert row["response_status"] == 503
    reasons = [a["reason"] for a in row["metadata"]["settle_attempts"]]
    assert len(reasons) == 2 and all(r.endswith("_http_503") for r in reasons)


async def test_verify_failed_record(make_sidecar, facilitators, database_url):
    facilitators[0].arm(stage="verify", mode="invalid")
    sidecar = await make_sidecar()
    try:
        response = await sidecar.payments.Authorize(authorize_request(await sign_for(URL)))
        row = await _finish(sidecar, database_url, response.tracking_id)
    finally:
        await sidecar.stop()
    assert row["payment_verified"] is False and row["verification_error"] == "invalid_payment"
    assert row["settlement"] is None and row["response_status"] == 402
    assert row["payment_nonce"] and row["payload_hash"]


@pytest.mark.parametrize("header", ["!!not base64!!", base64.b64encode(b'{"x402Version": 9}').decode()])
async def test_malformed_record(make_sidecar, database_url, header):
    sidecar = await make_sidecar()
    try:
        response = await sidecar.payments.Authorize(authorize_request(header))
        row = await _finish(sidecar, database_url, response.tracking_id)
    finally:
        await sidecar.stop()
    assert response.rejected.status == 400
    assert row["payment_verified"] is False and row["verification_error"] == response.rejected.reason
    assert row["payment_signature_hash"] and row["payment"] is None and row["response_status"] == 400


async def test_unpaid_record(make_sidecar, database_url):
    sidecar = await make_sidecar()
    try:
        response = await sidecar.payments.Authorize(authorize_request())
        row = await _finish(sidecar, database_url, response.tracking_id)
    finally:
        await sidecar.stop()
    assert row["payment_required"] is True and row["payment_verified"] is False
    assert row["verification_error"] is None and row["response_status"] == 402
    assert row["route_config"]["amount"] == "1000"


@pytest.mark.parametrize("reason, status", [("head_request", 200), ("handler_status_500", 500), ("handler_error", 500)])
async def test_released_record(make_sidecar, database_url, reason, status):
    sidecar = await make_sidecar()
    try:
        authorized = await sidecar.payments.Authorize(authorize_request(await sign_for(URL)))
        await sidecar.payments.Release(release_request(authorized, reason, status))
        row = await _finish(sidecar, database_url, authorized.tracking_id)
    finally:
        await sidecar.stop()
    assert row["payment_verified"] is True
    assert row["settlement"]["released"] is True and row["settlement"]["reason"] == reason
    assert row["settlement"]["success"] is False
    assert row["response_status"] == status


def _keyed(request, call_key: str, **changes):
    keyed = type(request)()
    keyed.CopyFrom(request)
    keyed.call_key = call_key
    for name, value in changes.items():
        setattr(keyed, name, value)
    return keyed


async def test_a_retried_authorize_continues_its_own_record_only(make_sidecar, database_url):
    """A retry (same call key, same request) continues the call's record. A call
    that shares only the request id (clients choose it) or re-sends another
    call's key with a request of its own gets its own record; the first one's is
    left as it was."""
    sidecar = await make_sidecar()
    try:
        call = _keyed(authorize_request(), "key-of-the-first-call")
        first = await sidecar.payments.Authorize(call)
        retry = await sidecar.payments.Authorize(call)
        same_request_id = await sidecar.payments.Authorize(_keyed(call, "key-of-another-call"))
        same_key = await sidecar.payments.Authorize(_keyed(call, call.call_key, url=URL + "?other=1"))
        unkeyed = await sidecar.payments.Authorize(_keyed(call, ""))
        await sidecar.sidecar.writer.flush()
        rows = {str(row["id"]): row for row in await _rows(database_url, call.request_id)}
    finally:
        await sidecar.stop()
    assert retry.tracking_id == first.tracking_id
    others = {same_request_id.tracking_id, same_key.tracking_id, unkeyed.tracking_id}
    assert len(others) == 3 and first.tracking_id not in others
    assert set(rows) == {first.tracking_id, *others}
    assert rows[first.tracking_id]["url"] == URL and rows[same_key.tracking_id]["url"] == URL + "?other=1"
    assert {row["response_status"] for row in rows.values()} == {402}


async def test_a_call_key_longer_than_128_characters_is_refused(sidecar):
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await sidecar.payments.Authorize(_keyed(authorize_request(), "k" * 129))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "call_key" in refused.value.details()


async def _rows(database_url: str, request_id: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetch("SELECT * FROM resource_call_records WHERE request_id = $1", request_id)
    finally:
        await conn.close()
