"""A real OTLP trace receiver on 127.0.0.1, port 0, over gRPC or HTTP/protobuf:
what a collector or Jaeger would get from our OTLPSpanExporter, kept in memory."""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import grpc
from aiohttp import web
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    attributes: dict[str, object]


def _value(value: AnyValue) -> object:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return tuple(_value(item) for item in value.array_value.values)
    return getattr(value, kind) if kind else None


class OtlpReceiver(trace_service_pb2_grpc.TraceServiceServicer):
    """Keeps every span it receives, or (keep=False, for benchmarks) only counts them."""

    def __init__(self, keep: bool = True) -> None:
        self.spans: list[ReceivedSpan] = []
        self.received = 0
        self.trace_sizes: collections.Counter[bytes] = collections.Counter()  # spans per trace id
        self._keep = keep
        self._changed = asyncio.Condition()

    async def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.aio.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        await self.take(request)
        return trace_service_pb2.ExportTraceServiceResponse()

    async def post_traces(self, request: web.Request) -> web.Response:
        """OTLP/HTTP: `POST /v1/traces` with a binary protobuf body."""
        await self.take(trace_service_pb2.ExportTraceServiceRequest.FromString(await request.read()))
        answer = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
        return web.Response(body=answer, content_type="application/x-protobuf")

    async def take(self, request: trace_service_pb2.ExportTraceServiceRequest) -> None:
        for resource_spans in request.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                self.received += len(scope_spans.spans)
                self.trace_sizes.update(span.trace_id for span in scope_spans.spans)
        if not self._keep:
            return
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            service = str(resource.get("service.name", ""))
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.spans.append(
                        ReceivedSpan(
                            service,
                            span.trace_id.hex(),
                            span.span_id.hex(),
                            span.parent_span_id.hex(),
                            span.name,
                            {a.key: _value(a.value) for a in span.attributes},
                        )
                    )
        async with self._changed:
            self._changed.notify_all()

    async def wait_for(self, predicate: Callable[[list[ReceivedSpan]], bool], timeout_s: float) -> None:
        """Return once `predicate(spans)` holds; TimeoutError after `timeout_s`."""
        async with asyncio.timeout(timeout_s), self._changed:
            await self._changed.wait_for(lambda: predicate(self.spans))


@contextlib.asynccontextmanager
async def otlp_receiver(keep: bool = True, protocol: str = "grpc") -> AsyncIterator[tuple[OtlpReceiver, str]]:
    """The receiver and its endpoint, `http://127.0.0.1:<port>`, for OTLP over
    `protocol` (`grpc` or `http/protobuf`, as OTEL_EXPORTER_OTLP_PROTOCOL says)."""
    receiver = OtlpReceiver(keep)
    if protocol == "http/protobuf":
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/traces", receiver.post_traces)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        try:
            yield receiver, f"http://127.0.0.1:{runner.addresses[0][1]}"
        finally:
            await runner.cleanup()
        return
    server = grpc.aio.server()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(receiver, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield receiver, f"http://127.0.0.1:{port}"
    finally:
        await server.stop(0)
