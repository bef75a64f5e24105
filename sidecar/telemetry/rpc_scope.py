"""Per-RPC request scope for the sidecar's traces and payment metrics.

Placed inside the stock OpenTelemetry server interceptor, so the gRPC server
span is current here. It opens the request scope (request id from `x-request-id`
metadata, else the message's `request_id`; x402 facts from the request), which
puts `request.id` on the server span and on the spans the RPC makes, collects
the tracking steps the call queues into one event, and, once the servicer
answered, records the payment outcome on the span (an error status with the
reason when the call failed on our side) and in the metrics. It reads the
messages only; what to answer stays with the servicers.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import Message
from opentelemetry import metrics, trace
from opentelemetry.trace import Status, StatusCode

from paysidecar.v1 import payment_pb2
from paysidecar_common.request_ids import REQUEST_ID_METADATA
from paysidecar_common.trace_attributes import X402_OUTCOME, request_scope, tag_request

from .batch_links import tracking_steps

_meter = metrics.get_meter(__name__)
_payments = _meter.create_counter(
    "paysidecar.payments",
    unit="{request}",
    description="Paid-route requests by final outcome: payment_required, rejected, settled, "
    "settlement_failed, released",
)
_settle_duration = _meter.create_histogram(
    "paysidecar.settle.duration",
    unit="s",
    description="Time the sidecar took to answer Settle, by outcome",
)

Behavior = Callable[[Message, grpc.aio.ServicerContext], Awaitable[Message]]


class RequestScopeInterceptor(grpc.aio.ServerInterceptor):
    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or handler.request_streaming or handler.response_streaming:
            return handler
        metadata_id = next(
            (value for key, value in details.invocation_metadata or () if key == REQUEST_ID_METADATA), ""
        )
        return grpc.unary_unary_rpc_method_handler(
            _scoped(handler.unary_unary, metadata_id),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


def _scoped(behavior: Behavior, metadata_id: str) -> Behavior:
    async def scoped(request: Message, context: grpc.aio.ServicerContext) -> Message:
        request_id = metadata_id or str(getattr(request, "request_id", ""))
        with request_scope(request_id, **_request_facts(request)), tracking_steps():
            started = time.perf_counter()
            response = await behavior(request, context)
            _answered(request, response, time.perf_counter() - started)
            return response

    return scoped


def _request_facts(request: Message) -> dict[str, str]:
    if isinstance(request, payment_pb2.AuthorizeRequest):
        # Its network comes from the route's config, tagged once resolved (payment_servicer.py).
        return {"route": request.route.key or request.route.name}
    return {}


def _answered(request: Message, response: Any, elapsed_s: float) -> None:
    if isinstance(response, payment_pb2.AuthorizeResponse):
        outcome = response.WhichOneof("outcome") or ""
        if outcome == "verified":
            paid = response.verified
            # Not final: the request ends with Settle or Release.
            tag_request(outcome=outcome, payer=paid.payer, scheme=paid.scheme, network=paid.network, amount=paid.amount)
            return
        reason = response.rejected.reason if outcome == "rejected" else ""
        _final(outcome, reason)
        if outcome == "rejected" and response.rejected.status >= 500:
            _failed(reason)  # ours or a facilitator's, not the payer's
    elif isinstance(response, payment_pb2.SettleResponse):
        outcome = "settled" if response.success else "settlement_failed"
        tag_request(payer=response.payer, network=response.network)
        _final(outcome, response.reason)
        if not response.success:
            _failed(response.reason)
        _settle_duration.record(elapsed_s, {X402_OUTCOME: outcome})
    elif isinstance(response, payment_pb2.ReleaseResponse) and isinstance(request, payment_pb2.ReleaseRequest):
        _final("released", request.reason)


def _final(outcome: str, reason: str) -> None:
    tag_request(outcome=outcome, reason=reason)
    _payments.add(1, {X402_OUTCOME: outcome})


def _failed(reason: str) -> None:
    """The call failed where it happened, here: the server span's status says so,
    with the reason code. (A payment refused for the payer's own fault is not a
    failure of the call: its reason is on the span, its status stays unset.)"""
    trace.get_current_span().set_status(Status(StatusCode.ERROR, reason))
