"""Services of other stacks charging through the sidecar: the Node/Express example
(a child process) and a Starlette app with the ASGI middleware (uvicorn in this
event loop), each against the real sidecar, devnet facilitator and chain."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import uvicorn

from devnet.up import Child
from devnet.wallets import MERCHANT_ADDRESS
from tests.support.stack import PaidStack, running_paid_stack

from .weather_asgi import weather_app

NODE_EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "node-express"
NODE_READY = re.compile(r"node-express (http://127\.0\.0\.1:\d+)$")
READY_TIMEOUT_S = 20.0
NPM_CI_TIMEOUT_S = 300.0

Launcher = Callable[[str], contextlib.AbstractAsyncContextManager[str]]


# The route both services name: its terms live in the sidecar's config only.
WEATHER_ROUTE = {
    "weather": {"price": "$0.001", "pay_to": MERCHANT_ADDRESS, "network": "eip155:84532"},
    "weather-rows": {"price": "$0.001", "price_per_row": 7, "pay_to": MERCHANT_ADDRESS},
}


@pytest.fixture
async def stack(database_url, tmp_path) -> AsyncIterator[PaidStack]:
    async with running_paid_stack(database_url, tmp_path / "spool", routes=WEATHER_ROUTE) as paid:
        yield paid


@pytest.fixture(scope="session")
def node_example() -> Path:
    """The Node example with its locked dependencies installed (`npm ci`, once)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are not installed, so the Node/Express example cannot run")
    if not (NODE_EXAMPLE / "node_modules").is_dir():
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"],
            cwd=NODE_EXAMPLE,
            check=True,
            timeout=NPM_CI_TIMEOUT_S,
            capture_output=True,
        )
    return NODE_EXAMPLE


@contextlib.asynccontextmanager
async def node_express(sidecar_target: str) -> AsyncIterator[str]:
    """examples/node-express as a child process; yields its base URL."""
    env = {
        **os.environ,
        "PORT": "0",
        "SIDECAR_TARGET": sidecar_target,
        "ROUTE": "weather",
    }
    child = await Child.start("node-express", ["node", str(NODE_EXAMPLE / "server.js")], env, NODE_READY)
    try:
        ready = await child.wait_ready(READY_TIMEOUT_S)
        yield ready.group(1)
    finally:
        await child.stop(timeout=5.0)


@contextlib.asynccontextmanager
async def serve_asgi(app: Any) -> AsyncIterator[str]:
    """Serves an ASGI app with uvicorn on 127.0.0.1:0 in this event loop; yields its base URL."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="auto", ws="none", log_level="warning"))
    serving = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(READY_TIMEOUT_S):
            while not server.started:
                if serving.done():
                    serving.result()  # raises the startup error, if any
                    raise RuntimeError("uvicorn stopped before it started")
                await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        await serving


def starlette_weather(sidecar_target: str) -> contextlib.AbstractAsyncContextManager[str]:
    return serve_asgi(weather_app(sidecar_target))


@pytest.fixture(params=["node-express", "starlette"])
def launch(request) -> Launcher:
    """Starts one of the two services, pointed at a sidecar target."""
    if request.param == "node-express":
        request.getfixturevalue("node_example")
        return node_express
    return starlette_weather


@dataclass
class Service:
    url: str
    session: aiohttp.ClientSession
    route_key: str = field(default="GET /weather")

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.session.get(self.url + path, **kwargs)


@pytest.fixture
async def service(launch, stack) -> AsyncIterator[Service]:
    async with launch(stack.sidecar.target) as url, aiohttp.ClientSession() as session:
        yield Service(url, session)
