-- Tracking of every call to a paid route, and the payment ledger that makes a
-- payment settle once and serve once (DESIGN §4 rule 2, §6).

CREATE TABLE resource_call_records (
    id                     uuid PRIMARY KEY,
    request_id             text,
    method                 varchar(10),
    path                   text,
    route_key              text,
    url                    text,
    "timestamp"            timestamptz NOT NULL DEFAULT now(),
    payment_required       boolean,
    payment_verified       boolean,
    verification_error     text,
    payment                jsonb,      -- scheme, network, asset, amount, payer, pay_to; never the signature
    settlement             jsonb,      -- success, transaction, network, payer, error_reason, facilitator
    upto_session           jsonb,
    x402_version           integer,
    payment_nonce          text,
    payment_valid_before   text,
    payload_hash           text,       -- SHA-256 of the RFC 8785 canonical payload
    requirements_hash      text,
    payment_signature_hash text,
    response_status        integer DEFAULT 0,
    response_time_ms       integer DEFAULT 0,
    handler_executed       boolean,
    request                jsonb NOT NULL,  -- method, headers minus secrets, query, client ip, user agent
    route_config           jsonb,
    metadata               jsonb       -- request id, facilitator attempts, trace id
);

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

CREATE TABLE payment_ledger (
    payment_id        text PRIMARY KEY,   -- payment-identifier extension id, else SHA-256 of the canonical payload
    state             text NOT NULL CHECK (state IN (
                          'verified', 'settling', 'settled', 'settled_unserved',
                          'redeeming', 'unknown', 'failed', 'released')),
    claim_token       uuid NOT NULL,      -- who holds the current claim
    route_key         text NOT NULL,
    resource          text,
    scheme            text NOT NULL,
    network           text NOT NULL,
    asset             text NOT NULL,
    pay_to            text NOT NULL,
    amount            numeric(78, 0) NOT NULL,
    payer             text,
    nonce             text,
    valid_before      numeric(78, 0),
    x402_version      integer NOT NULL,
    facilitator       text,               -- the facilitator that verified; settle goes only there
    requirements      jsonb NOT NULL,     -- the exact requirements verified (no signature)
    transaction       text,
    settle_reason     text,
    reconciled_by     text,               -- 'facilitator' | 'chain'
    payload_hash      text NOT NULL,
    requirements_hash text NOT NULL,
    tracking_id       uuid,
    served            boolean NOT NULL DEFAULT false,
    served_at         timestamptz,
    settle_attempts   integer NOT NULL DEFAULT 0,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX payment_ledger_state_updated_at_idx ON payment_ledger (state, updated_at);
CREATE INDEX payment_ledger_payer_idx ON payment_ledger (payer);
