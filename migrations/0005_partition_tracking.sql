-- The tracking table partitioned by time (DESIGN §11): one partition per day (or
-- month, PAYSIDECAR_TRACKING_PARTITION_PERIOD), created ahead by the sidecar, so
-- retention drops whole partitions instead of deleting rows one by one, and a
-- query over a time range reads only the partitions of that range.
--
-- The table is converted in place: the existing table becomes the first partition,
-- covering everything before the next UTC midnight, with its rows and indexes as
-- they are (only the new primary key is built). An empty one is dropped instead.
-- Retention deletes its rows in batches as they age and drops it once the cutoff
-- has passed its upper bound, like any other partition.
--
-- The primary key is (id, "timestamp"): a partitioned table's unique keys must
-- include the partition key. Ids are random UUIDs minted once per record, so id
-- alone stays unique in practice; the tracking writer updates a row by id and the
-- START timestamp it keeps, so PostgreSQL looks in one partition only.

ALTER TABLE resource_call_records RENAME TO resource_call_records_legacy;
ALTER TABLE resource_call_records_legacy DROP CONSTRAINT resource_call_records_pkey;
ALTER INDEX resource_call_records_timestamp_idx RENAME TO resource_call_records_legacy_timestamp_idx;
ALTER INDEX resource_call_records_path_idx RENAME TO resource_call_records_legacy_path_idx;
ALTER INDEX resource_call_records_request_id_idx RENAME TO resource_call_records_legacy_request_id_idx;
ALTER INDEX resource_call_records_network_idx RENAME TO resource_call_records_legacy_network_idx;
ALTER INDEX resource_call_records_scheme_idx RENAME TO resource_call_records_legacy_scheme_idx;
ALTER INDEX resource_call_records_payer_idx RENAME TO resource_call_records_legacy_payer_idx;
ALTER INDEX resource_call_records_payment_verified_idx RENAME TO resource_call_records_legacy_payment_verified_idx;
ALTER INDEX resource_call_records_settlement_success_idx RENAME TO resource_call_records_legacy_settlement_success_idx;
ALTER INDEX resource_call_records_x402_version_idx RENAME TO resource_call_records_legacy_x402_version_idx;
ALTER INDEX resource_call_records_payment_nonce_idx RENAME TO resource_call_records_legacy_payment_nonce_idx;
ALTER INDEX resource_call_records_payload_hash_idx RENAME TO resource_call_records_legacy_payload_hash_idx;
ALTER INDEX resource_call_records_requirements_hash_idx RENAME TO resource_call_records_legacy_requirements_hash_idx;

-- Same columns, defaults, NOT NULLs and CHECK (the verified ⇒ no error rule of 0003).
CREATE TABLE resource_call_records (
    LIKE resource_call_records_legacy INCLUDING DEFAULTS INCLUDING CONSTRAINTS,
    PRIMARY KEY (id, "timestamp")
) PARTITION BY RANGE ("timestamp");

-- The indexes of DESIGN §6, as partitioned indexes: every partition gets its own,
-- and the legacy table's existing ones are attached as they are.
CREATE INDEX resource_call_records_timestamp_idx ON resource_call_records ("timestamp" DESC);
CREATE INDEX resource_call_records_path_idx ON resource_call_records (path);
CREATE INDEX resource_call_records_request_id_idx ON resource_call_records (request_id);
CREATE INDEX resource_call_records_network_idx ON resource_call_records ((payment ->> 'network'));
CREATE INDEX resource_call_records_scheme_idx ON resource_call_records ((payment ->> 'scheme'));
CREATE INDEX resource_call_records_payer_idx ON resource_call_records ((payment ->> 'payer'));
CREATE INDEX resource_call_records_payment_verified_idx ON resource_call_records (payment_verified);
CREATE INDEX resource_call_records_settlement_success_idx ON resource_call_records ((settlement ->> 'success'));
CREATE INDEX resource_call_records_x402_version_idx ON resource_call_records (x402_version);
CREATE INDEX resource_call_records_payment_nonce_idx ON resource_call_records (payment_nonce);
CREATE INDEX resource_call_records_payload_hash_idx ON resource_call_records (payload_hash);
CREATE INDEX resource_call_records_requirements_hash_idx ON resource_call_records (requirements_hash);

