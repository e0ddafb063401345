-- Finished tool calls, one row per call: a resumed attempt is given them as
-- input items and serves a repeated call from here instead of running it again.
-- call_key is the call's idempotency key (response id, tool name, arguments
-- digest, occurrence), the same in every attempt. Deleted with the response.
CREATE TABLE IF NOT EXISTS {schema}.tool_calls (
    response_id    text NOT NULL REFERENCES {schema}.responses (response_id) ON DELETE CASCADE,
    call_key       text NOT NULL,
    attempt_number integer NOT NULL,
    name           text NOT NULL,
    arguments      jsonb NOT NULL,
    output         jsonb NOT NULL,
    call_id        text NOT NULL,
    recorded_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (response_id, call_key)
);
