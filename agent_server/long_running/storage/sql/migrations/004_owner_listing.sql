-- GET /responses lists one owner's responses newest first, paged by (created_at, response_id).
CREATE INDEX IF NOT EXISTS responses_owner_created_idx
    ON {schema}.responses (owner, created_at DESC, response_id DESC);
