"""gRPC security: the bearer token guards every service but health and reflection,
TLS keeps plaintext clients out, mutual TLS keeps clients without a certificate
from our CA out, and the sidecar listens on loopback unless told otherwise."""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from paysidecar.v1 import payment_pb2_grpc, status_pb2, status_pb2_grpc, tracking_pb2, tracking_pb2_grpc
from sidecar.config import Settings
from tests.support.calls import authorize_request
from tests.support.stack import start_sidecar

from .certs import OPENSSL, issue, make_ca

TOKEN = "tok-3c9f1e6a8b"
CALL_TIMEOUT_S = 5.0


def _calls(channel: grpc.aio.Channel, metadata=()):
    """One call on each guarded service."""
    payments = payment_pb2_grpc.PaymentServiceStub(channel)
    tracking = tracking_pb2_grpc.TrackingServiceStub(channel)
    status = status_pb2_grpc.StatusServiceStub(channel)
    kw = dict(metadata=metadata, timeout=CALL_TIMEOUT_S)
    return [
        lambda: payments.Authorize(authorize_request(), **kw),
        lambda: tracking.ListRecords(tracking_pb2.ListRecordsRequest(), **kw),
        lambda: status.GetStatus(status_pb2.GetStatusRequest(), **kw),
    ]


async def _code(call) -> grpc.StatusCode:
    try:
        await call()
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


async def _health(channel: grpc.aio.Channel) -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    return (await stub.Check(health_pb2.HealthCheckRequest(), timeout=CALL_TIMEOUT_S)).status


async def test_missing_or_wrong_token_is_unauthenticated_and_health_stays_open(make_sidecar):
    sidecar = await make_sidecar(auth_token=TOKEN)
    channel = sidecar.channel
    for metadata in ((), (("authorization", "Bearer wrong"),), (("authorization", TOKEN),), (("authorization", f"Bearer {TOKEN}x"),)):
        for call in _calls(channel, metadata):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await call()
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert TOKEN not in (refused.value.details() or "")
    for call in _calls(channel, (("authorization", f"Bearer {TOKEN}"),)):
        assert await _code(call) == grpc.StatusCode.OK

    # Orchestrators probe without credentials.
    assert await _health(channel) == health_pb2.HealthCheckResponse.SERVING
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    async for answer in reflection.ServerReflectionInfo(iter([request]), timeout=CALL_TIMEOUT_S):
        names = {s.name for s in answer.list_services_response.service}
        assert "paysidecar.v1.PaymentService" in names
        break


needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="the openssl command is not installed")


@pytest.fixture
def pki(tmp_path: Path):
    ca = make_ca(tmp_path, "test-ca")
    return {
        "ca": ca,
        "server": issue(ca, tmp_path, "server", server=True),
        "client": issue(ca, tmp_path, "client", server=False),
        "stranger": issue(make_ca(tmp_path, "other-ca"), tmp_path, "stranger", server=False),
    }


@needs_openssl
async def test_tls_client_is_served_and_plaintext_client_is_not(make_sidecar, pki):
    sidecar = await make_sidecar(tls_cert=str(pki["server"].cert), tls_key=str(pki["server"].key))
    credentials = grpc.ssl_channel_credentials(root_certificates=pki["ca"].cert_pem)
    async with grpc.aio.secure_channel(sidecar.target, credentials) as tls:
        assert await _health(tls) == health_pb2.HealthCheckResponse.SERVING
        assert await _code(_calls(tls)[0]) == grpc.StatusCode.OK
    # The fixture's channel speaks plaintext to the TLS port.
    assert await _code(lambda: _health(sidecar.channel)) == grpc.StatusCode.UNAVAILABLE


@needs_openssl
async def test_mutual_tls_refuses_clients_without_a_certificate_from_our_ca(make_sidecar, pki):
    server = pki["server"]
    sidecar = await make_sidecar(tls_cert=str(server.cert), tls_key=str(server.key), tls_client_ca=str(pki["ca"].cert))
    root = pki["ca"].cert_pem

    def credentials(pair=None):
        if pair is None:
            return grpc.ssl_channel_credentials(root_certificates=root)
        return grpc.ssl_channel_credentials(root, private_key=pair.key_pem, certificate_chain=pair.cert_pem)

    for refused in (credentials(), credentials(pki["stranger"])):
        async with grpc.aio.secure_channel(sidecar.target, refused) as channel:
            assert await _code(lambda: _health(channel)) == grpc.StatusCode.UNAVAILABLE
    async with grpc.aio.secure_channel(sidecar.target, credentials(pki["client"])) as channel:
        assert await _health(channel) == health_pb2.HealthCheckResponse.SERVING
        assert await _code(_calls(channel)[0]) == grpc.StatusCode.OK


def _proc_address(hex_address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """/proc/net/tcp* print addresses as 32-bit words in host (little-endian) order."""
    raw = bytes.fromhex(hex_address)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return ipaddress.ip_address(words)


def _listening_addresses(port: int) -> set[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """Local addresses with a listening TCP socket on `port` (Linux /proc; empty elsewhere)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            address, hex_port = fields[1].split(":")
            if int(hex_port, 16) == port and fields[3] == "0A":  # 0A: LISTEN
                found.add(_proc_address(address))
    return found


def _is_loopback(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


def _non_loopback_address() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: nothing is sent
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if address.startswith("127.") else address


async def test_sidecar_listens_on_loopback_by_default(database_url, facilitator, tmp_path):
    settings = Settings(
        env="test",
        port=0,
        database_url=database_url,
        facilitator_urls=[facilitator.url],
        spool_dir=str(tmp_path / "spool"),
    )
    assert settings.host == "127.0.0.1"
    sidecar = await start_sidecar(settings)
    port = int(sidecar.target.rsplit(":", 1)[1])
    try:
        listening = _listening_addresses(port)
        assert all(_is_loopback(address) for address in listening), listening  # no wildcard bind
        outside = _non_loopback_address()
        if outside is not None:
            with pytest.raises(OSError):
                socket.create_connection((outside, port), timeout=2).close()
        assert await _health(sidecar.channel) == health_pb2.HealthCheckResponse.SERVING
    finally:
        await sidecar.stop()
