"""The gateway app on a real loopback port, in this process, in front of a sidecar."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp import web

from gateway.app import create_app
from gateway.config import Settings
from gateway.http_server import GatewayRunner


@contextlib.asynccontextmanager
async def running_gateway(sidecar_target: str, **overrides: Any) -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    """(base URL, client session); rate limits off unless overridden."""
    values: dict[str, Any] = {
        "port": 0,
        "sidecar_target": sidecar_target,
        "sidecar_timeout_s": 5.0,
        "paid_rate_per_s": 0,
        "free_rate_per_s": 0,
        "env": "test",
        **overrides,
    }
    runner = GatewayRunner(create_app(Settings(**values)), shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession() as session:
            yield f"http://127.0.0.1:{port}", session
    finally:
        await runner.cleanup()
