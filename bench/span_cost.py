"""What one span and one span event cost in this process, piece by piece.

    python bench/span_cost.py [--count 20000]

In-process, nothing on the wire: the CPU of making a span with the attributes
every span of a request carries (DESIGN §8), passed at creation or copied by a
span processor; of handing it to the batch processor; of a span event; and of
encoding spans and events for OTLP (what the exporter thread does before it
sends). The best of several repeats, in µs per span or per event.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from opentelemetry.context import Context  # noqa: E402
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans  # noqa: E402
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult  # noqa: E402

from paysidecar_common.trace_attributes import request_attributes, request_scope  # noqa: E402

REPEATS = 5
# What a request's span carries once the payment verified: request.id and six x402 facts.
FACTS = {
    "route": "GET /v1/datasets/observations/records",
    "network": "eip155:84532",
    "scheme": "exact",
    "payer": "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
    "amount": "1000",
    "outcome": "verified",
}
OWN = {"x402.facilitator.name": "127.0.0.1:8080", "x402.facilitator.stage": "settle", "http.request.method": "POST"}
EVENT = {"x402.ledger.state": "settled", "x402.duration_ms": 1.23}


class Discard(SpanExporter):
    def export(self, spans) -> SpanExportResult:
        return SpanExportResult.SUCCESS


class CopyScoped(SpanProcessor):
    """Copies the request's attributes onto every span as it starts (the way this
    project did before spans carried them from creation)."""

    def on_start(self, span, parent_context: Context | None = None) -> None:
        span.set_attributes(request_attributes())


def per_call_us(count: int, run: Callable[[int], None]) -> float:
    """Best of REPEATS runs of `run(count)`, in µs per call."""
    timings = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        run(count)
        timings.append((time.perf_counter() - started) / count * 1e6)
    return min(timings)


def spans(provider: TracerProvider, *, scoped_at_start: bool, events: int = 0) -> Callable[[int], None]:
    tracer = provider.get_tracer(__name__)

    def run(count: int) -> None:
        with request_scope("a1b2c3d4-request", **FACTS):
            for _ in range(count):
                attributes = {**OWN, **request_attributes()} if scoped_at_start else OWN
                with tracer.start_as_current_span("facilitator settle", attributes=attributes) as span:
                    for _ in range(events):
                        span.add_event("ledger settled", EVENT)

    return run


def finished(count: int, events: int) -> list[ReadableSpan]:
    kept: list[ReadableSpan] = []

    class Keep(SpanProcessor):
        def on_end(self, span: ReadableSpan) -> None:
            kept.append(span)

    provider = TracerProvider()
    provider.add_span_processor(Keep())
    spans(provider, scoped_at_start=True, events=events)(count)
    return kept


def encode_us(count: int, events: int) -> float:
    batch = finished(count, events)
    timings = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        for start in range(0, count, 512):  # the batch processor's default batch
            encode_spans(batch[start : start + 512]).SerializeToString()
        timings.append((time.perf_counter() - started) / count * 1e6)
    return min(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20000, help="spans per repeat")
    count = parser.parse_args().count

    bare = TracerProvider()
    copying = TracerProvider()
    copying.add_span_processor(CopyScoped())
    batched = TracerProvider()
    batched.add_span_processor(BatchSpanProcessor(Discard(), max_queue_size=count * 2))

    figures = {
        "span, request attributes passed at creation": per_call_us(count, spans(bare, scoped_at_start=True)),
        "span, request attributes copied by a processor": per_call_us(count, spans(copying, scoped_at_start=False)),
        "span, attributes at creation + batch processor": per_call_us(count, spans(batched, scoped_at_start=True)),
        "span with 4 events (per event: minus the span)": (
            per_call_us(count, spans(bare, scoped_at_start=True, events=4))
            - per_call_us(count, spans(bare, scoped_at_start=True))
        )
        / 4,
        "OTLP encoding of a span": encode_us(count, 0),
        "OTLP encoding of an event": (encode_us(count, 4) - encode_us(count, 0)) / 4,
    }
    for what, us in figures.items():
        print(f"{what:<50} {us:6.1f} µs")
    print(f"(best of {REPEATS} runs of {count})")


if __name__ == "__main__":
    main()
