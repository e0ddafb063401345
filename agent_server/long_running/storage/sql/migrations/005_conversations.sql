-- Conversations: what finished responses committed, in order, per conversation.
-- Only the ending statement (finish_responses) adds a response's items, so a
-- crashed attempt's partial output never joins.
CREATE TABLE IF NOT EXISTS {schema}.conversations (
    conversation_id  text PRIMARY KEY,
    -- The identity that created it; nobody else sees it.
    owner            text NOT NULL,
    -- A Databricks session key (custom_inputs.session_id / thread_id, context.conversation_id).
    session_key      text,
    metadata         jsonb NOT NULL DEFAULT '{{}}',
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    -- Items are numbered 0 .. item_count - 1.
    item_count       integer NOT NULL DEFAULT 0,
    -- The newest response stored in it: continuing it (previous_response_id) appends here,
    -- continuing an older one branches into a new conversation.
    last_response_id text
);
CREATE UNIQUE INDEX IF NOT EXISTS conversations_session_idx
    ON {schema}.conversations (owner, session_key) WHERE session_key IS NOT NULL;

CREATE TABLE IF NOT EXISTS {schema}.conversation_items (
    conversation_id text NOT NULL REFERENCES {schema}.conversations (conversation_id) ON DELETE CASCADE,
    position        integer NOT NULL,
    -- The response whose final write added it (NULL: given to POST /conversations).
    response_id     text,
    item            jsonb NOT NULL,
    PRIMARY KEY (conversation_id, position)
);

-- A response's conversation and how many of its items the handler sees (set when
-- the first attempt starts, so every attempt sees the same history). Nullable, no
-- default: catalog changes only; responses stored before have no conversation.
ALTER TABLE {schema}.responses ADD COLUMN IF NOT EXISTS conversation_id text;
ALTER TABLE {schema}.responses ADD COLUMN IF NOT EXISTS history_end integer;
-- A conversation's unfinished responses (double-texting, the queue's one-at-a-time rule).
CREATE INDEX IF NOT EXISTS responses_conversation_unfinished_idx
    ON {schema}.responses (conversation_id, created_at) WHERE status IN ('queued', 'in_progress');
