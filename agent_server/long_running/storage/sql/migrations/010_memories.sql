-- Long-term memory: what the agent remembers about a person across conversations.
-- Each memory belongs to the identity that saved it (owner) and is seen by nobody else.
-- response_id names the response whose tool call saved it, with no foreign key: deleting
-- that response keeps the memory. Memories have no retention: they stay until deleted.
CREATE TABLE IF NOT EXISTS {schema}.memories (
    memory_id    text PRIMARY KEY,
    owner        text NOT NULL,
    text         text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    response_id  text,
    -- The idempotency key of the tool call that saved it: a call that runs again saves nothing twice.
    save_key     text,
    -- Full-text search, which needs no extension. Searches are always per owner, whose memories
    -- are few (bounded per identity), so the owner index finds them and no GIN index is kept.
    search_terms tsvector GENERATED ALWAYS AS (to_tsvector('english', text)) STORED
);
CREATE INDEX IF NOT EXISTS memories_owner_idx ON {schema}.memories (owner, created_at DESC, memory_id DESC);
CREATE UNIQUE INDEX IF NOT EXISTS memories_save_key_idx
    ON {schema}.memories (owner, save_key) WHERE save_key IS NOT NULL;
