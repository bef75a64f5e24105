"""Migrations: applied once each, in order, recorded with checksums, never edited."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import sys
from pathlib import Path

import asyncpg
import pytest

from sidecar.store.migrate import DEFAULT_DIRECTORY, MigrationError, apply_migrations

REPO = Path(__file__).resolve().parents[2]
FILES = sorted(REPO.joinpath("migrations").glob("*.sql"))


async def _recorded(url: str) -> list[tuple[int, str, str]]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT version, name, checksum FROM schema_migrations ORDER BY version")
    finally:
        await conn.close()
    return [(row["version"], row["name"], row["checksum"]) for row in rows]


def test_default_directory_is_the_repositorys():
    assert DEFAULT_DIRECTORY == REPO / "migrations"
    assert len(FILES) >= 3


async def test_every_migration_is_recorded_with_its_checksum(database_url):
    expected = [(int(path.name.split("_")[0]), path.name, hashlib.sha256(path.read_bytes()).hexdigest()) for path in FILES]
    assert await _recorded(database_url) == expected


async def test_rerunning_applies_nothing(database_url):
    before = await _recorded(database_url)
    assert await apply_migrations(database_url) == []
    assert await _recorded(database_url) == before


async def test_an_edited_applied_migration_is_refused(database_url, tmp_path):
    directory = tmp_path / "migrations"
    shutil.copytree(DEFAULT_DIRECTORY, directory)
    first = directory / FILES[0].name
    first.write_text(first.read_text() + "\n-- edited after it was applied\n")
    with pytest.raises(MigrationError, match=FILES[0].name):
        await apply_migrations(database_url, directory)


async def test_concurrent_runners_apply_each_file_once(empty_database_url):
    results = await asyncio.gather(*(apply_migrations(empty_database_url) for _ in range(3)))
    applied = [name for result in results for name in result]
    assert sorted(applied) == [path.name for path in FILES]
    assert len(await _recorded(empty_database_url)) == len(FILES)


async def _run_cli(env: dict[str, str]) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sidecar.store.migrate",
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode, out.decode(), err.decode()


def _env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "PAYSIDECAR_DATABASE_URL")}
    env.update(values)
    return env


async def test_cli_prints_one_line_per_applied_file(empty_database_url):
    code, out, _ = await _run_cli(_env(DATABASE_URL=empty_database_url))
    assert code == 0
    assert out.splitlines() == [f"applied {path.name}" for path in FILES]
    code, out, _ = await _run_cli(_env(DATABASE_URL=empty_database_url))
    assert (code, out.strip()) == (0, "up to date")


async def test_cli_fails_with_one_clear_line(tmp_path):
    code, out, err = await _run_cli(_env(DATABASE_URL=f"postgresql://nobody@/none?host={tmp_path}"))
    assert code != 0
    assert out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ")

    code, _, err = await _run_cli(_env())
    assert code != 0 and "DATABASE_URL" in err
