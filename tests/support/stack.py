"""The real stack on loopback for tests: devnet chain + facilitator HTTP servers,
the sidecar over real gRPC, and (optionally) the gateway over real HTTP."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from aiohttp import web

from devnet.chain import Chain
from devnet.facilitator import STATS_KEY, create_app
from devnet.faults import Fault, Faults
from paysidecar.v1 import payment_pb2_grpc, status_pb2, status_pb2_grpc, tracking_pb2_grpc
from sidecar.app import Sidecar
from sidecar.config import Settings


@dataclass
class DevnetFacilitator:
    name: str
    url: str
    faults: Faults
    app: web.Application
    runner: web.AppRunner

    def arm(self, **fault: Any) -> None:
        self.faults.arm(Fault(**fault))

    @property
    def stats(self):
        return self.app[STATS_KEY]


async def start_facilitator(chain: Chain, name: str) -> DevnetFacilitator:
    faults = Faults()
    app = create_app(chain, faults, name=name)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return DevnetFacilitator(name, f"http://127.0.0.1:{port}", faults, app, runner)


@dataclass
class SidecarHandle:
    sidecar: Sidecar
    target: str
    channel: grpc.aio.Channel
    payments: payment_pb2_grpc.PaymentServiceStub = field(init=False)
    tracking: tracking_pb2_grpc.TrackingServiceStub = field(init=False)
    status: status_pb2_grpc.StatusServiceStub = field(init=False)

    def __post_init__(self) -> None:
        self.payments = payment_pb2_grpc.PaymentServiceStub(self.channel)
        self.tracking = tracking_pb2_grpc.TrackingServiceStub(self.channel)
        self.status = status_pb2_grpc.StatusServiceStub(self.channel)

    async def events(self, name: str, request_id: str) -> list[status_pb2.TelemetryEvent]:
        """The sidecar's telemetry events of that name for one request."""
        answer = await self.status.GetTelemetry(status_pb2.GetTelemetryRequest(limit=1000))
        return [event for event in answer.events if event.name == name and event.request_id == request_id]

    async def stop(self) -> None:
        await self.channel.close()
        await self.sidecar.stop(grace_s=1.0)


def sidecar_settings(database_url: str, spool_dir: Path, facilitator_urls: list[str], **overrides: Any) -> Settings:
    values: dict[str, Any] = dict(
        env="test",
        host="127.0.0.1",
        port=0,
        database_url=database_url,
        facilitator_urls=facilitator_urls,
        spool_dir=str(spool_dir),
        verify_timeout_s=2.0,
        settle_timeout_s=2.0,
        reconcile_window_s=2.0,
        reconcile_poll_s=0.05,
        tracking_flush_interval_s=0.01,
        recovery_interval_s=3600.0,
    )
    values.update(overrides)
    return Settings(**values)


async def start_sidecar(settings: Settings) -> SidecarHandle:
    sidecar = Sidecar(settings)
    port = await sidecar.start()
    target = f"127.0.0.1:{port}"
    return SidecarHandle(sidecar, target, grpc.aio.insecure_channel(target))


@contextlib.asynccontextmanager
async def devnet(count: int = 1) -> AsyncIterator[tuple[Chain, list[DevnetFacilitator]]]:
    chain = Chain()
    facilitators = [await start_facilitator(chain, f"devnet{i}") for i in range(count)]
    try:
        yield chain, facilitators
    finally:
        for facilitator in facilitators:
            await facilitator.runner.cleanup()


@dataclass
class PaidStack:
    """Devnet chain + one facilitator and the real sidecar over gRPC (a service
    under test, e.g. the gateway, can be attached)."""

    chain: Chain
    facilitator: DevnetFacilitator
    sidecar: SidecarHandle
    gateway: Any = None


@contextlib.asynccontextmanager
async def running_paid_stack(database_url: str, spool_dir: Path, **overrides: Any) -> AsyncIterator[PaidStack]:
    async with devnet(count=1) as (chain, (facilitator,)):
        settings = sidecar_settings(
            database_url,
            spool_dir,
            [facilitator.url],
            chain_rpc_urls={"eip155:84532": facilitator.url + "/rpc"},
            **overrides,
        )
        sidecar = await start_sidecar(settings)
        try:
            yield PaidStack(chain, facilitator, sidecar)
        finally:
            await sidecar.stop()
