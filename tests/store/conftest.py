"""Fixtures of the store tests: a pool on the per-test database, and a fresh
database with no migrations for the tests that apply them themselves."""

from __future__ import annotations

import pytest

from sidecar.store.db import create_pool
from tests.support.postgres import create_database, drop_database


@pytest.fixture
async def pool(database_url):
    pool = await create_pool(database_url, min_size=1, max_size=4)
    yield pool
    await pool.close()


@pytest.fixture
async def empty_database_url(pg_server_url):
    """A database with nothing in it, not even schema_migrations."""
    url = await create_database(pg_server_url)
    yield url
    await drop_database(pg_server_url, url)
