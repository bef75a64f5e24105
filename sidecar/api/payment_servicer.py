"""PaymentService servicer: decode, call the domain, encode."""

from __future__ import annotations

import grpc
from opentelemetry import trace

from paysidecar.v1 import payment_pb2, payment_pb2_grpc

from ..config import Settings
from ..payments.codec import pick_header
from ..payments.service import PaymentService
from . import convert
from .errors import mapped


def _trace_id() -> str:
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else ""


class PaymentServicer(payment_pb2_grpc.PaymentServiceServicer):
    def __init__(self, service: PaymentService, settings: Settings) -> None:
        self._service = service
        self._settings = settings

    @mapped
    async def Authorize(
        self, request: payment_pb2.AuthorizeRequest, context: grpc.aio.ServicerContext
    ) -> payment_pb2.AuthorizeResponse:
        tracking_id, outcome = await self._service.authorize(
            convert.authorize_input(request, self._settings, _trace_id())
        )
        return convert.authorize_response(str(tracking_id), outcome)

    @mapped
    async def Settle(
        self, request: payment_pb2.SettleRequest, context: grpc.aio.ServicerContext
    ) -> payment_pb2.SettleResponse:
        result = await self._service.settle(
            request.payment_id,
            request.claim_token,
            request.response_status,
            int(request.response_time_ms),
            pick_header(request.payment_signature, request.x_payment),
        )
        return convert.settle_response(result)

    @mapped
    async def Release(
        self, request: payment_pb2.ReleaseRequest, context: grpc.aio.ServicerContext
    ) -> payment_pb2.ReleaseResponse:
        state = await self._service.release(
            request.payment_id,
            request.claim_token,
            request.reason or "released",
            request.response_status,
            int(request.response_time_ms),
        )
        return payment_pb2.ReleaseResponse(state=state)
