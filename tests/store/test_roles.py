"""The reader role only reads; the writer role writes tracking and ledger rows;
migrations also run for an owner who may not create roles."""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from sidecar.store.migrate import apply_migrations
from tests.support.postgres import with_database

INSERT_RECORD = "INSERT INTO resource_call_records (id, request) VALUES ($1, '{}')"
INSERT_LEDGER = """
INSERT INTO payment_ledger (payment_id, state, claim_token, route_key, scheme, network, asset, pay_to,
                            amount, x402_version, requirements, payload_hash, requirements_hash)
VALUES ($1, 'verified', $2, 'r', 'exact', 'eip155:84532', '0xa', '0xb', 1000, 2, '{}', 'h', 'h')
"""


async def test_reader_cannot_write_and_writer_can(database_url):
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("SET ROLE paysidecar_reader")
        assert await conn.fetchval("SELECT count(*) FROM resource_call_records") == 0
        assert await conn.fetchval("SELECT count(*) FROM payment_ledger") == 0
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(INSERT_RECORD, uuid.uuid4())
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(INSERT_LEDGER, "p1", uuid.uuid4())
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("DELETE FROM resource_call_records")

        await conn.execute("RESET ROLE")
        await conn.execute("SET ROLE paysidecar_writer")
        record_id = uuid.uuid4()
        await conn.execute(INSERT_RECORD, record_id)
        await conn.execute("UPDATE resource_call_records SET response_status = 200 WHERE id = $1", record_id)
        await conn.execute(INSERT_LEDGER, "p1", uuid.uuid4())
        await conn.execute("UPDATE payment_ledger SET state = 'settling' WHERE payment_id = 'p1'")
        assert await conn.execute("DELETE FROM resource_call_records WHERE id = $1", record_id) == "DELETE 1"
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations") > 0
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("DELETE FROM schema_migrations")
    finally:
        await conn.close()


async def test_payment_identifiers_are_the_writers_to_bind_and_the_readers_to_read(database_url):
    conn = await asyncpg.connect(database_url)
    try:
        privileges = {
            (role, privilege): await conn.fetchval(
                "SELECT has_table_privilege($1, 'payment_identifiers', $2)", role, privilege
            )
            for role in ("paysidecar_writer", "paysidecar_reader")
            for privilege in ("SELECT", "INSERT", "UPDATE", "DELETE")
        }
    finally:
        await conn.close()
    assert privileges == {
        ("paysidecar_writer", "SELECT"): True,
        ("paysidecar_writer", "INSERT"): True,
        ("paysidecar_writer", "UPDATE"): True,
        ("paysidecar_writer", "DELETE"): False,
        ("paysidecar_reader", "SELECT"): True,
        ("paysidecar_reader", "INSERT"): False,
        ("paysidecar_reader", "UPDATE"): False,
        ("paysidecar_reader", "DELETE"): False,
    }


def _as_user(url: str, user: str, password: str) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, f"{user}:{password}@{host}", parts.path, parts.query, parts.fragment))


async def test_migrations_run_for_an_owner_who_cannot_create_roles(database_url, pg_server_url):
    owner, password = "t_owner_" + uuid.uuid4().hex[:12], uuid.uuid4().hex
    database = "t_" + uuid.uuid4().hex[:16]
    admin = await asyncpg.connect(pg_server_url)
    try:
        await admin.execute(f"CREATE ROLE {owner} LOGIN NOCREATEROLE PASSWORD '{password}'")
        await admin.execute(f'CREATE DATABASE "{database}" OWNER {owner}')
        url = _as_user(with_database(pg_server_url, database), owner, password)
        applied = await apply_migrations(url)
        assert len(applied) >= 3
        conn = await asyncpg.connect(url)
        try:
            # The roles exist (the superuser's migrations made them); the owner granted to them.
            assert await conn.fetchval("SELECT has_table_privilege('paysidecar_writer', 'payment_ledger', 'INSERT')")
            assert not await conn.fetchval(
                "SELECT has_table_privilege('paysidecar_reader', 'resource_call_records', 'INSERT')"
            )
        finally:
            await conn.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.execute(f"DROP ROLE IF EXISTS {owner}")
        await admin.close()
