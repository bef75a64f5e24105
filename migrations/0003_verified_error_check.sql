-- A verified payment carries no verification error (DESIGN §6). Old rows written
-- before the rule are fixed first, so the constraint can be added on any data.
UPDATE resource_call_records
SET verification_error = NULL
WHERE payment_verified AND verification_error IS NOT NULL;

ALTER TABLE resource_call_records
    ADD CONSTRAINT resource_call_records_verified_without_error
    CHECK (NOT payment_verified OR verification_error IS NULL);
