"""One trace per request, keyed by request id, across gateway → sidecar →
facilitators → database (DESIGN §8), read from the in-memory exporter."""

from __future__ import annotations

import json

import asyncpg
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode
from x402.http.utils import decode_payment_required_header

from paysidecar_common.trace_attributes import REQUEST_ID, X402_OUTCOME, X402_PAYER, X402_REASON, X402_ROUTE
from sidecar.telemetry.attempts import FACILITATOR_NAME, FACILITATOR_OUTCOME, FACILITATOR_REASON
from sidecar.telemetry.ledger_spans import LEDGER_CHANGED
from tests.support.payments import sign_v2

from .conftest import TracedStack

RECORDS = "/v1/records"
AUTHORIZE = "/paysidecar.v1.PaymentService/Authorize"
SETTLE = "/paysidecar.v1.PaymentService/Settle"


async def pay_and_get(stack: TracedStack, path: str = RECORDS) -> tuple[int, dict[str, str]]:
    """Read the 402, sign what it asks for, send the paid request: its status and headers."""
    url = stack.gateway_url + path
    async with stack.http.get(url) as unpaid:
        assert unpaid.status == 402
        required = decode_payment_required_header(unpaid.headers["PAYMENT-REQUIRED"])
    async with stack.http.get(url, headers={"PAYMENT-SIGNATURE": await sign_v2(required)}) as paid:
        await paid.read()
        return paid.status, dict(paid.headers)


def in_trace(spans: list[ReadableSpan], trace_id: str) -> list[ReadableSpan]:
    return [s for s in spans if format(s.context.trace_id, "032x") == trace_id]


def named(spans: list[ReadableSpan], name: str, kind: SpanKind | None = None) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name and (kind is None or s.kind is kind)]


def server_span_done(trace_id: str):
    """The gateway server span ends after the paid answer went out: wait for it."""

    def done(spans: list[ReadableSpan]) -> bool:
        return any(s.kind is SpanKind.SERVER and s.parent is None for s in in_trace(spans, trace_id))

    return done


def gateway_span(spans: list[ReadableSpan], trace_id: str) -> ReadableSpan:
    (root,) = [s for s in in_trace(spans, trace_id) if s.parent is None]
    assert root.kind is SpanKind.SERVER
    return root


def events(span: ReadableSpan) -> list[str]:
    return [event.name for event in span.events]


def spans_with_event(spans: list[ReadableSpan], name: str) -> list[ReadableSpan]:
    """The span of each occurrence of event `name`: one entry per time it was recorded."""
    return [span for span in spans for event in span.events if event.name == name]


async def test_paid_request_is_one_trace_from_gateway_to_database(stack, spans):
    status, headers = await pay_and_get(stack)
    assert status == 200
    trace_id, request_id = headers["x-trace-id"], headers["X-Request-ID"]
    assert len(trace_id) == 32 and int(trace_id, 16)
    finished = await spans.wait_for(server_span_done(trace_id))

    # Every span about this request is in this one trace, and every span of the
    # trace carries the request id.
    ours = [s for s in finished if s.attributes.get(REQUEST_ID) == request_id]
    assert {format(s.context.trace_id, "032x") for s in ours} == {trace_id}
    traced = in_trace(finished, trace_id)
    assert [s.name for s in traced if s.attributes.get(REQUEST_ID) != request_id] == []

    root = gateway_span(finished, trace_id)
    for rpc in (AUTHORIZE, SETTLE):
        (client,) = named(traced, rpc, SpanKind.CLIENT)
        (server,) = named(traced, rpc, SpanKind.SERVER)
        assert server.parent.span_id == client.context.span_id  # carried in `traceparent` metadata
        assert client.parent.span_id == root.context.span_id

    # Two verify attempts: the facilitator that is down, then the one that answers.
    verifies = named(traced, "facilitator verify")
    assert [s.attributes[FACILITATOR_OUTCOME] for s in verifies] == ["unreachable", "ok"]
    down, up = verifies
    assert down.attributes[FACILITATOR_REASON].endswith("_unreachable")
    assert down.status.status_code is StatusCode.ERROR
    assert up.attributes[FACILITATOR_NAME] == stack.facilitator.url.removeprefix("http://")
    (settle,) = named(traced, "facilitator settle")
    assert settle.attributes[FACILITATOR_OUTCOME] == "ok"
    for attempt in (down, up, settle):
        (http,) = [s for s in traced if s.parent is not None and s.parent.span_id == attempt.context.span_id]
        assert http.kind is SpanKind.CLIENT and http.name == "POST"

    # The ledger's claim and settle transitions, under the gRPC server spans.
    (authorize_server,) = named(traced, AUTHORIZE, SpanKind.SERVER)
    (settle_server,) = named(traced, SETTLE, SpanKind.SERVER)
    (claim,) = named(traced, "ledger claim", SpanKind.CLIENT)
    assert claim.parent.span_id == authorize_server.context.span_id and claim.attributes[LEDGER_CHANGED]
    for state in ("settling", "settled"):
        (moved,) = named(traced, f"ledger {state}", SpanKind.CLIENT)
        assert moved.parent.span_id == settle_server.context.span_id and moved.attributes[LEDGER_CHANGED]

    route = root.attributes[X402_ROUTE]
    assert route.startswith("GET /v1/datasets/") and route.endswith("/records")
    assert root.attributes[X402_OUTCOME] == "settled"
    assert root.attributes[X402_PAYER].startswith("0x")
    assert settle_server.attributes[X402_OUTCOME] == "settled"
    # Recorded once, by the sidecar, on its Settle span; the gateway tags its own
    # span with the outcome but records no payment event of its own.
    assert spans_with_event(traced, "payment_settled") == [settle_server]


