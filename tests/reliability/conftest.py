"""Fixtures of the reliability tests: one devnet facilitator in this process (so a
test can arm its faults and read its chain); sidecars in this process over real
gRPC (`make_sidecar`) or as child processes (`spawn_sidecar`), and gateways as
child processes (`spawn_gateway`)."""

from __future__ import annotations

import pytest

from tests.support.stack import SidecarHandle, devnet, sidecar_settings, start_sidecar

from .processes import GatewayProcess, SidecarProcess, gateway_env, sidecar_env


@pytest.fixture
async def chain_and_facilitator():
    async with devnet(count=1) as (chain, facilitators):
        yield chain, facilitators[0]


@pytest.fixture
def chain(chain_and_facilitator):
    return chain_and_facilitator[0]


@pytest.fixture
def facilitator(chain_and_facilitator):
    return chain_and_facilitator[1]


@pytest.fixture
async def spawn_sidecar(database_url, facilitator, tmp_path):
    """Start `python -m sidecar.main` children on the test's database; each shares
    one spool directory, as restarts of one deployment would. Stopped after the test."""
    started: list[SidecarProcess] = []

    async def spawn(env: dict[str, str] | None = None, **settings) -> SidecarProcess:
        """`settings` are PAYSIDECAR_* names without the prefix; `env` raw variables."""
        variables = sidecar_env(database_url, facilitator.url, tmp_path / "spool", **settings)
        process = await SidecarProcess.start({**variables, **(env or {})})
        started.append(process)
        return process

    yield spawn
    for process in started:
        await process.stop()


@pytest.fixture
async def make_sidecar(database_url, tmp_path, facilitator):
    """Start sidecars in this process (over real gRPC); stopped after the test."""
    started: list[SidecarHandle] = []

    async def make(**overrides) -> SidecarHandle:
        overrides.setdefault("chain_rpc_urls", {"eip155:84532": facilitator.url + "/rpc"})
        spool = tmp_path / f"inproc-spool{len(started)}"
        handle = await start_sidecar(sidecar_settings(database_url, spool, [facilitator.url], **overrides))
        started.append(handle)
        return handle

    yield make
    for handle in started:
        await handle.stop()


@pytest.fixture
async def spawn_gateway():
    """Start `python -m gateway.main` children; stopped after the test."""
    started: list[GatewayProcess] = []

    async def spawn(sidecar_target: str, env: dict[str, str] | None = None, **settings) -> GatewayProcess:
        """`settings` are GATEWAY_* names without the prefix; `env` raw variables."""
        process = await GatewayProcess.start({**gateway_env(sidecar_target, **settings), **(env or {})})
        started.append(process)
        return process

    yield spawn
    for process in started:
        await process.stop()
