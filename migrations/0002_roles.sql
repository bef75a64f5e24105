-- A writer role (the sidecar) and a reader role (dashboards, operators), both
-- NOLOGIN group roles: grant them to real login users. Roles are cluster-wide,
-- so creation is skipped when they exist (another database on the same server
-- made them) or when the migrating user may not create roles; the grants are
-- per database and always applied when the role exists.
DO $$
DECLARE
    may_create boolean;
    role_name text;
BEGIN
    SELECT rolsuper OR rolcreaterole INTO may_create FROM pg_roles WHERE rolname = current_user;
    FOREACH role_name IN ARRAY ARRAY['paysidecar_writer', 'paysidecar_reader'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = role_name) THEN
            IF NOT may_create THEN
                RAISE NOTICE 'role % not created: % may not create roles', role_name, current_user;
                CONTINUE;
            END IF;
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN', role_name);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;  -- a migration of another database created it meanwhile
            END;
        END IF;
    END LOOP;

    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'paysidecar_writer') THEN
        -- DELETE is for retention pruning of tracking records.
        GRANT SELECT, INSERT, UPDATE, DELETE ON resource_call_records, payment_ledger TO paysidecar_writer;
        GRANT SELECT ON schema_migrations TO paysidecar_writer;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'paysidecar_reader') THEN
        GRANT SELECT ON resource_call_records, payment_ledger, schema_migrations TO paysidecar_reader;
    END IF;
END
$$;
