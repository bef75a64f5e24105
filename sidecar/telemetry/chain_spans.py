"""One client span per chain read or transaction (DESIGN §8): `chain <method>`,
a JSON-RPC call (or the few calls of one read) to the network's node.

Inside a request (a settle in doubt, asked of the chain) the span is a child of
the request's server span and carries its attributes; in a background job
(recovery, the batch collector) it is a trace of its own. A read that fails
gets status ERROR and `error.type`: the caller answers "could not read".
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from urllib.parse import urlsplit

from opentelemetry import trace
from opentelemetry.semconv._incubating.attributes.rpc_attributes import RPC_METHOD, RPC_SYSTEM
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.semconv.attributes.server_attributes import SERVER_ADDRESS
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from paysidecar_common.trace_attributes import X402_NETWORK, request_attributes

_tracer = trace.get_tracer(__name__)


@contextlib.contextmanager
def chain_span(method: str, network: str, node_url: str) -> Iterator[Span]:
    """The span of one read (or transaction) `method` on `network`, current inside the block."""
    attributes = {
        **request_attributes(),
        RPC_SYSTEM: "jsonrpc",
        RPC_METHOD: method,
        X402_NETWORK: network,
        SERVER_ADDRESS: urlsplit(node_url).hostname or "",
    }
    with _tracer.start_as_current_span(f"chain {method}", kind=SpanKind.CLIENT, attributes=attributes) as span:
        yield span


def chain_failed(span: Span, error: BaseException) -> None:
    """The read failed (transport, timeout, a node refusing it): said on its span."""
    if span.is_recording():
        span.set_attribute(ERROR_TYPE, type(error).__name__)
        span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}"))
