"""Payment metrics through the same SDK: requests by outcome, facilitator attempts
by reason, settle latency, tracking queue depth and breaker state per facilitator."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from sidecar.telemetry.attempts import FACILITATOR_NAME, FACILITATOR_REASON
from sidecar.telemetry.tracing import BREAKER_STATE_VALUES

from .test_request_trace import pay_and_get


def points(reader: InMemoryMetricReader, name: str) -> Iterator[Any]:
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    yield from metric.data.data_points


def total(reader: InMemoryMetricReader, name: str, **attributes: str) -> float:
    return sum(
        p.value for p in points(reader, name) if all(p.attributes.get(k) == v for k, v in attributes.items())
    )


async def test_paid_request_is_counted_with_its_attempts_and_settle_latency(stack, spans, telemetry):
    reader = telemetry.metrics
    settled_before = total(reader, "paysidecar.payments", **{"x402.outcome": "settled"})
    challenges_before = total(reader, "paysidecar.payments", **{"x402.outcome": "payment_required"})
    down = stack.down_url.removeprefix("http://")
    unreachable_before = total(
        reader, "paysidecar.facilitator.attempts", **{FACILITATOR_REASON: f"{down}_unreachable"}
    )
    settles_before = sum(
        p.count for p in points(reader, "paysidecar.settle.duration") if p.attributes["x402.outcome"] == "settled"
    )

    status, _ = await pay_and_get(stack)
    assert status == 200

    assert total(reader, "paysidecar.payments", **{"x402.outcome": "settled"}) == settled_before + 1
    assert total(reader, "paysidecar.payments", **{"x402.outcome": "payment_required"}) == challenges_before + 1
    assert (
        total(reader, "paysidecar.facilitator.attempts", **{FACILITATOR_REASON: f"{down}_unreachable"})
        == unreachable_before + 1
    )
    settles = [p for p in points(reader, "paysidecar.settle.duration") if p.attributes["x402.outcome"] == "settled"]
    assert sum(p.count for p in settles) == settles_before + 1
    assert all(p.sum > 0 for p in settles)


@pytest.mark.parametrize("sidecar_overrides", [{"breaker_failures": 1}])
async def test_queue_depth_and_breaker_states_are_observed(stack, spans, telemetry):
    reader = telemetry.metrics
    status, _ = await pay_and_get(stack)  # its verify finds the first facilitator down
    assert status == 200
    await stack.sidecar.writer.flush()
    assert [p.value for p in points(reader, "paysidecar.tracking.queue_depth")] == [0]
    breakers = {p.attributes[FACILITATOR_NAME]: p.value for p in points(reader, "paysidecar.facilitator.breaker_state")}
    assert breakers == {
        stack.down_url.removeprefix("http://"): BREAKER_STATE_VALUES["open"],
        stack.facilitator.url.removeprefix("http://"): BREAKER_STATE_VALUES["closed"],
    }
