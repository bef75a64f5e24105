"""The domain's Telemetry port on a span: a step is an event with its duration
(and its reason code when it failed), a note is a span event kept out of the
recent-events ring, a payment event is in both."""

from __future__ import annotations

import pytest
from opentelemetry import trace

from paysidecar_common.events import EventRing
from paysidecar_common.trace_attributes import X402_REASON
from sidecar.payments.errors import PaymentError
from sidecar.telemetry.payments import DURATION_MS, PaymentTelemetry

_tracer = trace.get_tracer(__name__)


def test_a_step_is_an_event_with_its_duration_not_a_span(spans):
    telemetry = PaymentTelemetry(EventRing(10, {}))
    with _tracer.start_as_current_span("rpc"):
        with telemetry.step("x402 decode and bind"):
            pass
    (rpc,) = spans.get_finished_spans()
    ((name, attributes),) = [(e.name, dict(e.attributes)) for e in rpc.events]
    assert name == "x402 decode and bind"
    assert attributes.keys() == {DURATION_MS} and attributes[DURATION_MS] >= 0


def test_a_failed_step_says_why_and_still_raises(spans):
    telemetry = PaymentTelemetry(EventRing(10, {}))
    with _tracer.start_as_current_span("rpc"), pytest.raises(PaymentError):
        with telemetry.step("x402 decode and bind"):
            raise PaymentError("invalid_payment_header", "not base64", status=400)
    (rpc,) = spans.get_finished_spans()
    (event,) = rpc.events
    assert event.attributes["error.type"] == "PaymentError"
    assert event.attributes[X402_REASON] == "invalid_payment_header"


def test_a_note_goes_on_the_span_only(spans):
    ring = EventRing(10, {"env": "test"})
    telemetry = PaymentTelemetry(ring)
    with _tracer.start_as_current_span("rpc"):
        telemetry.note("cache hit", cache="routes", empty="")
        telemetry.event("payment_settled", request_id="r-1", route="GET /x", payer="0xabc")
    (rpc,) = spans.get_finished_spans()
    assert [(e.name, dict(e.attributes)) for e in rpc.events] == [
        ("cache hit", {"cache": "routes"}),
        ("payment_settled", {"payer": "0xabc"}),
    ]
    assert [e.name for e in ring.recent(10)] == ["payment_settled"]
