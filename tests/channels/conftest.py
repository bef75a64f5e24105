"""A devnet with two facilitators on one chain and sidecars over real gRPC whose
routes offer batch-settlement (tests/sidecar's fixtures, channel settings on top)."""

from __future__ import annotations

import pytest

from tests.sidecar.conftest import chain, chain_and_facilitators, facilitators, make_sidecar  # noqa: F401

# Every test here pays channels; the mirror is fresh for a minute unless a test says otherwise.
CHANNEL_SETTINGS = {"schemes": ["batch-settlement", "exact"], "channel_busy_wait_s": 0.5}


@pytest.fixture
def make_channel_sidecar(make_sidecar):
    async def make(urls=None, **overrides):
        return await make_sidecar(urls, **{**CHANNEL_SETTINGS, **overrides})

    return make


@pytest.fixture
async def sidecar(make_channel_sidecar):
    handle = await make_channel_sidecar()
    yield handle
    await handle.stop()
