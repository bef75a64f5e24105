"""The live tracking table and sidecar/store/schema.py describe the same thing,
column for column and index for index, both ways; the table is partitioned as
the code says and every partition carries every index."""

from __future__ import annotations

import asyncpg

from paysidecar.v1 import tracking_pb2
from sidecar.store.schema import COLUMNS, INDEXES, PARTITION_KEY, TABLE, Column, Index

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
LIVE_PARTITION_KEY = "SELECT pg_get_partkeydef($1::regclass)"
# (partition, index of the table) pairs where the partition has no index attached to it.
PARTITIONS_WITHOUT_INDEX = """
SELECT part.relname AS partition, parent_index.relname AS index
FROM pg_inherits partition_of
JOIN pg_class part ON part.oid = partition_of.inhrelid
CROSS JOIN pg_index parent_idx
JOIN pg_class parent_index ON parent_index.oid = parent_idx.indexrelid
WHERE partition_of.inhparent = $1::regclass AND parent_idx.indrelid = $1::regclass
  AND NOT EXISTS (SELECT 1 FROM pg_inherits index_of JOIN pg_index idx ON idx.indexrelid = index_of.inhrelid
                  WHERE index_of.inhparent = parent_idx.indexrelid AND idx.indrelid = part.oid AND idx.indisvalid)
ORDER BY 1, 2
"""


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
    partition_key = await conn.fetchval(LIVE_PARTITION_KEY, TABLE)
    if partition_key != PARTITION_KEY:
        differences.append(f"table partitioned by {partition_key}, schema.py says {PARTITION_KEY}")
    differences += [
        f"partition {row['partition']} has no {row['index']}" for row in await conn.fetch(PARTITIONS_WITHOUT_INDEX, TABLE)
    ]
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


async def test_parity_check_sees_the_table_before_partitioning(database_before_partitioning):
    conn = await asyncpg.connect(database_before_partitioning)
    try:
        differences = "\n".join(await schema_differences(conn))
    finally:
        await conn.close()
    assert "table partitioned by None" in differences
    assert "index only in the database: Index(name='resource_call_records_pkey', columns='(id)'" in differences


async def test_parity_check_sees_a_partition_without_an_index(database_url):
    conn = await asyncpg.connect(database_url)
    try:
        # ON ONLY: the table gets the index, its partitions do not (yet).
        await conn.execute(f"CREATE INDEX url_idx ON ONLY {TABLE} (url)")
        differences = await schema_differences(conn)
    finally:
        await conn.close()
    assert "partition resource_call_records_default has no url_idx" in differences
    lacking = [d for d in differences if d.endswith(" has no url_idx")]
    assert len(lacking) >= 2  # the default partition and the days ahead


def test_the_api_record_has_a_field_for_each_column_and_no_other():
    """TrackingService's Record is converted field by field from the column of
    the same name (sidecar/api/tracking_servicer.py): a column the API misses, or
    a field no column fills, would go unnoticed there."""
    fields = [field.name for field in tracking_pb2.Record.DESCRIPTOR.fields]
    assert fields == [column.name for column in COLUMNS]
