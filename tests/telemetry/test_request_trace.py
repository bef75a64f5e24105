"""One trace per request, keyed by request id, across gateway → sidecar →
facilitators → chain (DESIGN §8), read from the in-memory exporter: spans only
for hops and remote calls, everything else an event on the span it belongs to."""

from __future__ import annotations

import json
from collections.abc import Iterable

import asyncpg
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode
from x402.http.utils import decode_payment_required_header
from x402.schemas import PaymentRequired

from gateway.tracing import DATASET, ROWS
from paysidecar_common.trace_attributes import (
    REQUEST_ID,
    X402_NETWORK,
    X402_OUTCOME,
    X402_PAYER,
    X402_REASON,
    X402_ROUTE,
)
from sidecar.telemetry.attempts import FACILITATOR_NAME, FACILITATOR_OUTCOME, FACILITATOR_REASON
from sidecar.telemetry.batch_links import TRACKING_STEPS
from sidecar.telemetry.ledger_events import LEDGER_STATE
from sidecar.telemetry.payments import DURATION_MS
from tests.support.payments import sign_v2

from .conftest import TracedStack

RECORDS = "/v1/records"
DATASET_RECORDS = "/v1/datasets/observations/records"
ROUTE_KEY = "GET /v1/datasets/observations/records"
AUTHORIZE = "/paysidecar.v1.PaymentService/Authorize"
SETTLE = "/paysidecar.v1.PaymentService/Settle"
BATCH_SETTLEMENT = "batch-settlement"

# The hops of a paid request, as a viewer nests them: (kind, name, children).
VERIFY_ATTEMPT = (SpanKind.CLIENT, "facilitator verify", ())
SETTLE_ATTEMPT = (SpanKind.CLIENT, "facilitator settle", ())


def paid_shape(authorize_hops: tuple = (), settle_hops: tuple = ()) -> tuple:
    return (
        SpanKind.SERVER,
        "GET /v1/datasets/{name}/records",
        (
            (SpanKind.CLIENT, AUTHORIZE, ((SpanKind.SERVER, AUTHORIZE, authorize_hops),)),
            (SpanKind.CLIENT, SETTLE, ((SpanKind.SERVER, SETTLE, settle_hops),)),
        ),
    )


# exact: one facilitator call each for verify and settle, 7 spans. A voucher is
# checked and charged by the sidecar alone: 5 spans.
SHAPES = {"exact": (paid_shape((VERIFY_ATTEMPT,), (SETTLE_ATTEMPT,)), 7), BATCH_SETTLEMENT: (paid_shape(), 5)}


async def challenge(stack: TracedStack, url: str) -> PaymentRequired:
    async with stack.http.get(url) as unpaid:
        assert unpaid.status == 402
        return decode_payment_required_header(unpaid.headers["PAYMENT-REQUIRED"])


async def send_paid(stack: TracedStack, url: str, header: str, **headers: str) -> tuple[int, dict[str, str]]:
    async with stack.http.get(url, headers={"PAYMENT-SIGNATURE": header, **headers}) as paid:
        await paid.read()
        return paid.status, dict(paid.headers)


async def pay_and_get(stack: TracedStack, path: str = RECORDS, **headers: str) -> tuple[int, dict[str, str]]:
    """Read the 402, sign what it asks for, send the paid request: its status and headers."""
    url = stack.gateway_url + path
    return await send_paid(stack, url, await sign_v2(await challenge(stack, url)), **headers)


async def pay_with_voucher(stack: TracedStack, url: str, offered: PaymentRequired) -> tuple[int, dict[str, str]]:
    """Open a channel (its deposit goes through the facilitator), then pay one
    request with a voucher on it: that request's status and headers."""
    # Imported here: only routes that offer batch-settlement need the signing pool.
    from bench.signing import Signer

    async with Signer(processes=1) as signer:
        ((deposit, voucher),) = await signer.sign_channels(offered, signer.channels(1, payments=2))
    status, _ = await send_paid(stack, url, deposit)
    assert status == 200
    return await send_paid(stack, url, voucher)


