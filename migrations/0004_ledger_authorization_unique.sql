-- One EIP-3009 authorization (payer, nonce on one token and network) can back only
-- one ledger row, whatever wrapper (resource, extensions) the payload comes in:
-- otherwise a re-wrapped payload would get a second payment id, and its failed
-- settle ("nonce used") would look like a paid one on the chain.
CREATE UNIQUE INDEX IF NOT EXISTS payment_ledger_authorization_key
    ON payment_ledger (network, lower(asset), lower(payer), lower(nonce));
