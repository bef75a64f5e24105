"""The gateway's tracing: the process set-up main() calls, the request scope of
every request, what the records routes add to the server span, and the
`x-trace-id` answer header.

The server span comes from the stock aiohttp instrumentation: once instrumented,
every `web.Application` made in this process puts its tracing middleware in
front of the app's own. The gRPC client spans come from SidecarClient's channel
interceptors, which carry the trace to the sidecar in `traceparent` metadata.
"""

from __future__ import annotations

from aiohttp import web
from opentelemetry import trace
from opentelemetry.instrumentation.aiohttp_server import AioHttpServerInstrumentor

from paysidecar_common.trace_attributes import request_scope
from paysidecar_common.tracing import Tracing, TracingSettings, configure

from .http_helpers import Handler, request_id

SERVICE_NAME = "paysidecar-gateway"
TRACE_ID_HEADER = "x-trace-id"
TRACE_ID_KEY = web.RequestKey("trace_id", str)
DATASET = "gateway.dataset"
ROWS = "gateway.rows"


def setup_tracing(settings: TracingSettings) -> Tracing:
    """Providers from the OTEL_* settings; server spans (and HTTP metrics) when they
    export something. Call before create_app()."""
    tracing = configure(settings, SERVICE_NAME)
    if tracing.enabled:
        AioHttpServerInstrumentor().instrument()
    return tracing


@web.middleware
async def trace_context_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Inside the server span: remember the trace id for the answer and scope the
    request's id onto every span it starts. A no-op when there is no trace."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return await handler(request)
    if context.trace_flags.sampled:
        request[TRACE_ID_KEY] = format(context.trace_id, "032x")
    with request_scope(request_id(request)):
        return await handler(request)


def tag_records(*, dataset: str | None = None, rows: int | None = None) -> None:
    """The dataset asked for, or the rows answered, on the server span."""
    span = trace.get_current_span()
    if not span.is_recording():
        return
    if dataset is not None:
        span.set_attribute(DATASET, dataset)
    if rows is not None:
        span.set_attribute(ROWS, rows)


async def echo_trace_id(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: the header for answers made inside or outside the
    middlewares (the paywall sends its own; aiohttp prepares the others later)."""
    trace_id = request.get(TRACE_ID_KEY)
    if trace_id:
        response.headers[TRACE_ID_HEADER] = trace_id