-- Rows no range partition covers land here, so an insert never fails for lack of
-- a partition (the sidecar's job fell behind, a clock far ahead). Creating a
-- partition moves its rows out of here first.
CREATE TABLE resource_call_records_default PARTITION OF resource_call_records DEFAULT;

-- The range partitions with their bounds (NULL: unbounded below; both NULL: the
-- default partition), read from the catalog so nothing depends on names.
CREATE VIEW resource_call_records_partitions AS
SELECT c.oid::regclass AS partition,
       b.bound = 'DEFAULT' AS is_default,
       (regexp_match(b.bound, 'FROM \(''([^'']*)''\)'))[1]::timestamptz AS lower_bound,
       (regexp_match(b.bound, 'TO \(''([^'']*)''\)'))[1]::timestamptz AS upper_bound
FROM pg_inherits i
JOIN pg_class c ON c.oid = i.inhrelid
CROSS JOIN LATERAL (SELECT pg_get_expr(c.relpartbound, c.oid) AS bound) b
WHERE i.inhparent = 'resource_call_records'::regclass;

-- Grants are per table: a partition gets the same as the parent, so a role may read
-- or write a partition directly as it may through the parent.
CREATE FUNCTION resource_call_records_grant_like(source regclass, target regclass) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    granted record;
BEGIN
    FOR granted IN
        SELECT a.privilege_type, a.grantee
        FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) a
        WHERE c.oid = source AND a.grantee <> c.relowner
    LOOP
        EXECUTE format('GRANT %s ON %s TO %s', granted.privilege_type, target,
                       CASE WHEN granted.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(granted.grantee)) END);
    END LOOP;
END
$$;

-- Create the missing partitions of [since, until), one per period ('day' or
-- 'month', UTC; a partition next to an existing one ends at its bound). Each is made
-- apart, filled with the rows of its range the default partition holds, then
-- attached: ATTACH locks the parent only against other schema changes, so the
-- writer and readers keep going. Returns how many were created.
-- SECURITY DEFINER: creating a partition takes the table's owner, and the sidecar
-- may log in as a member of paysidecar_writer.
CREATE FUNCTION resource_call_records_create_partitions(period text, since timestamptz, until timestamptz)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET TimeZone = 'UTC' AS $$
DECLARE
    parent CONSTANT regclass := 'resource_call_records'::regclass;
    default_partition CONSTANT regclass := 'resource_call_records_default'::regclass;
    lower timestamptz;
    upper timestamptz;
    covered timestamptz;
    part text;
    made integer := 0;
