-- Idempotent creation: a retried POST /responses with the same Idempotency-Key (per owner)
-- finds the response the first one created; the unique index makes two concurrent retries
-- create one response, not two. Null for responses created without a key.
ALTER TABLE {schema}.responses ADD COLUMN IF NOT EXISTS idempotency_key text;
CREATE UNIQUE INDEX IF NOT EXISTS responses_owner_idempotency_key_idx
    ON {schema}.responses (owner, idempotency_key) WHERE idempotency_key IS NOT NULL;

-- Emails compare case-insensitively: an email owner is now stored as 'email:' and the
-- lowercased address. Owners stored before keep being found by the same person.
UPDATE {schema}.responses SET owner = 'email:' || lower(substr(owner, 7))
WHERE owner LIKE 'email:%' AND owner <> 'email:' || lower(substr(owner, 7));
