"""Apply the numbered SQL files in migrations/ in order, once each.

Each file runs in its own transaction under a database-wide advisory lock, so
concurrent runners (several replicas starting at once) apply every file exactly
once. Applied files are recorded in `schema_migrations` with a SHA-256 of their
text; an applied file whose text changed is an error, never silently re-run:
migrations are additive, a change is a new file.

`python -m sidecar.store.migrate` applies them to $PAYSIDECAR_DATABASE_URL or
$DATABASE_URL.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import logging
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import asyncpg

logger = logging.getLogger(__name__)

# sidecar/store/migrate.py -> the repository root holds migrations/ (also in an editable install).
DEFAULT_DIRECTORY = Path(__file__).resolve().parents[2] / "migrations"

# Any constant works as long as every runner uses the same one; this is "paysidecar" in ASCII.
_LOCK_KEY = 0x7061797369646563

_FILE_NAME = re.compile(r"^(\d+)_([A-Za-z0-9_\-]+)\.sql$")

CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""
# A session lock: closing the connection releases it, whatever happened meanwhile.
LOCK = "SELECT pg_advisory_lock($1)"
APPLIED = "SELECT version, name, checksum FROM schema_migrations ORDER BY version"
RECORD = "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)"


class MigrationError(Exception):
    """The migrations on disk and the ones recorded in the database disagree."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str  # the file name, e.g. "0001_initial.sql"
    sql: str
    checksum: str  # sha256 hex of the text with normalised line endings


def load_migrations(directory: Path) -> list[Migration]:
    """The migration files of `directory`, in version order."""
    if not directory.is_dir():
        raise MigrationError(f"migrations directory not found: {directory}")
    migrations: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_NAME.match(path.name)
        if match is None:
            raise MigrationError(f"migration file name must look like 0001_name.sql: {path.name}")
        version = int(match.group(1))
        if version in migrations:
            raise MigrationError(f"two migrations share version {version}: {migrations[version].name}, {path.name}")
        # Normalised so a checkout that rewrites line endings does not look like an edit.
        sql = path.read_text(encoding="utf-8").replace("\r\n", "\n")
        checksum = hashlib.sha256(sql.encode("utf-8")).hexdigest()
        migrations[version] = Migration(version, path.name, sql, checksum)
    return [migrations[v] for v in sorted(migrations)]


def _check_applied(migrations: list[Migration], applied: dict[int, tuple[str, str]]) -> None:
    for migration in migrations:
        recorded = applied.get(migration.version)
        if recorded is None:
            continue
        name, checksum = recorded
        if name != migration.name or checksum != migration.checksum:
            raise MigrationError(
                f"migration {migration.name} differs from the applied {name} "
                f"(checksum {checksum[:12]} in the database, {migration.checksum[:12]} on disk); "
                "applied migrations must not change: add a new file instead"
            )


async def apply_migrations(dsn: str, directory: Path | None = None) -> list[str]:
    """Apply every migration not applied yet; return the file names applied now."""
    migrations = load_migrations(directory or DEFAULT_DIRECTORY)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(LOCK, _LOCK_KEY)
        await conn.execute(CREATE_TABLE)
        applied = {row["version"]: (row["name"], row["checksum"]) for row in await conn.fetch(APPLIED)}
        _check_applied(migrations, applied)
        done: list[str] = []
        for migration in migrations:
            if migration.version in applied:
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(RECORD, migration.version, migration.name, migration.checksum)
            logger.info("applied migration %s", migration.name)
            done.append(migration.name)
        return done
    finally:
        await conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sidecar.store.migrate", description=__doc__.splitlines()[0])
    parser.add_argument("--directory", type=Path, default=None, help="migrations directory (default: the repo's)")
    args = parser.parse_args(argv)
    dsn = os.environ.get("PAYSIDECAR_DATABASE_URL") or os.environ.get("DATABASE_URL")
    if not dsn:
        print("error: set DATABASE_URL (or PAYSIDECAR_DATABASE_URL) to the PostgreSQL URL", file=sys.stderr)
        return 2
    try:
        applied = asyncio.run(apply_migrations(dsn, args.directory))
    except MigrationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: database unreachable: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except (ValueError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        print(f"error: migration failed: {type(exc).__name__}: {exc}".replace("\n", " "), file=sys.stderr)
        return 1
    for name in applied:
        print(f"applied {name}")
    if not applied:
        print("up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
