"""Build the grpc.aio server: servicers, health, reflection, auth, TLS.
Kept apart from serve() so tests can bind port 0."""

from __future__ import annotations

from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from paysidecar.v1 import (
    channels_pb2,
    channels_pb2_grpc,
    payment_pb2,
    payment_pb2_grpc,
    status_pb2,
    status_pb2_grpc,
    tracking_pb2,
    tracking_pb2_grpc,
)

from .api.auth import BearerTokenInterceptor
from .api.decoding import RequestDecodingInterceptor
from .config import Settings

SERVICE_NAMES = (
    payment_pb2.DESCRIPTOR.services_by_name["PaymentService"].full_name,
    tracking_pb2.DESCRIPTOR.services_by_name["TrackingService"].full_name,
    status_pb2.DESCRIPTOR.services_by_name["StatusService"].full_name,
    channels_pb2.DESCRIPTOR.services_by_name["ChannelService"].full_name,
)


def _credentials(settings: Settings) -> grpc.ServerCredentials | None:
    if not (settings.tls_cert and settings.tls_key):
        return None
    key = Path(settings.tls_key).read_bytes()
    cert = Path(settings.tls_cert).read_bytes()
    client_ca = Path(settings.tls_client_ca).read_bytes() if settings.tls_client_ca else None
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=client_ca, require_client_auth=bool(client_ca))


async def add_health_and_reflection(server: grpc.aio.Server) -> health.aio.HealthServicer:
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in (*SERVICE_NAMES, ""):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection((*SERVICE_NAMES, reflection.SERVICE_NAME, health.SERVICE_NAME), server)
    return health_servicer


async def build_server(
    settings: Settings,
    payment: payment_pb2_grpc.PaymentServiceServicer,
    tracking: tracking_pb2_grpc.TrackingServiceServicer,
    status: status_pb2_grpc.StatusServiceServicer,
    interceptors: tuple[grpc.aio.ServerInterceptor, ...] = (),
    channels: channels_pb2_grpc.ChannelServiceServicer | None = None,
) -> tuple[grpc.aio.Server, int, health.aio.HealthServicer]:
    chain = list(interceptors)
    if settings.auth_token:
        chain.append(BearerTokenInterceptor(settings.auth_token))
    chain.append(RequestDecodingInterceptor())  # innermost: it replaces the method's deserializer
    server = grpc.aio.server(interceptors=chain, options=[("grpc.so_reuseport", 0)])
    payment_pb2_grpc.add_PaymentServiceServicer_to_server(payment, server)
    tracking_pb2_grpc.add_TrackingServiceServicer_to_server(tracking, server)
    status_pb2_grpc.add_StatusServiceServicer_to_server(status, server)
    channels_pb2_grpc.add_ChannelServiceServicer_to_server(
        channels or channels_pb2_grpc.ChannelServiceServicer(), server
    )
    health_servicer = await add_health_and_reflection(server)
    address = f"{settings.host}:{settings.port}"
    credentials = _credentials(settings)
    port = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    return server, port, health_servicer
