"""The gateway on a real HTTP port, pointed at any sidecar target (by default a
closed port: free routes work, paid routes must answer 503)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from gateway.app import create_app
from gateway.config import Settings
from gateway.http_server import GatewayRunner
from tests.support.net import closed_port
from tests.support.stack import PaidStack, running_paid_stack

ADMIN_TOKEN = "admin-test-token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@dataclass
class Gateway:
    url: str
    app: web.Application
    session: aiohttp.ClientSession

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.session.get(self.url + path, **kwargs)

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.session.request(method, self.url + path, **kwargs)


@contextlib.asynccontextmanager
async def running_gateway(**overrides: Any) -> AsyncIterator[Gateway]:
    values: dict[str, Any] = {
        "port": 0,
        "sidecar_target": f"127.0.0.1:{closed_port()}",
        "sidecar_timeout_s": 2.0,
        "admin_token": ADMIN_TOKEN,
        "paid_rate_per_s": 0,
        "free_rate_per_s": 0,
        "env": "test",
    }
    values.update(overrides)
    app = create_app(Settings(**values))
    runner = GatewayRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession() as session:
            yield Gateway(f"http://127.0.0.1:{port}", app, session)
    finally:
        await runner.cleanup()


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    async with running_gateway() as handle:
        yield handle


@pytest.fixture
async def sidecar_stack(database_url, tmp_path) -> AsyncIterator[PaidStack]:
    """The devnet and a real sidecar, no gateway."""
    async with running_paid_stack(database_url, tmp_path / "spool") as stack:
        yield stack


@pytest.fixture
async def paid_stack(sidecar_stack) -> AsyncIterator[PaidStack]:
    target = sidecar_stack.sidecar.target
    async with running_gateway(sidecar_target=target, sidecar_settle_timeout_s=20.0) as gateway:
        sidecar_stack.gateway = gateway
        yield sidecar_stack


@pytest.fixture
async def channel_stack(database_url, tmp_path) -> AsyncIterator[PaidStack]:
    """The devnet, a sidecar whose routes offer both schemes, and the gateway. The
    collector is off: these tests count what reaches the facilitator, and claim and
    sweep themselves (tests/collector covers the collector)."""
    async with running_paid_stack(
        database_url, tmp_path / "spool", schemes=["exact", "batch-settlement"], collector_enabled=False
    ) as stack:
        async with running_gateway(sidecar_target=stack.sidecar.target, sidecar_settle_timeout_s=20.0) as gateway:
            stack.gateway = gateway
            yield stack
