"""Stack fixtures shared by every test: a real PostgreSQL with migrations applied."""

from __future__ import annotations

import pytest

from sidecar.store.migrate import apply_migrations
from tests.support.postgres import create_database, drop_database, postgres_server_url


@pytest.fixture(scope="session")
def pg_server_url():
    with postgres_server_url() as url:
        yield url


@pytest.fixture
async def database_url(pg_server_url):
    """A fresh database with every migration applied, dropped after the test."""
    url = await create_database(pg_server_url)
    await apply_migrations(url)
    yield url
    await drop_database(pg_server_url, url)