BEGIN
    IF period IS NULL OR period NOT IN ('day', 'month') THEN
        RAISE EXCEPTION 'partition period must be day or month, not %', coalesce(period, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF since < now() - interval '400 days' OR until > now() + interval '400 days' THEN
        RAISE EXCEPTION 'partitions are made at most 400 days back or ahead' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- One maintainer at a time (several sidecars run this job).
    PERFORM pg_advisory_xact_lock(hashtext('resource_call_records partitions'));
    lower := date_trunc(period, since);
    WHILE lower < until LOOP
        SELECT upper_bound INTO covered FROM resource_call_records_partitions
        WHERE coalesce(lower_bound, '-infinity') <= lower AND upper_bound > lower;
        IF FOUND THEN
            lower := covered;
            CONTINUE;
        END IF;
        upper := date_trunc(period, lower) + ('1 ' || period)::interval;
        SELECT least(upper, min(lower_bound)) INTO upper FROM resource_call_records_partitions WHERE lower_bound > lower;
        part := format('%I.%I', (SELECT relnamespace::regnamespace::text FROM pg_class WHERE oid = parent),
                       'resource_call_records_p' || to_char(lower, CASE WHEN lower = date_trunc('day', lower)
                                                                        THEN 'YYYYMMDD' ELSE 'YYYYMMDD"_"HH24MISS' END));
        EXECUTE format('CREATE TABLE %s (LIKE %s INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', part, parent);
        EXECUTE format('WITH moved AS (DELETE FROM %s WHERE "timestamp" >= $1 AND "timestamp" < $2 RETURNING *) '
                       'INSERT INTO %s SELECT * FROM moved', default_partition, part)
            USING lower, upper;
        EXECUTE format('ALTER TABLE %s ATTACH PARTITION %s FOR VALUES FROM (%L) TO (%L)', parent, part, lower, upper);
        PERFORM resource_call_records_grant_like(parent, part::regclass);
        made := made + 1;
        lower := upper;
    END LOOP;
    RETURN made;
END
$$;

-- Drop every range partition that lies wholly before `cutoff`; return how many
-- rows they held. The rows are counted first, then the partitions dropped at the
-- end of the transaction, so the parent is locked (DROP takes it exclusively)
-- only for the drops. SECURITY DEFINER for the same reason as above.
CREATE FUNCTION resource_call_records_drop_partitions(cutoff timestamptz) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER AS $$
DECLARE
    old regclass[];
    part regclass;
    held bigint;
    dropped bigint := 0;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('resource_call_records partitions'));
    SELECT coalesce(array_agg(partition), '{}') INTO old
    FROM resource_call_records_partitions WHERE upper_bound <= cutoff;
    FOREACH part IN ARRAY old LOOP
        EXECUTE format('SELECT count(*) FROM %s', part) INTO held;
        dropped := dropped + held;
    END LOOP;
    FOREACH part IN ARRAY old LOOP
        EXECUTE format('DROP TABLE %s', part);
    END LOOP;
    RETURN dropped;
END
$$;

-- The functions run with this schema first and pg_temp last, whatever the caller's
-- search_path: a caller's temporary table cannot stand in for ours.
DO $$
DECLARE
    fn text;
BEGIN
    FOREACH fn IN ARRAY ARRAY[
        'resource_call_records_grant_like(regclass, regclass)',
        'resource_call_records_create_partitions(text, timestamptz, timestamptz)',
        'resource_call_records_drop_partitions(timestamptz)'
    ] LOOP
        EXECUTE format('ALTER FUNCTION %s SET search_path = pg_catalog, %I, pg_temp', fn, current_schema());
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', fn);
    END LOOP;
END
$$;

-- The old table's grants (0002) go to the new parent and the default partition;
-- the writer role may run partition upkeep and retention, both roles read the view.
SELECT resource_call_records_grant_like('resource_call_records_legacy', 'resource_call_records');
SELECT resource_call_records_grant_like('resource_call_records', 'resource_call_records_default');
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'paysidecar_writer') THEN
        GRANT EXECUTE ON FUNCTION resource_call_records_create_partitions(text, timestamptz, timestamptz),
                                  resource_call_records_drop_partitions(timestamptz) TO paysidecar_writer;
        GRANT SELECT ON resource_call_records_partitions TO paysidecar_writer;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'paysidecar_reader') THEN
        GRANT SELECT ON resource_call_records_partitions TO paysidecar_reader;
    END IF;
END
$$;

-- The old rows stay where they are, as the first partition; an empty old table goes.
DO $$
DECLARE
    newest timestamptz;
BEGIN
    SELECT max("timestamp") INTO newest FROM resource_call_records_legacy;
    IF newest IS NULL THEN
        DROP TABLE resource_call_records_legacy;
    ELSE
        EXECUTE format(
            'ALTER TABLE resource_call_records ATTACH PARTITION resource_call_records_legacy '
            'FOR VALUES FROM (MINVALUE) TO (%L)',
            date_trunc('day', greatest(newest, now()), 'UTC') + interval '1 day');
    END IF;
END
$$;

-- Today's partition and three days ahead to start with; the sidecar keeps them ahead
-- from now on (PAYSIDECAR_TRACKING_PARTITION_AHEAD_DAYS).
SELECT resource_call_records_create_partitions('day', now(), now() + interval '3 days');
