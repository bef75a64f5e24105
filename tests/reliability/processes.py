"""The sidecar as a real child process (`python -m sidecar.main`), so tests can
SIGKILL or SIGTERM it like an orchestrator would. Built on the launcher's Child,
which forwards the child's output; here it goes to a buffer the tests read."""

from __future__ import annotations

import io
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from devnet.up import SIDECAR_READY, Child
from paysidecar.v1 import payment_pb2_grpc, status_pb2_grpc, tracking_pb2_grpc

REPO = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 30.0
EXIT_TIMEOUT_S = 20.0


def sidecar_env(database_url: str, facilitator_url: str, spool_dir: Path, **settings: Any) -> dict[str, str]:
    """The environment of a sidecar child on loopback; `settings` are PAYSIDECAR_*
    names without the prefix (e.g. settle_timeout_s=0.2)."""
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "PYTHONUNBUFFERED": "1",
        "DATABASE_URL": database_url,
        "FACILITATOR_URLS": facilitator_url,
        "CHAIN_RPC_URLS": f"eip155:84532={facilitator_url}/rpc",
        "PAYSIDECAR_ENV": "test",
        "PAYSIDECAR_PORT": "0",
        "PAYSIDECAR_SPOOL_DIR": str(spool_dir),
        "PAYSIDECAR_TRACKING_FLUSH_INTERVAL_S": "0.01",
    }
    for name, value in settings.items():
        env[f"PAYSIDECAR_{name.upper()}"] = str(value)
    return env


@dataclass
class SidecarProcess:
    child: Child
    output: io.StringIO
    target: str
    channel: grpc.aio.Channel = field(init=False)

    def __post_init__(self) -> None:
        self.channel = grpc.aio.insecure_channel(self.target)
        self.payments = payment_pb2_grpc.PaymentServiceStub(self.channel)
        self.tracking = tracking_pb2_grpc.TrackingServiceStub(self.channel)
        self.status = status_pb2_grpc.StatusServiceStub(self.channel)

    @classmethod
    async def start(cls, env: dict[str, str]) -> SidecarProcess:
        output = io.StringIO()
        child = await Child.start("sidecar", [sys.executable, "-m", "sidecar.main"], env, SIDECAR_READY, output)
        try:
            ready = await child.wait_ready(READY_TIMEOUT_S)
        except BaseException:
            await child.stop(timeout=1.0)
            raise
        return cls(child, output, ready.group(1).removeprefix("grpc://"))

    @property
    def pid(self) -> int:
        return self.child.process.pid

    @property
    def returncode(self) -> int | None:
        return self.child.process.returncode

    def log(self) -> str:
        """Everything the child wrote to stdout and stderr so far."""
        return self.output.getvalue()

    async def kill(self) -> None:
        """SIGKILL: no shutdown code runs, like a crash or an OOM kill."""
        self.child.process.kill()
        await self.child.wait_exit(EXIT_TIMEOUT_S)
        await self.channel.close()

    async def terminate(self) -> int:
        """SIGTERM and wait for the graceful exit; its exit code."""
        self.child.process.terminate()
        code = await self.child.wait_exit(EXIT_TIMEOUT_S)
        await self.channel.close()
        return code

    async def stop(self) -> None:
        """Teardown: stop it however it is (idempotent)."""
        await self.child.stop(timeout=5.0)
        await self.channel.close()
