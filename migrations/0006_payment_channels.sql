-- Batch-settlement channels (DESIGN §12): one row per payment channel the sidecar
-- has been paid through. The row is the server's channel state of the x402 binding
-- (chargedCumulativeAmount, the best voucher we hold and its signature, the mirror
-- of the contract's fields) and the reservation that serialises the requests of one
-- channel across every replica on this database.
--
-- Money invariants the code keeps (sidecar/store/channels.py):
--   charged_cumulative <= signed_max_claimable once we hold a voucher: never charged
--   above what the payer signed (a channel first seen after a loss of our state starts
--   at what the chain says was claimed, with no voucher yet);
--   charged_cumulative moves only by a commit under the holder's reservation, after
--   the handler answered and before the content leaves.
CREATE TABLE payment_channels (
    channel_id             text PRIMARY KEY,          -- 0x + 64 lowercase hex: EIP-712 hash of the config
    network                text NOT NULL,             -- CAIP-2, e.g. eip155:84532
    -- The channel's immutable config (ChannelConfig), as checksummed addresses.
    payer                  text NOT NULL,
    payer_authorizer       text NOT NULL,
    receiver               text NOT NULL,
    receiver_authorizer    text NOT NULL,
    token                  text NOT NULL,
    withdraw_delay         integer NOT NULL,
    salt                   text NOT NULL,
    -- What we charged, and the voucher that backs it (the instrument a claim uses).
    charged_cumulative     numeric(78, 0) NOT NULL DEFAULT 0,
    signed_max_claimable   numeric(78, 0) NOT NULL DEFAULT 0,
    voucher_signature      text,                      -- never logged, never in tracking records
    -- The contract's fields as last read (from a facilitator's answer or the chain).
    balance                numeric(78, 0) NOT NULL DEFAULT 0,
    total_claimed          numeric(78, 0) NOT NULL DEFAULT 0,
    withdraw_requested_at  bigint NOT NULL DEFAULT 0, -- chain time (unix s) of a pending withdrawal, 0: none
    refund_nonce           numeric(78, 0) NOT NULL DEFAULT 0,
    synced_at              timestamptz,               -- when the mirror above was read
    last_request_at        timestamptz,
    -- The request between Authorize and Settle/Release on this channel, if any: its
    -- claim token, until when it holds the channel, and the voucher it brought.
    reserved_by            uuid,
    reserved_until         timestamptz,
    reserved_kind          text,                      -- deposit | voucher | refund
    reserved_amount        numeric(78, 0),            -- the most the request may be charged
    reserved_max_claimable numeric(78, 0),
    reserved_signature     text,
    reserved_tracking_id   uuid,                      -- the request's tracking record
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT payment_channels_charged_within_signed
        CHECK (voucher_signature IS NULL OR charged_cumulative <= signed_max_claimable),
    CONSTRAINT payment_channels_reserved_kind CHECK (reserved_kind IN ('deposit', 'voucher', 'refund'))
);

-- The collector (a later change) claims per receiver and token the channels whose
-- charges are not claimed yet, most urgent first when a withdrawal is pending.
CREATE INDEX payment_channels_unclaimed_idx
    ON payment_channels (network, receiver, token)
    WHERE charged_cumulative > total_claimed;
CREATE INDEX payment_channels_withdrawing_idx
    ON payment_channels (withdraw_requested_at)
    WHERE withdraw_requested_at > 0;
CREATE INDEX payment_channels_payer_idx ON payment_channels (payer);

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'paysidecar_writer') THEN
        GRANT SELECT, INSERT, UPDATE ON payment_channels TO paysidecar_writer;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'paysidecar_reader') THEN
        GRANT SELECT ON payment_channels TO paysidecar_reader;
    END IF;
END
$$;
