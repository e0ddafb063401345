-- Every SQL statement the engine runs, by name. {schema} is the validated
-- schema name; %(name)s are bound parameters (never interpolated).
-- Format: "-- name: <name>", a one-line description, the statement.

-- name: create_migrations_table
-- The schema and the table that records which migrations ran.
CREATE SCHEMA IF NOT EXISTS {schema};
CREATE TABLE IF NOT EXISTS {schema}.schema_migrations (
    version    integer PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- name: lock_migrations
-- Serialise concurrent start-ups (several workers) for the rest of the transaction.
SELECT pg_advisory_xact_lock(hashtext('agent_server_migrations:' || %(schema)s));

-- name: applied_migrations
-- Versions already applied.
SELECT version FROM {schema}.schema_migrations;

-- name: record_migration
-- Mark a migration as applied.
INSERT INTO {schema}.schema_migrations (version) VALUES (%(version)s);

-- name: ping
-- Is the database reachable?
SELECT 1 AS ok;

-- name: insert_response
-- Create a response with its event 0 (response.created); wake idle workers if queued.
WITH r AS (
    INSERT INTO {schema}.responses
        (response_id, owner, status, attempt_number, worker_id, heartbeat_at, started_at,
         created_at, request, request_headers, model, background, idempotency_key)
    VALUES
        (%(response_id)s, %(owner)s, %(status)s, %(attempt_number)s, %(worker_id)s,
         CASE WHEN %(status)s = 'in_progress' THEN now() END,
         CASE WHEN %(status)s = 'in_progress' THEN now() END,
         to_timestamp(%(created_at)s), %(request)s, %(request_headers)s, %(model)s, %(background)s,
         %(idempotency_key)s)
    RETURNING response_id
), e AS (
    INSERT INTO {schema}.events (response_id, sequence_number, attempt_number, type, data)
    SELECT response_id, 0, %(attempt_number)s, 'response.created', %(created_event)s FROM r
    RETURNING sequence_number
), n AS (
    SELECT pg_notify(%(control_channel)s, 'queued') WHERE %(status)s = 'queued'
)
SELECT (SELECT count(*) FROM e) AS inserted, (SELECT count(*) FROM n) AS notified;

-- name: claim_queued
-- Take the oldest queued response for this worker (attempt 1), or nothing.
UPDATE {schema}.responses AS r
SET status = 'in_progress', attempt_number = r.attempt_number + 1, worker_id = %(worker_id)s,
    heartbeat_at = now(), started_at = coalesce(r.started_at, now()), updated_at = now()
WHERE r.response_id = (
    SELECT response_id FROM {schema}.responses
    WHERE status = 'queued' ORDER BY created_at LIMIT 1
    FOR UPDATE SKIP LOCKED
)
RETURNING r.*, 0 AS last_sequence;

-- name: claim_stale
-- Take over running responses whose owner stopped heartbeating (compare-and-set on the row lock).
UPDATE {schema}.responses AS r
SET attempt_number = r.attempt_number + 1, worker_id = %(worker_id)s,
    heartbeat_at = now(), updated_at = now()
WHERE r.response_id IN (
    SELECT response_id FROM {schema}.responses
    WHERE status = 'in_progress'
      AND heartbeat_at < now() - make_interval(secs => %(stale_seconds)s)
      AND started_at > now() - make_interval(secs => %(timeout_seconds)s)
      -- A worker never takes over its own live runs (a blocked event loop is late, not dead).
      AND NOT (response_id = ANY (%(own_running)s::text[]))
    ORDER BY heartbeat_at LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
RETURNING r.*;

-- name: touch_leases
-- Renew the leases this worker holds (heartbeat) or, on a clean shutdown (release), make them stale at once so another worker resumes them now; rows locked in id order, like the group commit's; returns the ones it still owns.
WITH l AS (
    SELECT r.response_id FROM {schema}.responses AS r
    JOIN unnest(%(response_ids)s::text[], %(attempt_numbers)s::int[]) AS u(response_id, attempt_number)
      ON r.response_id = u.response_id AND r.attempt_number = u.attempt_number
    WHERE r.status = 'in_progress'
    ORDER BY r.response_id
    FOR NO KEY UPDATE OF r
)
UPDATE {schema}.responses AS r
-- (released: 'epoch', stale at once and, unlike '-infinity', a value Python can read back)
SET heartbeat_at = CASE WHEN %(release)s THEN 'epoch'::timestamptz ELSE now() END
FROM l
WHERE r.response_id = l.response_id
RETURNING r.response_id;

-- name: append_events
-- Store event batches of one or more attempts (a worker's group commit), each only if its attempt still owns the response; notify the watched ones; returns the owners (arrays sent binary: no per-element escaping).
WITH batch AS (
    SELECT * FROM unnest(%(response_ids)b::text[], %(attempt_numbers)b::int[], %(sequence_numbers)b::int[],
                         %(types)b::text[], %(datas)b::text[])
        AS b(response_id, attempt_number, seq, type, data)
), lease AS (
    -- Locked in id order, as the heartbeat locks them: no deadlock between the two.
    SELECT r.response_id, r.attempt_number, coalesce(r.watched_until > now(), false) AS watched
    FROM {schema}.responses AS r
    WHERE (r.response_id, r.attempt_number) IN (SELECT DISTINCT response_id, attempt_number FROM batch)
      AND r.status = 'in_progress'
    ORDER BY r.response_id
    FOR SHARE
), ins AS (
    INSERT INTO {schema}.events (response_id, sequence_number, attempt_number, type, data)
    SELECT b.response_id, b.seq, b.attempt_number, b.type, b.data
    FROM batch AS b JOIN lease AS l ON l.response_id = b.response_id AND l.attempt_number = b.attempt_number
    ON CONFLICT (response_id, sequence_number) DO NOTHING
    RETURNING response_id, sequence_number
), n AS (
    SELECT pg_notify(%(events_channel)s, i.response_id || ':' || max(i.sequence_number))
    FROM ins AS i JOIN lease AS l ON l.response_id = i.response_id
    WHERE l.watched
    GROUP BY i.response_id
)
-- One row per owner (n, referenced here, runs whenever there is anything to notify).
SELECT l.response_id, l.attempt_number, (SELECT count(*) FROM n) AS notified FROM lease AS l;

-- name: finish_responses
-- End one or more responses with their last events, final status, output and terminal event, atomically: an owner's final write (each only if its attempt still holds the lease) or, marked external, a cancel or time-out decided elsewhere (then every listener is woken and the owner told to stop); rows locked in id order; returns the ones that ended.
WITH f AS (
    SELECT * FROM unnest(%(response_ids)s::text[], %(attempt_numbers)s::int[], %(statuses)s::text[],
                         %(outputs)s::jsonb[], %(errors)s::jsonb[], %(trace_ids)s::text[],
                         %(custom_outputs)s::jsonb[], %(externals)s::bool[])
        AS f(response_id, attempt_number, status, output, error, trace_id, custom_outputs, external)
), locked AS (
    -- A queued response has attempt 0, which no running attempt holds.
    SELECT r.response_id FROM {schema}.responses AS r
    JOIN f ON f.response_id = r.response_id AND f.attempt_number = r.attempt_number
    WHERE r.status IN ('queued', 'in_progress')
    ORDER BY r.response_id
    FOR NO KEY UPDATE OF r
), done AS (
    UPDATE {schema}.responses AS r
    SET status = f.status, output = f.output, error = f.error,
        trace_id = coalesce(f.trace_id, r.trace_id), custom_outputs = coalesce(f.custom_outputs, r.custom_outputs),
        heartbeat_at = NULL, updated_at = now()
    FROM f, locked
    WHERE r.response_id = locked.response_id AND f.response_id = r.response_id
      AND f.attempt_number = r.attempt_number AND r.status IN ('queued', 'in_progress')
    RETURNING r.response_id, r.attempt_number, f.external,
              f.external OR coalesce(r.watched_until > now(), false) AS notify
), ins AS (
    INSERT INTO {schema}.events (response_id, sequence_number, attempt_number, type, data)
    SELECT e.response_id, e.seq, d.attempt_number, e.type, e.data
    FROM unnest(%(event_response_ids)b::text[], %(sequence_numbers)b::int[], %(types)b::text[], %(datas)b::text[])
        AS e(response_id, seq, type, data)
    JOIN done AS d ON d.response_id = e.response_id
    RETURNING response_id, sequence_number
), n AS (
    SELECT pg_notify(%(events_channel)s, i.response_id || ':' || max(i.sequence_number))
    FROM ins AS i JOIN done AS d ON d.response_id = i.response_id
    WHERE d.notify
    GROUP BY i.response_id
), c AS (
    SELECT pg_notify(%(control_channel)s, 'stop:' || d.response_id) FROM done AS d WHERE d.external
)
-- One row per response that ended (n and c, referenced here, run whenever they have anything to send).
SELECT d.response_id, d.attempt_number, (SELECT count(*) FROM n) + (SELECT count(*) FROM c) AS notified
FROM done AS d;

-- name: watch_response
-- A tail in a process that does not run this response asks its writers to NOTIFY until then; renewed while it waits.
UPDATE {schema}.responses SET watched_until = now() + make_interval(secs => %(seconds)s)
WHERE response_id = %(response_id)s AND status IN ('queued', 'in_progress');

-- name: lock_response
-- Lock one response row for a decision made outside its owner (cancel, time-out).
SELECT r.* FROM {schema}.responses AS r
WHERE r.response_id = %(response_id)s
FOR UPDATE;

-- name: last_sequences
-- The last stored event number of each response; run after taking the row lock, in a new statement, so it sees every batch committed before the lock was granted.
SELECT l.response_id, coalesce((SELECT max(e.sequence_number) FROM {schema}.events AS e
                                WHERE e.response_id = l.response_id), -1) AS last_sequence
FROM unnest(%(response_ids)s::text[]) AS l(response_id);

-- name: get_response
-- One response as its owner sees it, with the number of its last event.
SELECT r.*, (SELECT coalesce(max(e.sequence_number), -1)
             FROM {schema}.events AS e WHERE e.response_id = r.response_id) AS last_sequence
FROM {schema}.responses AS r
WHERE r.response_id = %(response_id)s AND r.owner = %(owner)s;

-- name: attempt_output_items
-- The output items an attempt has produced so far, in order.
SELECT data FROM {schema}.events
WHERE response_id = %(response_id)s AND attempt_number = %(attempt_number)s
  AND type = 'response.output_item.done'
ORDER BY sequence_number;

-- name: prior_events
-- Every event of the attempts before this one, in order (the recovery message is built from these).
SELECT data FROM {schema}.events
WHERE response_id = %(response_id)s AND attempt_number < %(attempt_number)s
ORDER BY sequence_number;

-- name: events_after
-- The events a client has not seen yet: sequence_number strictly after its cursor.
SELECT sequence_number, type, data FROM {schema}.events
WHERE response_id = %(response_id)s AND sequence_number > %(after)s
ORDER BY sequence_number
LIMIT %(limit)s;

-- name: delete_response
-- Delete a response and (by cascade) its events.
DELETE FROM {schema}.responses
WHERE response_id = %(response_id)s AND owner = %(owner)s
RETURNING response_id;

-- name: timed_out_runs
-- Running responses started longer ago than the task time-out.
SELECT response_id FROM {schema}.responses
WHERE status = 'in_progress' AND started_at < now() - make_interval(secs => %(timeout_seconds)s)
ORDER BY started_at LIMIT 100;

-- name: delete_expired
-- Retention: forget finished responses not updated for a while.
DELETE FROM {schema}.responses
WHERE status IN ('completed', 'failed', 'cancelled', 'incomplete')
  AND updated_at < now() - make_interval(secs => %(retention_seconds)s);

-- name: list_responses
-- One owner's responses, newest first, after the cursor response (keyset paging), optionally of one status; no output, only a preview of the last input.
SELECT r.response_id, r.status, r.attempt_number, r.model, r.error, r.incomplete_details, r.trace_id,
       r.created_at, r.started_at,
       CASE WHEN r.status IN ('completed', 'failed', 'cancelled', 'incomplete') THEN r.updated_at END AS completed_at,
       extract(epoch FROM (CASE WHEN r.status IN ('completed', 'failed', 'cancelled', 'incomplete')
                                THEN r.updated_at ELSE now() END)
                          - coalesce(r.started_at, r.created_at))::float8 AS duration_seconds,
       CASE jsonb_typeof(r.request #> '{{input,-1,content}}')
           WHEN 'string' THEN left(r.request #>> '{{input,-1,content}}', 200)
           WHEN 'array' THEN left(r.request #>> '{{input,-1,content,0,text}}', 200)
       END AS input_preview
FROM {schema}.responses AS r
WHERE r.owner = %(owner)s
  AND (%(status)s::text IS NULL OR r.status = %(status)s::text)
  AND (%(after)s::text IS NULL OR (r.created_at, r.response_id) < (
        SELECT c.created_at, c.response_id FROM {schema}.responses AS c
        WHERE c.response_id = %(after)s::text AND c.owner = %(owner)s))
ORDER BY r.created_at DESC, r.response_id DESC
LIMIT %(limit)s;

-- ----- Idempotent creation ---------------------------------------------------------

-- name: get_response_by_idempotency_key
-- The response an owner created with this Idempotency-Key, with the number of its last event.
SELECT r.*, (SELECT coalesce(max(e.sequence_number), -1)
             FROM {schema}.events AS e WHERE e.response_id = r.response_id) AS last_sequence
FROM {schema}.responses AS r
WHERE r.owner = %(owner)s AND r.idempotency_key = %(idempotency_key)s;

-- ----- Large inputs ------------------------------------------------------------------

-- name: get_response_status
-- get_response without the stored request, only its metadata (all the Response object
-- needs): status polls, tails and the POST answer must not read a large input back.
SELECT (jsonb_populate_record(r, jsonb_build_object(
            'request', jsonb_build_object('metadata', coalesce(r.request -> 'metadata', 'null'::jsonb))))).*,
       (SELECT coalesce(max(e.sequence_number), -1)
        FROM {schema}.events AS e WHERE e.response_id = r.response_id) AS last_sequence
FROM {schema}.responses AS r
WHERE r.response_id = %(response_id)s AND r.owner = %(owner)s;
