"""The live tracking table and sidecar/store/schema.py describe the same thing,
column for column and index for index, both ways."""

from __future__ import annotations

import asyncpg

from sidecar.store.schema import COLUMNS, INDEXES, TABLE, Column, Index

LIVE_COLUMNS = """
SELECT c.column_name, format_type(a.atttypid, a.atttypmod) AS sql_type,
       c.is_nullable = 'YES' AS nullable, c.column_default
FROM information_schema.columns c
JOIN pg_attribute a
  ON a.attrelid = format('%I.%I', c.table_schema, c.table_name)::regclass AND a.attname = c.column_name
WHERE c.table_schema = 'public' AND c.table_name = $1
ORDER BY c.ordinal_position
"""
LIVE_INDEXES = "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' AND tablename = $1"


async def schema_differences(conn: asyncpg.Connection) -> list[str]:
    live_columns = [
        Column(row["column_name"], row["sql_type"], row["nullable"], row["column_default"])
        for row in await conn.fetch(LIVE_COLUMNS, TABLE)
    ]
    live_indexes = {
        Index(row["indexname"], row["indexdef"].split(" USING btree ", 1)[1], row["indexdef"].startswith("CREATE UNIQUE"))
        for row in await conn.fetch(LIVE_INDEXES, TABLE)
    }
    differences = [f"column only in the database: {c}" for c in live_columns if c not in COLUMNS]
    differences += [f"column only in schema.py: {c}" for c in COLUMNS if c not in live_columns]
    if not differences and live_columns != list(COLUMNS):
        differences.append("columns are in another order")
    differences += [f"index only in the database: {i}" for i in live_indexes - set(INDEXES)]
    differences += [f"index only in schema.py: {i}" for i in set(INDEXES) - live_indexes]
    return differences


async def test_live_schema_matches_the_code(database_url):
    conn = await asyncpg.connect(database_url)
    try:
        assert await schema_differences(conn) == []
    finally:
        await conn.close()


async def test_parity_check_sees_drift_either_way(database_url):
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(f"ALTER TABLE {TABLE} ADD COLUMN surprise text")
        await conn.execute(f"CREATE INDEX surprise_idx ON {TABLE} (surprise)")
        await conn.execute("DROP INDEX resource_call_records_payer_idx")
        await conn.execute(f"ALTER TABLE {TABLE} DROP COLUMN upto_session")
        await conn.execute(f"ALTER TABLE {TABLE} ALTER COLUMN url TYPE varchar(100)")
        differences = "\n".join(await schema_differences(conn))
    finally:
        await conn.close()
    assert "column only in the database: Column(name='surprise'" in differences
    assert "column only in schema.py: Column(name='upto_session'" in differences
    assert "column only in the database: Column(name='url', sql_type='character varying(100)'" in differences
    assert "index only in the database: Index(name='surprise_idx'" in differences
    assert "index only in schema.py: Index(name='resource_call_records_payer_idx'" in differences
