"""Fixtures of the store tests: a pool on the per-test database, a fresh
database with no migrations for the tests that apply them themselves, and one
migrated only up to the tracking table before it was partitioned."""

from __future__ import annotations

import shutil

import pytest

from sidecar.store.db import create_pool
from sidecar.store.migrate import DEFAULT_DIRECTORY, apply_migrations
from tests.support.postgres import create_database, drop_database

PARTITIONING = 5  # the migration that partitions the tracking table


@pytest.fixture
async def pool(database_url):
    pool = await create_pool(database_url, min_size=1, max_size=4)
    yield pool
    await pool.close()


@pytest.fixture
async def pool_factory():
    """Pools on other databases than the per-test one, closed after the test."""
    pools = []

    async def make(url: str):
        pools.append(await create_pool(url, min_size=1, max_size=2))
        return pools[-1]

    yield make
    for made in pools:
        await made.close()


@pytest.fixture
async def empty_database_url(pg_server_url):
    """A database with nothing in it, not even schema_migrations."""
    url = await create_database(pg_server_url)
    yield url
    await drop_database(pg_server_url, url)


def migrations_before(version: int, directory):
    """A copy of the migrations numbered below `version`, in `directory`."""
    directory.mkdir()
    for path in sorted(DEFAULT_DIRECTORY.glob("*.sql")):
        if int(path.name.split("_")[0]) < version:
            shutil.copy(path, directory / path.name)
    return directory


@pytest.fixture
async def database_before_partitioning(empty_database_url, tmp_path):
    """A database migrated up to the unpartitioned tracking table."""
    await apply_migrations(empty_database_url, migrations_before(PARTITIONING, tmp_path / "migrations"))
    return empty_database_url
