"""The one error table (sidecar/api/errors.py): only the domain's own errors are
the caller's fault; anything else is INTERNAL with a fixed message, its text and
traceback kept in the log. Served by a real gRPC server, over a socket."""

from __future__ import annotations

import logging

import grpc
import pytest

from paysidecar.v1 import status_pb2, status_pb2_grpc
from sidecar.api.errors import mapped
from sidecar.constants import Reason
from sidecar.payments.errors import InvalidRequest, RouteError

SECRET = "detail-only-the-log-may-see"


class _Raising(status_pb2_grpc.StatusServiceServicer):
    """GetStatus raises whatever the test gives it."""

    def __init__(self) -> None:
        self.error: Exception = RuntimeError()

    @mapped
    async def GetStatus(self, request, context):
        raise self.error


@pytest.fixture
async def raising():
    servicer = _Raising()
    server = grpc.aio.server()
    status_pb2_grpc.add_StatusServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    yield servicer, status_pb2_grpc.StatusServiceStub(channel)
    await channel.close()
    await server.stop(None)


async def _refusal(stub) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.GetStatus(status_pb2.GetStatusRequest())
    return refused.value


@pytest.mark.parametrize("bug", [ValueError(SECRET), KeyError(SECRET), TypeError(SECRET)])
async def test_a_bug_is_internal_with_a_fixed_message_and_its_traceback_in_the_log(raising, caplog, bug):
    servicer, stub = raising
    servicer.error = bug
    refused = await _refusal(stub)
    assert refused.code() == grpc.StatusCode.INTERNAL
    assert refused.details() == "internal: unexpected error"
    logged = [r for r in caplog.records if r.levelno == logging.ERROR and r.exc_info]
    assert logged and SECRET in str(logged[-1].exc_info[1])


@pytest.mark.parametrize(
    "error",
    [
        InvalidRequest(Reason.INVALID_ARGUMENT, "call_key is at most 128 characters"),
        RouteError(Reason.INVALID_ROUTE, "route pay_to is required"),
    ],
)
async def test_a_callers_error_is_invalid_argument_with_its_reason(raising, error):
    servicer, stub = raising
    servicer.error = error
    refused = await _refusal(stub)
    assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.details() == f"{error.reason}: {error.message}"
