"""A devnet with two facilitators on one chain and a sidecar over real gRPC."""

from __future__ import annotations

import pytest

from tests.support.stack import devnet, sidecar_settings, start_sidecar


@pytest.fixture
async def chain_and_facilitators():
    async with devnet(count=2) as (chain, facilitators):
        yield chain, facilitators


@pytest.fixture
def chain(chain_and_facilitators):
    return chain_and_facilitators[0]


@pytest.fixture
def facilitators(chain_and_facilitators):
    return chain_and_facilitators[1]


@pytest.fixture
def make_sidecar(database_url, tmp_path, facilitators):
    """Start sidecars on the shared database; stopped after the test."""
    started = []

    async def make(urls=None, **overrides):
        if "chain_rpc_urls" not in overrides:
            overrides["chain_rpc_urls"] = {"eip155:84532": facilitators[0].url + "/rpc"}
        settings = sidecar_settings(
            database_url,
            tmp_path / f"spool{len(started)}",
            urls or [facilitators[0].url],
            **overrides,
        )
        handle = await start_sidecar(settings)
        started.append(handle)
        return handle

    yield make
    return


@pytest.fixture
async def sidecar(make_sidecar):
    handle = await make_sidecar()
    yield handle
    await handle.stop()
