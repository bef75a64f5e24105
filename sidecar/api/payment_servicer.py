"""PaymentService servicer: decode, call the domain, encode; and no answer
leaves before the tracking steps of its call are durable."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc
from opentelemetry import trace

from paysidecar.v1 import payment_pb2, payment_pb2_grpc
from paysidecar_common.trace_attributes import tag_request

from ..config import Settings
from ..payments.ports import Tracker
from ..payments.service import PaymentService
from . import convert
from .errors import mapped

Resp = TypeVar("Resp")


def _trace_id() -> str:
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else ""


def _records_durable(method: Callable[..., Awaitable[Resp]]) -> Callable[..., Awaitable[Resp]]:
    """Whatever the answer (an error too), the steps its call recorded are on
    disk before it leaves: a crash right after loses no record of an answered
    call. Concurrent calls share one fsync.

    Except a verified Authorize: it is not the call's answer yet. The handler
    runs, then Settle or Release waits for every step of the call, these
    included; so these are written at once, without waiting."""

    @functools.wraps(method)
    async def wrapper(self: PaymentServicer, request, context: grpc.aio.ServicerContext) -> Resp:
        try:
            response = await method(self, request, context)
        except BaseException:
            await self._tracker.durable()
            raise
        if isinstance(response, payment_pb2.AuthorizeResponse) and response.HasField("verified"):
            self._tracker.durable_soon()
        else:
            await self._tracker.durable()
        return response

    return wrapper


class PaymentServicer(payment_pb2_grpc.PaymentServiceServicer):
    def __init__(self, service: PaymentService, settings: Settings, tracker: Tracker) -> None:
        self._service = service
        self._routes = settings.route_defaults()
        self._tracker = tracker

    @mapped
    @_records_durable
    async def Authorize(
        self, request: payment_pb2.AuthorizeRequest, context: grpc.aio.ServicerContext
    ) -> payment_pb2.AuthorizeResponse:
        authorize = convert.authorize_input(request, self._routes, _trace_id())
        # The network is the route config's (a caller names the route): known from here on.
        tag_request(network=authorize.route.network)
        tracking_id, outcome = await self._service.authorize(authorize)
        return convert.authorize_response(str(tracking_id), outcome, authorize.route)

    @mapped
    @_records_durable
    async def Settle(
        self, request: payment_pb2.SettleRequest, context: grpc.aio.ServicerContext
    ) -> payment_pb2.SettleResponse:
        result = await self._service.settle(convert.settle_input(request))
        return convert.settle_response(result)

    @mapped
    @_records_durable
    async def Release(
        self, request: payment_pb2.ReleaseRequest, context: grpc.aio.ServicerContext
    ) -> payment_pb2.ReleaseResponse:
        state = await self._service.release(convert.release_input(request))
        return payment_pb2.ReleaseResponse(state=state)

    @mapped
    async def DescribeRoute(
        self, request: payment_pb2.DescribeRouteRequest, context: grpc.aio.ServicerContext
    ) -> payment_pb2.RouteDescription:
        return convert.route_description(request, self._routes)
