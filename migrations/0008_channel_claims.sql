-- The collector (DESIGN §12): the claims and settles it sends for batch-settlement
-- channels, and what it learned about each channel it could not claim.
--
-- A row is written before its transaction is sent (state 'pending'), so a replica
-- that dies mid-claim leaves its intent behind; the next collector run decides the
-- outcome by reading the contract (`channels(channelId)` for a claim, `receivers`
-- for a settle), never by guessing. Claims are cumulative on chain (a row claims up
-- to a total, and a lower or equal total is a no-op), so a claim sent again after
-- an intent found nothing on chain can never claim twice.
CREATE TABLE channel_collections (
    id           uuid PRIMARY KEY,
    kind         text NOT NULL,              -- claim | settle
    network      text NOT NULL,
    receiver     text NOT NULL,
    token        text NOT NULL,
    -- claim: [{"channel_id", "total_claimed" (the target), "claimed_before", "max_claimable"}]
    -- settle: [] (it sweeps what was claimed for receiver and token)
    channels     jsonb NOT NULL DEFAULT '[]',
    -- claim: what the rows add to totalClaimed; settle: what it swept (known once settled).
    amount       numeric(78, 0) NOT NULL DEFAULT 0,
    state        text NOT NULL DEFAULT 'pending',
    transaction  text NOT NULL DEFAULT '',
    facilitator  text NOT NULL DEFAULT '',
    reason       text NOT NULL DEFAULT '',   -- our code when not done
    decided_by   text NOT NULL DEFAULT '',   -- facilitator | chain
    created_at   timestamptz NOT NULL DEFAULT now(),
    decided_at   timestamptz,
    CONSTRAINT channel_collections_kind CHECK (kind IN ('claim', 'settle')),
    -- pending: recorded, not answered yet; done: on chain; failed: refused, nothing
    -- happened; lapsed: not on chain when asked after a doubt (its channels are claimed
    -- again by a later run); in_doubt: the chain could not be read yet.
    CONSTRAINT channel_collections_state CHECK (state IN ('pending', 'done', 'failed', 'lapsed', 'in_doubt'))
);

CREATE INDEX channel_collections_open_idx ON channel_collections (created_at) WHERE state IN ('pending', 'in_doubt');
CREATE INDEX channel_collections_created_idx ON channel_collections (created_at DESC);
-- Claims on chain since the last sweep of their receiver and token: what a settle run sweeps.
CREATE INDEX channel_collections_account_idx
    ON channel_collections (network, receiver, token, kind, decided_at DESC) WHERE state = 'done';

-- A channel left out of a claim (withdrawn, drained, bad signature, ...): why and
-- when; it is tried again after the collector's retry interval.
ALTER TABLE payment_channels
    ADD COLUMN claim_excluded_reason text,
    ADD COLUMN claim_excluded_at     timestamptz;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'paysidecar_writer') THEN
        GRANT SELECT, INSERT, UPDATE ON channel_collections TO paysidecar_writer;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'paysidecar_reader') THEN
        GRANT SELECT ON channel_collections TO paysidecar_reader;
    END IF;
END
$$;