def in_trace(spans: Iterable[ReadableSpan], trace_id: str) -> list[ReadableSpan]:
    return [s for s in spans if format(s.context.trace_id, "032x") == trace_id]


def named(spans: list[ReadableSpan], name: str, kind: SpanKind | None = None) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name and (kind is None or s.kind is kind)]


def children(spans: list[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    below = [s for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id]
    return sorted(below, key=lambda s: s.start_time)


def tree(spans: list[ReadableSpan], span: ReadableSpan) -> tuple:
    """(kind, name, children) down from `span`, children in the order they started."""
    return span.kind, span.name, tuple(tree(spans, child) for child in children(spans, span))


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


def event(span: ReadableSpan, name: str) -> dict:
    (found,) = [e for e in span.events if e.name == name]
    return dict(found.attributes)


def spans_with_event(spans: list[ReadableSpan], name: str) -> list[ReadableSpan]:
    """The span of each occurrence of event `name`: one entry per time it was recorded."""
    return [span for span in spans for event in span.events if event.name == name]


@pytest.mark.parametrize("facilitator_down_first", [False])
@pytest.mark.parametrize(
    ("scheme", "sidecar_overrides"), [("exact", {}), (BATCH_SETTLEMENT, {"schemes": [BATCH_SETTLEMENT]})]
)
async def test_paid_request_spends_spans_only_on_hops(stack, spans, scheme):
    url = stack.gateway_url + DATASET_RECORDS
    offered = await challenge(stack, url)
    assert [offer.scheme for offer in offered.accepts] == [scheme]
    if scheme == BATCH_SETTLEMENT:
        status, headers = await pay_with_voucher(stack, url, offered)
    else:
        status, headers = await send_paid(stack, url, await sign_v2(offered))
    assert status == 200
    trace_id, request_id = headers["x-trace-id"], headers["X-Request-ID"]
    finished = await spans.wait_for(server_span_done(trace_id))
    traced = in_trace(finished, trace_id)

    shape, budget = SHAPES[scheme]
    root = gateway_span(finished, trace_id)
    assert tree(traced, root) == shape
    assert len(traced) == budget
    # Every span of the request, in both processes, says which request and route it is.
    for span in traced:
        assert span.attributes[REQUEST_ID] == request_id, span.name
        assert span.attributes[X402_ROUTE] == ROUTE_KEY, span.name
        # The network is the sidecar route config's: the gateway learns it from
        # Authorize's answer, so only its Authorize call starts without it.
        if (span.name, span.kind) != (AUTHORIZE, SpanKind.CLIENT):
            assert span.attributes[X402_NETWORK] == "eip155:84532", span.name
    assert [s.name for s in finished if s.attributes.get(REQUEST_ID) == request_id and s not in traced] == []

    assert root.attributes[DATASET] == "observations"
    assert root.attributes[ROWS] > 0
    assert root.attributes["http.status_code"] == 200
    assert (root.attributes[X402_OUTCOME], root.attributes[X402_PAYER][:2]) == ("settled", "0x")
    (settle_server,) = named(traced, SETTLE, SpanKind.SERVER)
    assert settle_server.attributes[X402_OUTCOME] == "settled"
    # Recorded once, by the sidecar, on its Settle span; the gateway tags its own
    # span with the outcome but records no payment event of its own.
    assert spans_with_event(traced, "payment_settled") == [settle_server]
    assert events(root) == ["request_received"]


@pytest.mark.parametrize("facilitator_down_first", [False])
@pytest.mark.parametrize("sidecar_overrides", [{"schemes": [BATCH_SETTLEMENT]}])
async def test_a_voucher_is_checked_against_the_channel_mirror_in_events(stack, spans):
    url = stack.gateway_url + DATASET_RECORDS
    status, headers = await pay_with_voucher(stack, url, await challenge(stack, url))
    assert status == 200
    trace_id = headers["x-trace-id"]
    traced = in_trace(await spans.wait_for(server_span_done(trace_id)), trace_id)
    (authorize,) = named(traced, AUTHORIZE, SpanKind.SERVER)
    (settle,) = named(traced, SETTLE, SpanKind.SERVER)

    # No facilitator call: the mirror of the channel's contract fields was fresh.
    assert events(authorize) == [
        "request_received",
        "x402 decode and bind",
        "channel reserve",
        "cache hit",
        "tracking enqueued",
    ]
    assert event(authorize, "cache hit") == {"cache": "channel_mirror"}
    assert event(authorize, "channel reserve").keys() == {DURATION_MS}  # held: no `changed: false`
    assert events(settle) == ["channel commit", "payment_settled", "tracking enqueued"]
    assert settle.attributes[X402_OUTCOME] == "settled"


@pytest.mark.parametrize("facilitator_down_first", [False])
async def test_steps_inside_the_sidecar_are_events_on_its_server_spans(stack, spans):
    status, headers = await pay_and_get(stack, DATASET_RECORDS)
    assert status == 200
    trace_id = headers["x-trace-id"]
    traced = in_trace(await spans.wait_for(server_span_done(trace_id)), trace_id)
    (authorize,) = named(traced, AUTHORIZE, SpanKind.SERVER)
    (settle,) = named(traced, SETTLE, SpanKind.SERVER)

    assert sorted(events(authorize)) == sorted(
        ["request_received", "x402 decode and bind", "ledger claim", "tracking enqueued"]
    )
    assert sorted(events(settle)) == sorted(["ledger settling", "ledger settled", "payment_settled", "tracking enqueued"])
    assert event(authorize, "x402 decode and bind")[DURATION_MS] > 0
    for span, name, state in ((authorize, "ledger claim", "verified"), (settle, "ledger settled", "settled")):
        moved = event(span, name)
        assert moved.keys() == {LEDGER_STATE, DURATION_MS}  # no `changed: false`: the row moved
        assert moved[LEDGER_STATE] == state and moved[DURATION_MS] > 0
    assert event(authorize, "tracking enqueued")[TRACKING_STEPS] == ("start", "request", "verification")
    assert event(settle, "tracking enqueued")[TRACKING_STEPS] == ("settlement", "finalize")

    # The facilitator attempts are the HTTP client spans themselves.
    for attempt, stage in ((named(traced, "facilitator verify")[0], "verify"), (named(traced, "facilitator settle")[0], "settle")):
        assert attempt.attributes["http.request.method"] == "POST"
        assert attempt.attributes["url.full"] == f"{stack.facilitator.url}/{stage}"
        assert (attempt.attributes["server.address"], attempt.attributes["server.port"]) == (
            "127.0.0.1",
            int(stack.facilitator.url.rsplit(":", 1)[1]),
        )
        assert attempt.attributes["http.response.status_code"] == 200
        assert attempt.attributes[FACILITATOR_OUTCOME] == "ok"
        assert attempt.status.status_code is StatusCode.UNSET
        assert attempt.events == ()


async def test_each_fallback_attempt_is_a_span_of_its_own(stack, spans):
    status, headers = await pay_and_get(stack)
    assert status == 200
    trace_id = headers["x-trace-id"]
    traced = in_trace(await spans.wait_for(server_span_done(trace_id)), trace_id)
    (authorize,) = named(traced, AUTHORIZE, SpanKind.SERVER)
    assert [(s.kind, s.name) for s in children(traced, authorize)] == [(SpanKind.CLIENT, "facilitator verify")] * 2
    assert len(traced) == 8  # the 7 of a paid request and the attempt that fell back

    down, up = children(traced, authorize)
    assert down.attributes[FACILITATOR_OUTCOME] == "unreachable"
    assert down.attributes["error.type"] == "unreachable"
    assert "http.response.status_code" not in down.attributes  # no answer came
    assert down.status.status_code is StatusCode.ERROR
    assert down.status.description == down.attributes[FACILITATOR_REASON]
    assert down.attributes[FACILITATOR_REASON] == f"{stack.down_url.removeprefix('http://')}_unreachable"
    assert up.attributes[FACILITATOR_NAME] == stack.facilitator.url.removeprefix("http://")
    assert up.attributes[FACILITATOR_OUTCOME] == "ok"


@pytest.mark.parametrize("sidecar_overrides", [{"breaker_failures": 1}])
async def test_breaker_changes_and_skipped_facilitators_are_events(stack, spans):
    down, up = stack.down_url.removeprefix("http://"), stack.facilitator.url.removeprefix("http://")
    status, first = await pay_and_get(stack)
    assert status == 200
    # Then the facilitator that works fails once too: the one left has its breaker open.
    stack.facilitator.arm(stage="verify", mode="status", status=503, times=1)
    status, second = await pay_and_get(stack)
    assert status == 503
    finished = await spans.wait_for(server_span_done(second["x-trace-id"]))

    # The first request's failed attempt opened the breaker: an event on that attempt.
    failed = named(in_trace(finished, first["x-trace-id"]), "facilitator verify")[0]
    assert events(failed) == ["breaker open"]
    assert event(failed, "breaker open") == {FACILITATOR_NAME: down, "x402.facilitator.breaker.from": "closed"}
    # The second request's one call, and the facilitator it skipped without a call:
    # no span for that, an event on the Authorize span, which failed with the reason.
    traced = in_trace(finished, second["x-trace-id"])
    (authorize,) = named(traced, AUTHORIZE, SpanKind.SERVER)
    (attempt,) = children(traced, authorize)
    assert attempt.attributes[FACILITATOR_NAME] == up and attempt.attributes["http.response.status_code"] == 503
    assert events(attempt) == ["breaker open"]
    assert event(authorize, "facilitator verify skipped") == {
        FACILITATOR_NAME: down,
        FACILITATOR_REASON: f"{down}_circuit_open",
    }
    assert authorize.status.status_code is StatusCode.ERROR
    assert authorize.status.description == authorize.attributes[X402_REASON]


@pytest.mark.parametrize("facilitator_down_first", [False])
async def test_settle_in_doubt_asks_the_chain_in_one_span_per_read(stack, spans):
    # Charged, and both the settle and its retry lose the answer: only the chain can tell.
    stack.facilitator.arm(stage="settle", mode="drop", after_transfer=True, times=2)
    status, headers = await pay_and_get(stack, DATASET_RECORDS)
    assert status == 200  # the chain shows the payment
    trace_id, request_id = headers["x-trace-id"], headers["X-Request-ID"]
    traced = in_trace(await spans.wait_for(server_span_done(trace_id)), trace_id)
    (settle,) = named(traced, SETTLE, SpanKind.SERVER)

    below = children(traced, settle)
    attempts = [s for s in below if s.name == "facilitator settle"]
    reads = [s for s in below if s.name.startswith("chain ")]
    assert len(attempts) == 2 and reads and len(below) == len(attempts) + len(reads)
    for attempt in attempts:
        assert attempt.status.status_code is StatusCode.ERROR and attempt.attributes[FACILITATOR_REASON]
    assert reads[0].name == "chain authorizationState"
    for read in reads:
        assert read.kind is SpanKind.CLIENT and children(traced, read) == []
        assert read.attributes[REQUEST_ID] == request_id
        assert read.attributes["rpc.system"] == "jsonrpc"
    assert settle.attributes[X402_OUTCOME] == "settled"
    assert settle.status.status_code is StatusCode.UNSET


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


async def record_metadata(stack: TracedStack, request_id: str) -> dict:
    await stack.sidecar.writer.flush()
    conn = await asyncpg.connect(stack.sidecar.settings.database_url)
    try:
        metadata = await conn.fetchval("SELECT metadata FROM resource_call_records WHERE request_id = $1", request_id)
    finally:
        await conn.close()
    return json.loads(metadata)


async def test_tracking_record_carries_the_gateway_trace_id(stack, spans):
    status, headers = await pay_and_get(stack)
    assert status == 200
    assert (await record_metadata(stack, headers["X-Request-ID"]))["trace_id"] == headers["x-trace-id"]


async def test_unsampled_request_keeps_its_trace_id_in_the_tracking_record(stack, spans):
    # A caller that decided not to sample: parent-based sampling follows it in both processes.
    unsampled = "4bf92f3577b34da6a3ce929d0e0e4736"
    status, headers = await pay_and_get(stack, traceparent=f"00-{unsampled}-00f067aa0ba902b7-00")
    assert status == 200
    assert "x-trace-id" not in headers
    # A sampled request after it: once its spans are in, the first one's would be too.
    status, after = await pay_and_get(stack)
    assert status == 200
    finished = await spans.wait_for(server_span_done(after["x-trace-id"]))

    assert in_trace(finished, unsampled) == []
    assert (await record_metadata(stack, headers["X-Request-ID"]))["trace_id"] == unsampled


async def test_unpaid_request_has_the_challenge_event(stack, spans):
    async with stack.http.get(stack.gateway_url + RECORDS) as unpaid:
        assert unpaid.status == 402
        trace_id = unpaid.headers["x-trace-id"]
    finished = await spans.wait_for(server_span_done(trace_id))
    traced = in_trace(finished, trace_id)
    root = gateway_span(finished, trace_id)
    assert tree(traced, root) == (
        SpanKind.SERVER,
        "GET /v1/records",
        ((SpanKind.CLIENT, AUTHORIZE, ((SpanKind.SERVER, AUTHORIZE, ()),)),),
    )
    assert root.attributes[X402_OUTCOME] == "payment_required"
    (authorize,) = named(traced, AUTHORIZE, SpanKind.SERVER)
    assert spans_with_event(traced, "payment_challenge_issued") == [authorize]
    assert authorize.attributes[X402_OUTCOME] == "payment_required"
    assert authorize.status.status_code is StatusCode.UNSET  # asking for payment is no failure


async def test_failed_settle_is_an_error_with_its_reason_on_the_settle_span(stack, spans):
    stack.facilitator.arm(stage="settle", mode="invalid")
    status, headers = await pay_and_get(stack)
    assert status == 402
    trace_id = headers["x-trace-id"]
    finished = await spans.wait_for(server_span_done(trace_id))
    traced = in_trace(finished, trace_id)
    root = gateway_span(finished, trace_id)
    assert root.attributes[X402_OUTCOME] == "settlement_failed"
    assert root.attributes[X402_REASON]
    (settle,) = named(traced, SETTLE, SpanKind.SERVER)
    assert spans_with_event(traced, "payment_settlement_failed") == [settle]
    assert settle.attributes[X402_OUTCOME] == "settlement_failed"
    assert settle.status.status_code is StatusCode.ERROR
    assert settle.status.description == settle.attributes[X402_REASON] == root.attributes[X402_REASON]
    # The facilitator answered cleanly (success: false): its attempt did not fail.
    (attempt,) = named(traced, "facilitator settle")
    assert attempt.status.status_code is StatusCode.UNSET


async def test_unknown_route_has_the_route_not_found_event(stack, spans):
    async with stack.http.get(stack.gateway_url + "/v1/nowhere") as missing:
        assert missing.status == 404
        trace_id, request_id = missing.headers["x-trace-id"], missing.headers["X-Request-ID"]
    finished = await spans.wait_for(server_span_done(trace_id))
    root = gateway_span(finished, trace_id)
    assert "route_not_found" in events(root)
    assert root.attributes[REQUEST_ID] == request_id
