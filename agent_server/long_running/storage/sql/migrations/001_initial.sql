-- The engine's two tables. {schema} is replaced by the validated schema name.

CREATE TABLE IF NOT EXISTS {schema}.responses (
    response_id        text PRIMARY KEY,
    -- The caller's identity from the forwarded headers; '' for anonymous callers.
    owner              text NOT NULL,
    status             text NOT NULL CHECK (status IN
                           ('queued', 'in_progress', 'completed', 'failed', 'cancelled', 'incomplete')),
    -- The lease: 0 while queued, then 1, 2, ... Every write by an attempt is
    -- conditioned on this still being its number.
    attempt_number     integer NOT NULL DEFAULT 0,
    worker_id          text,
    heartbeat_at       timestamptz,
    created_at         timestamptz NOT NULL,
    started_at         timestamptz,
    updated_at         timestamptz NOT NULL DEFAULT now(),
    request            jsonb NOT NULL,
    -- Only non-credential headers (identity, request id); never tokens.
    request_headers    jsonb NOT NULL DEFAULT '{{}}',
    model              text NOT NULL,
    output             jsonb,
    error              jsonb,
    incomplete_details jsonb,
    trace_id           text
);

-- The queue, the stale-run scan and the retention sweep each read one of these.
CREATE INDEX IF NOT EXISTS responses_queued_idx
    ON {schema}.responses (created_at) WHERE status = 'queued';
CREATE INDEX IF NOT EXISTS responses_running_idx
    ON {schema}.responses (heartbeat_at) WHERE status = 'in_progress';
CREATE INDEX IF NOT EXISTS responses_finished_idx
    ON {schema}.responses (updated_at) WHERE status IN ('completed', 'failed', 'cancelled', 'incomplete');

CREATE TABLE IF NOT EXISTS {schema}.events (
    response_id     text NOT NULL REFERENCES {schema}.responses (response_id) ON DELETE CASCADE,
    sequence_number integer NOT NULL,
    attempt_number  integer NOT NULL,
    type            text NOT NULL,
    -- The exact JSON of the SSE frame (with sequence_number and response_id),
    -- stored as text so serving it is a copy, not a re-serialisation.
    data            text NOT NULL,
    PRIMARY KEY (response_id, sequence_number)
);
