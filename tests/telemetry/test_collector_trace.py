"""The collector's traces: one span per chain transaction (a claim, a settle), the
facilitator attempt under it, and what happened as events on it."""

from __future__ import annotations

from types import SimpleNamespace

import grpc
import pytest

from paysidecar.v1 import payment_pb2_grpc
from tests.collector.support import collect, open_channels

CHANNELS = {"schemes": ["batch-settlement", "exact"], "collector_enabled": False}


@pytest.mark.parametrize("sidecar_overrides", [CHANNELS])
async def test_each_claim_and_settle_is_one_span_with_its_attempt_and_events(stack, spans):
    async with grpc.aio.insecure_channel(f"127.0.0.1:{stack.sidecar.port}") as channel:
        handle = SimpleNamespace(payments=payment_pb2_grpc.PaymentServiceStub(channel), channel=channel)
        await open_channels(handle, 2)
        spans.clear()
        report = await collect(handle)
    assert [claim.state for claim in report.claims] == ["done"]

    found = await spans.wait_for(lambda done: any(span.name == "collector settle" for span in done))
    (claim,) = [span for span in found if span.name == "collector claim"]
    (settle,) = [span for span in found if span.name == "collector settle"]
    for transaction, event in ((claim, "channel_claim_done"), (settle, "channel_settle_done")):
        assert event in [e.name for e in transaction.events]
        attempts = [s for s in found if s.parent is not None and s.parent.span_id == transaction.context.span_id]
        assert [s.name for s in attempts] == ["facilitator settle"]
