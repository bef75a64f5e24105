"""The code's definition of the tracking table `resource_call_records`.

The migrations create the table; this module states what the code relies on.
The tracking writer takes its column list and types from here, and a test
compares it with the live schema both ways (a column or index missing on
either side fails) and checks the partitioning. Types and index definitions
are spelled as PostgreSQL prints them (`format_type`, `pg_indexes.indexdef`).
"""

from __future__ import annotations

from dataclasses import dataclass

TABLE = "resource_call_records"
# Partitioned by time (migrations/0005_partition_tracking.sql, sidecar/store/partitions.py),
# as pg_get_partkeydef() prints it; every partition has every index below.
PARTITION_KEY = 'RANGE ("timestamp")'


@dataclass(frozen=True)
class Column:
    name: str
    sql_type: str  # as format_type() prints it
    nullable: bool = True
    default: str | None = None  # as information_schema.columns.column_default prints it

    @property
    def max_length(self) -> int | None:
        """The n of `character varying(n)`, else None."""
        if self.sql_type.startswith("character varying("):
            return int(self.sql_type[len("character varying(") : -1])
        return None


@dataclass(frozen=True)
class Index:
    name: str
    columns: str  # what follows "USING btree " in pg_indexes.indexdef
    unique: bool = False


COLUMNS: tuple[Column, ...] = (
    Column("id", "uuid", nullable=False),
    Column("request_id", "text"),
    Column("method", "character varying(10)"),
    Column("path", "text"),
    Column("route_key", "text"),
    Column("url", "text"),
    Column("timestamp", "timestamp with time zone", nullable=False, default="now()"),
    Column("payment_required", "boolean"),
    Column("payment_verified", "boolean"),
    Column("verification_error", "text"),
    Column("payment", "jsonb"),
    Column("settlement", "jsonb"),
    Column("upto_session", "jsonb"),
    Column("x402_version", "integer"),
    Column("payment_nonce", "text"),
    Column("payment_valid_before", "text"),
    Column("payload_hash", "text"),
    Column("requirements_hash", "text"),
    Column("payment_signature_hash", "text"),
    Column("response_status", "integer", default="0"),
    Column("response_time_ms", "integer", default="0"),
    Column("handler_executed", "boolean"),
    Column("request", "jsonb", nullable=False),
    Column("route_config", "jsonb"),
    Column("metadata", "jsonb"),
)

COLUMNS_BY_NAME: dict[str, Column] = {column.name: column for column in COLUMNS}

INDEXES: tuple[Index, ...] = (
    # A partitioned table's unique keys include its partition key.
    Index("resource_call_records_pkey", '(id, "timestamp")', unique=True),
    Index("resource_call_records_timestamp_idx", '("timestamp" DESC)'),
    Index("resource_call_records_path_idx", "(path)"),
    Index("resource_call_records_request_id_idx", "(request_id)"),
    Index("resource_call_records_network_idx", "(((payment ->> 'network'::text)))"),
    Index("resource_call_records_scheme_idx", "(((payment ->> 'scheme'::text)))"),
    Index("resource_call_records_payer_idx", "(((payment ->> 'payer'::text)))"),
    Index("resource_call_records_payment_verified_idx", "(payment_verified)"),
    Index("resource_call_records_settlement_success_idx", "(((settlement ->> 'success'::text)))"),
    Index("resource_call_records_x402_version_idx", "(x402_version)"),
    Index("resource_call_records_payment_nonce_idx", "(payment_nonce)"),
    Index("resource_call_records_payload_hash_idx", "(payload_hash)"),
    Index("resource_call_records_requirements_hash_idx", "(requirements_hash)"),
)