async def test_tracking_write_links_to_the_request_spans(stack, spans):
    status, headers = await pay_and_get(stack)
    assert status == 200
    trace_id, request_id = headers["x-trace-id"], headers["X-Request-ID"]
    await stack.sidecar.writer.flush()
    finished = await spans.wait_for(server_span_done(trace_id))

    writes = [
        s
        for s in named(finished, "tracking write")
        if any(format(link.context.trace_id, "032x") == trace_id for link in s.links)
    ]
    assert writes, "no tracking write links to the request"
    for write in writes:
        assert format(write.context.trace_id, "032x") != trace_id  # a batch has a trace of its own
        assert request_id in write.attributes[REQUEST_ID]
        linked = [link for link in write.links if format(link.context.trace_id, "032x") == trace_id]
        assert all(link.attributes[REQUEST_ID] == request_id for link in linked)
    # The links point at the sidecar spans that handed the steps over (Authorize, Settle).
    linked = {link.context.span_id for w in writes for link in w.links if format(link.context.trace_id, "032x") == trace_id}
    rpc_servers = {s.context.span_id for s in in_trace(finished, trace_id) if s.kind is SpanKind.SERVER and s.parent}
    assert linked and linked <= rpc_servers


async def test_tracking_record_carries_the_gateway_trace_id(stack, spans):
    status, headers = await pay_and_get(stack)
    assert status == 200
    await stack.sidecar.writer.flush()
    conn = await asyncpg.connect(stack.sidecar.settings.database_url)
    try:
        metadata = await conn.fetchval(
            "SELECT metadata FROM resource_call_records WHERE request_id = $1", headers["X-Request-ID"]
        )
    finally:
        await conn.close()
    assert json.loads(metadata)["trace_id"] == headers["x-trace-id"]


async def test_unpaid_request_has_the_challenge_event(stack, spans):
    async with stack.http.get(stack.gateway_url + RECORDS) as unpaid:
        assert unpaid.status == 402
        trace_id = unpaid.headers["x-trace-id"]
    finished = await spans.wait_for(server_span_done(trace_id))
    root = gateway_span(finished, trace_id)
    assert root.attributes[X402_OUTCOME] == "payment_required"
    (authorize,) = named(in_trace(finished, trace_id), AUTHORIZE, SpanKind.SERVER)
    assert spans_with_event(in_trace(finished, trace_id), "payment_challenge_issued") == [authorize]
    assert authorize.attributes[X402_OUTCOME] == "payment_required"


async def test_failed_settle_has_the_settlement_failed_event(stack, spans):
    stack.facilitator.arm(stage="settle", mode="invalid")
    status, headers = await pay_and_get(stack)
    assert status == 402
    trace_id = headers["x-trace-id"]
    finished = await spans.wait_for(server_span_done(trace_id))
    root = gateway_span(finished, trace_id)
    assert root.attributes[X402_OUTCOME] == "settlement_failed"
    assert root.attributes[X402_REASON]
    (settle,) = named(in_trace(finished, trace_id), SETTLE, SpanKind.SERVER)
    assert spans_with_event(in_trace(finished, trace_id), "payment_settlement_failed") == [settle]
    assert settle.attributes[X402_OUTCOME] == "settlement_failed"


async def test_unknown_route_has_the_route_not_found_event(stack, spans):
    async with stack.http.get(stack.gateway_url + "/v1/nowhere") as missing:
        assert missing.status == 404
        trace_id, request_id = missing.headers["x-trace-id"], missing.headers["X-Request-ID"]
    finished = await spans.wait_for(server_span_done(trace_id))
    root = gateway_span(finished, trace_id)
    assert "route_not_found" in events(root)
    assert root.attributes[REQUEST_ID] == request_id
