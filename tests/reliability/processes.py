"""The sidecar and the gateway as real child processes (`python -m sidecar.main`,
`python -m gateway.main`), so tests can SIGKILL or SIGTERM them like an
orchestrator would. Built on the launcher's Child, which forwards a child's
stdout and stderr; here into a buffer the tests read."""

from __future__ import annotations

import io
import os
import re
import sys
from pathlib import Path
from typing import Any

import grpc

from devnet.up import GATEWAY_READY, SIDECAR_READY, Child
from paysidecar.v1 import payment_pb2_grpc, status_pb2_grpc, tracking_pb2_grpc

REPO = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 30.0
EXIT_TIMEOUT_S = 20.0


def child_env(**variables: Any) -> dict[str, str]:
    """This process's environment, able to import the project, plus `variables`."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    env.update({name: str(value) for name, value in variables.items()})
    return env


def sidecar_env(database_url: str, facilitator_url: str, spool_dir: Path, **settings: Any) -> dict[str, str]:
    """The environment of a sidecar child on loopback; `settings` are PAYSIDECAR_*
    names without the prefix (e.g. settle_timeout_s=0.2)."""
    return child_env(
        DATABASE_URL=database_url,
        FACILITATOR_URLS=facilitator_url,
        CHAIN_RPC_URLS=f"eip155:84532={facilitator_url}/rpc",
        PAYSIDECAR_ENV="test",
        PAYSIDECAR_PORT=0,
        PAYSIDECAR_SPOOL_DIR=spool_dir,
        PAYSIDECAR_TRACKING_FLUSH_INTERVAL_S=0.01,
        **{f"PAYSIDECAR_{name.upper()}": value for name, value in settings.items()},
    )


def gateway_env(sidecar_target: str, **settings: Any) -> dict[str, str]:
    """The environment of a gateway child; `settings` are GATEWAY_* names without the prefix."""
    return child_env(
        GATEWAY_PORT=0,
        GATEWAY_ENV="test",
        GATEWAY_SIDECAR_TARGET=sidecar_target,
        GATEWAY_PAID_RATE_PER_S=0,
        GATEWAY_FREE_RATE_PER_S=0,
        **{f"GATEWAY_{name.upper()}": value for name, value in settings.items()},
    )


class ServiceProcess:
    """A child that prints a ready line with its address; its output is kept."""

    def __init__(self, child: Child, output: io.StringIO, address: str) -> None:
        self.child = child
        self.output = output
        self.address = address

    @classmethod
    async def launch(cls, name: str, module: str, env: dict[str, str], ready: re.Pattern[str]):
        output = io.StringIO()
        child = await Child.start(name, [sys.executable, "-m", module], env, ready, output)
        try:
            match = await child.wait_ready(READY_TIMEOUT_S)
        except BaseException:
            await child.stop(timeout=1.0)
            raise
        return cls(child, output, match.group(1))

    @property
    def pid(self) -> int:
        return self.child.process.pid

    def log(self) -> str:
        """Everything the child wrote to stdout and stderr so far."""
        return self.output.getvalue()

    async def kill(self) -> None:
        """SIGKILL: no shutdown code runs, like a crash or an OOM kill. The test's
        channel stays open, so calls in flight fail as the client would see them
        (UNAVAILABLE), not as cancelled by closing it; close it with closed()."""
        self.child.process.kill()
        await self.child.wait_exit(EXIT_TIMEOUT_S)

    async def terminate(self) -> int:
        """SIGTERM and wait for the graceful exit; its exit code."""
        self.child.process.terminate()
        return await self.exited()

    async def exited(self) -> int:
        """Wait for the child to exit; its exit code."""
        code = await self.child.wait_exit(EXIT_TIMEOUT_S)
        await self.closed()
        return code

    async def stop(self) -> None:
        """Teardown: stop it whatever its state (idempotent)."""
        await self.child.stop(timeout=5.0)
        await self.closed()

    async def closed(self) -> None:
        """Release what the test holds on the child."""


class GatewayProcess(ServiceProcess):
    @classmethod
    async def start(cls, env: dict[str, str]) -> GatewayProcess:
        return await cls.launch("gateway", "gateway.main", env, GATEWAY_READY)

    @property
    def url(self) -> str:
        return self.address


class SidecarProcess(ServiceProcess):
    def __init__(self, child: Child, output: io.StringIO, address: str) -> None:
        super().__init__(child, output, address)
        self.target = address.removeprefix("grpc://")
        self.channel = grpc.aio.insecure_channel(self.target)
        self.payments = payment_pb2_grpc.PaymentServiceStub(self.channel)
        self.tracking = tracking_pb2_grpc.TrackingServiceStub(self.channel)
        self.status = status_pb2_grpc.StatusServiceStub(self.channel)

    @classmethod
    async def start(cls, env: dict[str, str]) -> SidecarProcess:
        return await cls.launch("sidecar", "sidecar.main", env, SIDECAR_READY)

    async def closed(self) -> None:
        await self.channel.close()
