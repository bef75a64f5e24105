"""Requests whose bytes do not decode as their message (a string field that is not
UTF-8, a field cut short) are the caller's mistake: INVALID_ARGUMENT, where
grpcio answers UNKNOWN and logs a traceback when a request deserializer raises.

The deserializer is made to hand such a request on as `Undecodable`, and the
method answers it before the servicer runs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError


@dataclass(frozen=True, slots=True)
class Undecodable:
    reason: str


class RequestDecodingInterceptor(grpc.aio.ServerInterceptor):
    """Placed innermost, so what it wraps is the method's own handler: the same for
    every call of a method, hence wrapped once per method."""

    def __init__(self) -> None:
        self._wrapped: dict[grpc.RpcMethodHandler, grpc.RpcMethodHandler] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        # Every method of our services is unary; others (health Watch, reflection) stay as they are.
        if handler is None or handler.request_streaming or handler.response_streaming:
            return handler
        if handler.request_deserializer is None:
            return handler
        wrapped = self._wrapped.get(handler)
        if wrapped is None:
            wrapped = self._wrapped[handler] = grpc.unary_unary_rpc_method_handler(
                _refusing_undecodable(handler.unary_unary),
                request_deserializer=_tolerant(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        return wrapped


def _tolerant(decode: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def tolerant(data: bytes) -> Any:
        try:
            return decode(data)
        except DecodeError as exc:
            return Undecodable(str(exc))

    return tolerant


def _refusing_undecodable(behavior: Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]):
    async def refusing(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if isinstance(request, Undecodable):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"request does not decode: {request.reason}")
        return await behavior(request, context)

    return refusing
