"""The services a benchmark starts, each a process of its own on loopback: the
devnet facilitator, the sidecar, the gateway (rate limits off) and the SDK peers.

`wrap` turns a service's command line into another one that runs it (e.g. under
a profiler); such a service is stopped through its whole process group.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from devnet.chain import NETWORK
from devnet.up import FACILITATOR_READY, GATEWAY_READY, SIDECAR_READY

from . import services

Wrap = Callable[[list[str]], list[str]]

# bench/peer.py's ready line.
PEER_READY = re.compile(r"^peer (http://\S+:(\d+))\s*$")


async def _start(name: str, argv: list[str], env: dict[str, str], ready: re.Pattern[str], run_dir: Path,
                 wrap: Wrap | None) -> services.Service:  # fmt: skip
    return await services.start(name, wrap(argv) if wrap else argv, env, ready, run_dir, profiled=wrap is not None)


async def start_facilitator(run_dir: Path, name: str = "facilitator") -> services.Service:
    argv = services.python_module("devnet.facilitator", "--port", "0", "--name", name)
    return await _start(name, argv, services.child_env(), FACILITATOR_READY, run_dir, None)


async def start_sidecar(
    name: str, db_url: str, facilitator_url: str, run_dir: Path, *, wrap: Wrap | None = None, **env: str
) -> services.Service:
    """A sidecar paying through `facilitator_url`, reading the chain through its /rpc."""
    sidecar_env = services.child_env(
        DATABASE_URL=db_url,
        FACILITATOR_URLS=facilitator_url,
        CHAIN_RPC_URLS=f"{NETWORK}={facilitator_url}/rpc",
        PAYSIDECAR_HOST="127.0.0.1",
        PAYSIDECAR_PORT="0",
        PAYSIDECAR_SPOOL_DIR=str(run_dir / f"{name}-spool"),
        **env,
    )
    return await _start(name, services.python_module("sidecar.main"), sidecar_env, SIDECAR_READY, run_dir, wrap)


async def start_gateway(
    name: str, sidecar_port: int, run_dir: Path, *, wrap: Wrap | None = None, **env: str
) -> services.Service:
    gateway_env = services.child_env(
        GATEWAY_HOST="127.0.0.1",
        GATEWAY_PORT="0",
        GATEWAY_SIDECAR_TARGET=f"127.0.0.1:{sidecar_port}",
        GATEWAY_PAID_RATE_PER_S="0",  # 0 turns the per-client limits off (gateway/config.py)
        GATEWAY_FREE_RATE_PER_S="0",
        **env,
    )
    return await _start(name, services.python_module("gateway.main"), gateway_env, GATEWAY_READY, run_dir, wrap)


async def start_peer(
    facilitator_url: str, run_dir: Path, name: str = "peer", scheme: str = "exact"
) -> services.Service:
    """The SDK peer offering `scheme` (bench/peer.py: exact or batch-settlement)."""
    argv = services.python_module("bench.peer", "--facilitator", facilitator_url, "--scheme", scheme)
    return await _start(name, argv, services.child_env(), PEER_READY, run_dir, None)
