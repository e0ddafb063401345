-- Webhooks: one row per event and receiver URL, inserted by finish_responses in the
-- transaction that ends a background response, so a process that dies right after still
-- delivers it. event_id is both the body's id and the webhook-id header: the same for every
-- receiver and on every attempt, so a receiver can drop repeats. A worker claims a due row
-- by moving next_attempt_at past the end of its send (a lease); another worker takes it
-- again only if that one died mid-send. No foreign key: an event outlives its response.
CREATE TABLE IF NOT EXISTS {schema}.webhook_deliveries (
    delivery_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id        text NOT NULL,
    url             text NOT NULL,
    type            text NOT NULL,
    response_id     text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    -- pending, delivered, failed (retried past the horizon) or stopped (the URL answered 410)
    status          text NOT NULL DEFAULT 'pending',
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    UNIQUE (event_id, url)
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_due_idx
    ON {schema}.webhook_deliveries (url, next_attempt_at) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS webhook_deliveries_updated_idx ON {schema}.webhook_deliveries (updated_at);

-- Receiver URLs that answered 410 Gone: no deliveries to them until a worker starts again.
CREATE TABLE IF NOT EXISTS {schema}.webhook_stopped_urls (
    url        text PRIMARY KEY,
    stopped_at timestamptz NOT NULL DEFAULT now()
);
