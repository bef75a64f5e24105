-- The x402 payment-identifier extension (sidecar/payments/idempotency.py): a
-- payer's id names one purchase. The first payment carrying it binds it to the
-- payer and to the fingerprint of the request it paid for; a later payment with
-- the same id is never settled, but served from the bound payment or refused.
-- The bound payment's receipt (transaction, network, payer) is its ledger row's;
-- nothing of a payload or a signature is kept here either.
CREATE TABLE payment_identifiers (
    payer              text NOT NULL,         -- lower-case address that signed the authorization
    identifier         text NOT NULL,         -- the client's id: 16-128 of [A-Za-z0-9_-]
    fingerprint        text NOT NULL,         -- SHA-256 of scheme, network, asset, amount, payTo, route, method, path, query
    payment_id         text NOT NULL UNIQUE REFERENCES payment_ledger (payment_id),
    bound_at           timestamptz NOT NULL DEFAULT now(),  -- the idempotency window starts here
    replay_token       uuid,                  -- the claim of the replay being served, if any
    replay_at          timestamptz,
    replay_tracking_id uuid,                  -- that replay's tracking record
    PRIMARY KEY (payer, identifier)
);

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'paysidecar_writer') THEN
        GRANT SELECT, INSERT, UPDATE ON payment_identifiers TO paysidecar_writer;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'paysidecar_reader') THEN
        GRANT SELECT ON payment_identifiers TO paysidecar_reader;
    END IF;
END
$$;
