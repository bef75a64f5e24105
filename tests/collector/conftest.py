"""One devnet facilitator in this process (its chain and faults at hand), sidecars
whose routes offer batch-settlement in this process (`make_sidecar`) or as child
processes (`spawn_sidecar`), all on the test's database. Channels have the
shortest withdraw delay, so a test can let it pass; the collector runs when a test
says (Collect), unless a test turns it on."""

from __future__ import annotations

import pytest

from tests.reliability.conftest import chain, chain_and_facilitator, facilitator  # noqa: F401
from tests.reliability.conftest import make_sidecar as make_plain_sidecar  # noqa: F401
from tests.reliability.conftest import spawn_sidecar as spawn_plain_sidecar  # noqa: F401

from .support import COLLECTOR_SETTINGS


@pytest.fixture
def make_sidecar(make_plain_sidecar):  # noqa: F811
    async def make(**overrides):
        return await make_plain_sidecar(**{**COLLECTOR_SETTINGS, **overrides})

    return make


@pytest.fixture
def spawn_sidecar(spawn_plain_sidecar):  # noqa: F811
    async def spawn(**settings):
        values = {**COLLECTOR_SETTINGS, **settings}
        values["schemes"] = ",".join(values["schemes"])
        return await spawn_plain_sidecar(**values)

    return spawn


@pytest.fixture
async def sidecar(make_sidecar):
    return await make_sidecar()
