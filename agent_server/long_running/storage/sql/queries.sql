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
-- Create a response with its event 0 (response.created); wake idle workers if queued; a conversation's turn becomes its newest response.
WITH r AS (
    INSERT INTO {schema}.responses
        (response_id, owner, status, attempt_number, worker_id, heartbeat_at, started_at,
         created_at, request, request_headers, model, background, conversation_id, history_end,
         idempotency_key)
    VALUES
        (%(response_id)s, %(owner)s, %(status)s, %(attempt_number)s, %(worker_id)s,
         CASE WHEN %(status)s = 'in_progress' THEN now() END,
         CASE WHEN %(status)s = 'in_progress' THEN now() END,
         to_timestamp(%(created_at)s), %(request)s, %(request_headers)s, %(model)s, %(background)s,
         %(conversation_id)s, %(history_end)s, %(idempotency_key)s)
    RETURNING response_id
), c AS (
    UPDATE {schema}.conversations SET last_response_id = %(response_id)s, updated_at = now()
    WHERE conversation_id = %(conversation_id)s AND EXISTS (SELECT 1 FROM r)
), e AS (
    INSERT INTO {schema}.events (response_id, sequence_number, attempt_number, type, data)
    SELECT response_id, 0, %(attempt_number)s, 'response.created', %(created_event)s FROM r
    RETURNING sequence_number
), n AS (
    SELECT pg_notify(%(control_channel)s, 'queued') WHERE %(status)s = 'queued'
)
SELECT (SELECT count(*) FROM e) AS inserted, (SELECT count(*) FROM n) AS notified;

-- name: claim_queued
-- Take the oldest queued response for this worker (attempt 1), or nothing; a conversation's turns run one at a time, in order, each seeing the items committed before it started.
UPDATE {schema}.responses AS r
SET status = 'in_progress', attempt_number = r.attempt_number + 1, worker_id = %(worker_id)s,
    heartbeat_at = now(), started_at = coalesce(r.started_at, now()), updated_at = now(),
    history_end = coalesce(r.history_end, (SELECT c.item_count FROM {schema}.conversations AS c
                                           WHERE c.conversation_id = r.conversation_id))
WHERE r.response_id = (
    SELECT q.response_id FROM {schema}.responses AS q
    WHERE q.status = 'queued'
      AND (q.conversation_id IS NULL OR NOT EXISTS (
          SELECT 1 FROM {schema}.responses AS o
          WHERE o.conversation_id = q.conversation_id AND o.status IN ('queued', 'in_progress')
            AND (o.status = 'in_progress' OR (o.created_at, o.response_id) < (q.created_at, q.response_id))))
    ORDER BY q.created_at LIMIT 1
    FOR UPDATE SKIP LOCKED
)
RETURNING r.*, 0 AS last_sequence;

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
-- End one or more responses with their last events, final status, output and terminal event, atomically: an owner's final write (each only if its attempt still holds the lease) or, marked external, a cancel or time-out decided elsewhere (then every listener is woken and the owner told to stop); a background response's webhook event is queued for each receiver in the same transaction; rows locked in id order; returns the ones that ended.
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
              f.external OR coalesce(r.watched_until > now(), false) AS notify,
              r.conversation_id, r.request -> 'input' AS input, f.output, f.status, r.background
), turn AS (
    -- What joins the conversation: the input (less system and developer messages, which
    -- belong to their turn only, like instructions) and the output, as finally committed.
    SELECT d.conversation_id, d.response_id, x.ord, x.item
    FROM done AS d
    CROSS JOIN LATERAL (
        SELECT i.ord, i.item FROM jsonb_array_elements(coalesce(d.input, '[]')) WITH ORDINALITY AS i(item, ord)
        WHERE coalesce(i.item ->> 'role', '') NOT IN ('system', 'developer')
        UNION ALL
        SELECT 1000000000 + o.ord, o.item FROM jsonb_array_elements(coalesce(d.output, '[]')) WITH ORDINALITY AS o(item, ord)
    ) AS x
    WHERE d.conversation_id IS NOT NULL
), conv AS (
    -- Locked in id order after the responses (as every statement that locks both): no deadlock.
    SELECT c.conversation_id, c.item_count FROM {schema}.conversations AS c
    WHERE c.conversation_id IN (SELECT conversation_id FROM turn)
    ORDER BY c.conversation_id
    FOR NO KEY UPDATE
), joined AS (
    INSERT INTO {schema}.conversation_items (conversation_id, position, response_id, item)
    SELECT t.conversation_id,
           c.item_count - 1 + row_number() OVER (PARTITION BY t.conversation_id ORDER BY t.response_id, t.ord),
           t.response_id, t.item
    FROM turn AS t JOIN conv AS c ON c.conversation_id = t.conversation_id
    RETURNING conversation_id
), grown AS (
    UPDATE {schema}.conversations AS c SET item_count = c.item_count + j.n, updated_at = now()
    FROM (SELECT conversation_id, count(*) AS n FROM joined GROUP BY conversation_id) AS j
    WHERE c.conversation_id = j.conversation_id
), next_turn AS (
    -- The conversation's next turn may be queued behind the one that ended: wake the workers.
    SELECT pg_notify(%(control_channel)s, 'queued')
    WHERE EXISTS (SELECT 1 FROM {schema}.responses AS x JOIN done AS d ON x.conversation_id = d.conversation_id
                  WHERE x.status = 'queued')
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
), hook_events AS MATERIALIZED (
    -- One webhook event per background response that ended as the webhooks listen for (none
    -- without webhooks): its id is the same for every receiver and every attempt.
    SELECT d.response_id, 'response.' || d.status AS type,
           'evt_' || replace(gen_random_uuid()::text, '-', '') AS event_id
    FROM done AS d
    WHERE d.background AND 'response.' || d.status = ANY (%(webhook_events)s::text[])
), hooks AS (
    INSERT INTO {schema}.webhook_deliveries (event_id, url, type, response_id)
    SELECT h.event_id, u.url, h.type, h.response_id
    FROM hook_events AS h CROSS JOIN unnest(%(webhook_urls)s::text[]) AS u(url)
    WHERE NOT EXISTS (SELECT 1 FROM {schema}.webhook_stopped_urls AS s WHERE s.url = u.url)
    RETURNING event_id
)
-- One row per response that ended (n, c and next_turn, referenced here, run whenever they have
-- anything to send), with the number of webhook deliveries queued by the whole statement.
SELECT d.response_id, d.attempt_number,
       (SELECT count(*) FROM n) + (SELECT count(*) FROM c) + (SELECT count(*) FROM next_turn) AS notified,
       (SELECT count(*) FROM hooks) AS webhooks
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
-- One owner's responses, newest first, after the cursor response (keyset paging), optionally of one status or only those waiting for an approval; no output, only a preview of the last input and how many approvals it waits for.
SELECT r.response_id, r.status, r.attempt_number, r.model, r.error, r.incomplete_details, r.trace_id,
       r.created_at, r.started_at,
       CASE WHEN r.status IN ('completed', 'failed', 'cancelled', 'incomplete') THEN r.updated_at END AS completed_at,
       extract(epoch FROM (CASE WHEN r.status IN ('completed', 'failed', 'cancelled', 'incomplete')
                                THEN r.updated_at ELSE now() END)
                          - coalesce(r.started_at, r.created_at))::float8 AS duration_seconds,
       CASE WHEN r.request #>> '{{input,-1,type}}' = 'mcp_approval_response'
                THEN CASE WHEN jsonb_array_length(r.request -> 'input') > 1
                              THEN 'Answered ' || jsonb_array_length(r.request -> 'input') || ' tool calls'
                          WHEN r.request #>> '{{input,-1,approve}}' = 'true' THEN 'Approved a tool call'
                          ELSE 'Rejected a tool call' END
           ELSE CASE jsonb_typeof(r.request #> '{{input,-1,content}}')
                    WHEN 'string' THEN left(r.request #>> '{{input,-1,content}}', 200)
                    WHEN 'array' THEN left(r.request #>> '{{input,-1,content,0,text}}', 200)
                END
       END AS input_preview,
       (SELECT count(*) FROM {schema}.approvals AS a
        WHERE a.response_id = r.response_id AND a.status = 'pending' AND a.expires_at > now())::int
           AS pending_approvals
FROM {schema}.responses AS r
WHERE r.owner = %(owner)s
  AND (%(status)s::text IS NULL OR r.status = %(status)s::text)
  AND (NOT %(waiting)s OR EXISTS (SELECT 1 FROM {schema}.approvals AS a
                                  WHERE a.response_id = r.response_id AND a.status = 'pending'
                                    AND a.expires_at > now()))
  AND (%(after)s::text IS NULL OR (r.created_at, r.response_id) < (
        SELECT c.created_at, c.response_id FROM {schema}.responses AS c
        WHERE c.response_id = %(after)s::text AND c.owner = %(owner)s))
ORDER BY r.created_at DESC, r.response_id DESC
LIMIT %(limit)s;

-- ----- Tool calls: a finished tool call is never run again -----------------------

-- name: record_tool_call
-- Record one finished tool call before its output goes back to the model; the first record of a call key wins; nothing if the response is gone.
INSERT INTO {schema}.tool_calls (response_id, call_key, attempt_number, name, arguments, output, call_id)
SELECT r.response_id, %(call_key)s, %(attempt_number)s, %(name)s, %(arguments)s, %(output)s, %(call_id)s
FROM {schema}.responses AS r
WHERE r.response_id = %(response_id)s
ON CONFLICT (response_id, call_key) DO NOTHING;

-- name: recorded_tool_calls
-- The finished tool calls of a response, in the order they were recorded.
SELECT call_key, attempt_number, name, arguments, output, call_id FROM {schema}.tool_calls
WHERE response_id = %(response_id)s
ORDER BY recorded_at, call_key;

-- name: record_model_call
-- Record one finished model call at its position in the run; a newer attempt's record replaces an older one's there, and the older attempt's records after it (a branch no longer taken) go; nothing if the response is gone.
WITH branch_left AS (
    DELETE FROM {schema}.model_calls
    WHERE response_id = %(response_id)s AND position > %(position)s AND attempt_number < %(attempt_number)s
)
INSERT INTO {schema}.model_calls AS m (response_id, position, attempt_number, input_digest, result, size)
SELECT r.response_id, %(position)s, %(attempt_number)s, %(input_digest)s, %(result)s, octet_length(%(result)s)
FROM {schema}.responses AS r
WHERE r.response_id = %(response_id)s
ON CONFLICT (response_id, position) DO UPDATE
    SET attempt_number = excluded.attempt_number, input_digest = excluded.input_digest,
        result = excluded.result, size = excluded.size, recorded_at = excluded.recorded_at
    WHERE m.attempt_number <= excluded.attempt_number;

-- name: recorded_model_calls
-- The journal of a response's model calls, in run order.
SELECT position, attempt_number, input_digest, result, size FROM {schema}.model_calls
WHERE response_id = %(response_id)s
ORDER BY position;

-- name: checkpoint_tables
-- Whether the LangGraph checkpointer's tables exist in the schema (its setup creates them on the first LangGraph run).
SELECT to_regclass(format('%%I.checkpoints', %(schema)s::text)) IS NOT NULL
   AND to_regclass(format('%%I.checkpoint_blobs', %(schema)s::text)) IS NOT NULL
   AND to_regclass(format('%%I.checkpoint_writes', %(schema)s::text)) IS NOT NULL AS present;

-- name: delete_ended_checkpoints
-- Retention: the LangGraph checkpoints of every thread no run needs any more: not an unfinished response's (the thread is its id), not one a pending approval resumes, not one an unfinished answer to an approval continues.
WITH live AS (
    SELECT response_id AS thread_id FROM {schema}.responses WHERE status IN ('queued', 'in_progress')
    UNION
    SELECT a.thread_id FROM {schema}.approvals AS a
    WHERE a.thread_id IS NOT NULL
      AND ((a.status = 'pending' AND a.expires_at > now())
           OR EXISTS (SELECT 1 FROM {schema}.responses AS r
                      WHERE r.response_id = a.answered_by AND r.status IN ('queued', 'in_progress')))
), blobs AS (
    DELETE FROM {schema}.checkpoint_blobs AS t WHERE t.thread_id NOT IN (SELECT thread_id FROM live)
), writes AS (
    DELETE FROM {schema}.checkpoint_writes AS t WHERE t.thread_id NOT IN (SELECT thread_id FROM live)
)
DELETE FROM {schema}.checkpoints AS t WHERE t.thread_id NOT IN (SELECT thread_id FROM live);

-- name: lock_setup
-- Serialise a one-time setup across workers (the LangGraph checkpointer's own migrations): a session lock, held on one connection while the setup runs on others (its CREATE INDEX CONCURRENTLY cannot run in a transaction).
SELECT pg_advisory_lock(hashtext('agent_server_setup:' || %(name)s || ':' || %(schema)s));

-- name: unlock_setup
-- Release lock_setup's lock.
SELECT pg_advisory_unlock(hashtext('agent_server_setup:' || %(name)s || ':' || %(schema)s));

-- ----- Approvals: a paused run waits for a person ------------------------------

-- name: ask_approval
-- Record one tool call that waits for approval (its run's response then completes); asking again for the same request id (a resumed attempt) keeps the first; nothing if the response is gone.
INSERT INTO {schema}.approvals (request_id, response_id, owner, name, arguments, server_label, call_id, state,
                                thread_id, expires_at)
SELECT %(request_id)s, r.response_id, r.owner, %(name)s, %(arguments)s, %(server_label)s, %(call_id)s, %(state)s,
       %(thread_id)s, now() + make_interval(secs => %(timeout_seconds)s)
FROM {schema}.responses AS r
WHERE r.response_id = %(response_id)s
ON CONFLICT (request_id) DO NOTHING;

-- name: answer_approval
-- Answer one pending, unexpired request of the response that asked, for its owner; nothing if it is not (approval_of says why).
UPDATE {schema}.approvals
SET status = CASE WHEN %(approve)s THEN 'approved' ELSE 'rejected' END, reason = %(reason)s,
    answered_by = %(answered_by)s, answered_at = now()
WHERE request_id = %(request_id)s AND response_id = %(asked_by)s AND owner = %(owner)s
  AND status = 'pending' AND expires_at > now()
RETURNING request_id;

-- name: approval_of
-- One of the owner's requests, to say why an answer was refused.
SELECT request_id, response_id, status, expires_at <= now() AS expired FROM {schema}.approvals
WHERE request_id = %(request_id)s AND owner = %(owner)s;

-- name: decline_pending_approvals
-- A new turn declines the requests its conversation's earlier responses, and the response it continues, still wait on (the conversation moved on); run in the turn's transaction, after its own answers.
UPDATE {schema}.approvals AS a
SET status = 'declined', answered_by = %(answered_by)s, answered_at = now()
FROM {schema}.responses AS r
WHERE r.response_id = a.response_id
  AND (r.conversation_id = %(conversation_id)s OR r.response_id = %(asked_by)s::text)
  AND a.status = 'pending' AND a.expires_at > now();

-- name: answered_approvals
-- The requests a response answered or declined, oldest first: what its run resumes with.
SELECT request_id, response_id, name, arguments, server_label, call_id, state, thread_id, status, reason
FROM {schema}.approvals
WHERE answered_by = %(response_id)s
ORDER BY created_at, request_id;

-- name: response_approvals
-- The requests a response asked, with where each stands now (expired: pending past its time).
SELECT request_id, CASE WHEN status = 'pending' AND expires_at <= now() THEN 'expired' ELSE status END AS status,
       expires_at, answered_by
FROM {schema}.approvals
WHERE response_id = %(response_id)s
ORDER BY created_at, request_id;

-- ----- Conversations -------------------------------------------------------

-- name: create_conversation
-- A new conversation with its first items (none, or those given to POST /conversations); with a session key, nothing if that owner's session already has one.
WITH c AS (
    INSERT INTO {schema}.conversations (conversation_id, owner, session_key, metadata, item_count)
    VALUES (%(conversation_id)s, %(owner)s, %(session_key)s, %(metadata)s, jsonb_array_length(%(items)s))
    ON CONFLICT (owner, session_key) WHERE session_key IS NOT NULL DO NOTHING
    RETURNING *
), i AS (
    INSERT INTO {schema}.conversation_items (conversation_id, position, response_id, item)
    SELECT c.conversation_id, x.ord - 1, NULL, x.item
    FROM c CROSS JOIN LATERAL jsonb_array_elements(%(items)s) WITH ORDINALITY AS x(item, ord)
)
SELECT * FROM c;

-- name: branch_conversation
-- A new conversation holding a copy of the first items of another (continuing a response that already has a continuation).
WITH c AS (
    INSERT INTO {schema}.conversations (conversation_id, owner, item_count)
    VALUES (%(conversation_id)s, %(owner)s, %(item_count)s)
    RETURNING *
), i AS (
    INSERT INTO {schema}.conversation_items (conversation_id, position, response_id, item)
    SELECT c.conversation_id, s.position, s.response_id, s.item
    FROM c, {schema}.conversation_items AS s
    WHERE s.conversation_id = %(source_id)s AND s.position < %(item_count)s
)
SELECT * FROM c;

-- name: get_conversation
-- One conversation as its owner sees it.
SELECT * FROM {schema}.conversations WHERE conversation_id = %(conversation_id)s AND owner = %(owner)s;

-- name: session_conversation
-- The conversation of one owner's session key.
SELECT * FROM {schema}.conversations WHERE owner = %(owner)s AND session_key = %(session_key)s;

-- name: update_conversation_metadata
-- Replace a conversation's metadata (the only part a client changes).
UPDATE {schema}.conversations SET metadata = %(metadata)s, updated_at = now()
WHERE conversation_id = %(conversation_id)s AND owner = %(owner)s
RETURNING *;

-- name: delete_conversation
-- Delete a conversation and (by cascade) its items; its responses stay.
DELETE FROM {schema}.conversations WHERE conversation_id = %(conversation_id)s AND owner = %(owner)s
RETURNING conversation_id;

-- name: lock_conversation
-- Serialise new turns of one conversation (double-texting) for the rest of the transaction.
SELECT * FROM {schema}.conversations WHERE conversation_id = %(conversation_id)s FOR UPDATE;

-- name: unfinished_turns
-- A conversation's queued and running responses, oldest first; run after lock_conversation, in a new statement.
SELECT response_id, status FROM {schema}.responses
WHERE conversation_id = %(conversation_id)s AND status IN ('queued', 'in_progress')
ORDER BY created_at, response_id;

-- name: response_items_end
-- Where one response's items end in its conversation (0 if it added none).
SELECT coalesce(max(position) + 1, 0) AS item_end FROM {schema}.conversation_items
WHERE conversation_id = %(conversation_id)s AND response_id = %(response_id)s;

-- name: conversation_history
-- Items of a conversation from start to end - 1 (what a turn's handler sees before its own input): one index range read.
SELECT item FROM {schema}.conversation_items
WHERE conversation_id = %(conversation_id)s AND position >= %(start)s AND position < %(end)s
ORDER BY position;

-- name: conversation_items_asc
-- A page of a conversation's items, oldest first, after a position.
SELECT position, item FROM {schema}.conversation_items
WHERE conversation_id = %(conversation_id)s AND position > %(after)s
ORDER BY position LIMIT %(limit)s;

-- name: conversation_items_desc
-- A page of a conversation's items, newest first, before a position.
SELECT position, item FROM {schema}.conversation_items
WHERE conversation_id = %(conversation_id)s AND position < %(before)s
ORDER BY position DESC LIMIT %(limit)s;

-- name: conversation_item_position
-- The position of an item by its id (its own, or the one listing gives an item without one).
SELECT position FROM {schema}.conversation_items
WHERE conversation_id = %(conversation_id)s
  AND coalesce(item ->> 'id', 'item_' || substr(conversation_id, 6) || '_' || position) = %(item_id)s
LIMIT 1;

-- name: delete_expired_conversations
-- Retention: forget conversations no turn joined or started for a while (none unfinished).
DELETE FROM {schema}.conversations AS c
WHERE c.updated_at < now() - make_interval(secs => %(retention_seconds)s)
  AND NOT EXISTS (SELECT 1 FROM {schema}.responses AS r
                  WHERE r.conversation_id = c.conversation_id AND r.status IN ('queued', 'in_progress'));

-- ===== Liveness bound to the database connection (liveness.py) =====

-- name: take_liveness_lock
-- Take this worker's session-level liveness lock on the current connection; returns whether it is held and by which backend.
SELECT pg_try_advisory_lock(%(key)s) AS held, pg_backend_pid() AS pid;

-- name: backend_pid
-- The backend serving this connection (a pooler may change it between transactions).
SELECT pg_backend_pid() AS pid;

-- name: free_liveness_lock
-- End the backend of an earlier session of this worker that still holds its liveness lock (the connection broke on our side only).
SELECT count(pg_terminate_backend(l.pid)) AS ended
FROM pg_locks AS l
WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.classid::bigint = (%(key)s::bigint >> 32) AND l.objid::bigint = (%(key)s::bigint & 4294967295)
  AND l.pid <> pg_backend_pid();

-- name: liveness_lock_holder
-- The backend holding a liveness lock, as another connection sees it (checks that locks are held per session: no transaction-mode pooler in between).
SELECT l.pid AS holder, pg_backend_pid() AS me
FROM pg_locks AS l
WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.classid::bigint = (%(key)s::bigint >> 32) AND l.objid::bigint = (%(key)s::bigint & 4294967295);

-- name: register_worker
-- Record that this worker holds a liveness lock under this key (again after a reconnect).
INSERT INTO {schema}.workers (worker_id, liveness_key) VALUES (%(worker_id)s, %(key)s)
ON CONFLICT (worker_id) DO UPDATE SET liveness_key = excluded.liveness_key;

-- name: unregister_worker
-- A worker that stops cleanly forgets its registration.
DELETE FROM {schema}.workers WHERE worker_id = %(worker_id)s;

-- name: claim_stale
-- Take over running responses whose owner stopped heartbeating or (with dead_owners) whose owner's liveness lock is free, its session ended; compare-and-set on the row lock.
WITH dead AS MATERIALIZED (
    SELECT w.worker_id FROM {schema}.workers AS w
    WHERE %(dead_owners)s AND w.worker_id <> %(worker_id)s
      AND NOT EXISTS (
          SELECT 1 FROM pg_locks AS l
          WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
            AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
            AND l.classid::bigint = (w.liveness_key >> 32) AND l.objid::bigint = (w.liveness_key & 4294967295))
)
UPDATE {schema}.responses AS r
SET attempt_number = r.attempt_number + 1, worker_id = %(worker_id)s,
    heartbeat_at = now(), updated_at = now()
WHERE r.response_id IN (
    SELECT response_id FROM {schema}.responses
    WHERE status = 'in_progress'
      AND (heartbeat_at < now() - make_interval(secs => %(stale_seconds)s)
           OR worker_id IN (SELECT worker_id FROM dead))
      AND started_at > now() - make_interval(secs => %(timeout_seconds)s)
      -- A worker never takes over its own live runs (a blocked event loop is late, not dead).
      AND NOT (response_id = ANY (%(own_running)s::text[]))
    ORDER BY heartbeat_at LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
RETURNING r.*;

-- name: forget_dead_workers
-- Drop registrations of workers whose liveness lock is free and that own no running response.
DELETE FROM {schema}.workers AS w
WHERE NOT EXISTS (
          SELECT 1 FROM pg_locks AS l
          WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
            AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
            AND l.classid::bigint = (w.liveness_key >> 32) AND l.objid::bigint = (w.liveness_key & 4294967295))
  AND NOT EXISTS (SELECT 1 FROM {schema}.responses AS r WHERE r.status = 'in_progress' AND r.worker_id = w.worker_id);

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

-- ----- Webhooks: an event per ended background response, delivered at least once -----------

-- name: claim_webhook_deliveries
-- Take due deliveries, at most the given number per receiver URL, each leased (next_attempt_at moved past the end of its send) so no other worker sends it meanwhile; rows another worker is claiming are skipped.
UPDATE {schema}.webhook_deliveries AS d
SET attempts = d.attempts + 1, updated_at = now(),
    next_attempt_at = now() + make_interval(secs => %(lease_seconds)s)
WHERE d.delivery_id IN (
    SELECT due.delivery_id
    FROM unnest(%(urls)s::text[], %(limits)s::int[]) AS u(url, n)
    CROSS JOIN LATERAL (
        SELECT w.delivery_id FROM {schema}.webhook_deliveries AS w
        WHERE w.url = u.url AND w.status = 'pending' AND w.next_attempt_at <= now()
        ORDER BY w.next_attempt_at
        LIMIT u.n
        FOR UPDATE SKIP LOCKED
    ) AS due
)
RETURNING d.delivery_id, d.event_id, d.url, d.type, d.response_id, d.attempts,
          floor(extract(epoch FROM d.created_at))::bigint AS created_at;

-- name: record_webhook_outcomes
-- What claimed sends came to, in one statement: delivered, or tried again after a delay (failed for good once that passes the retry horizon); a failure changes a row only while its claim (attempt) is the newest; rows locked in id order; returns the rows changed.
WITH o AS (
    SELECT * FROM unnest(%(delivery_ids)s::bigint[], %(attempts)s::int[], %(delivered)s::bool[],
                         %(retry_after)s::float8[], %(errors)s::text[])
        AS o(delivery_id, attempts, delivered, retry_after, error)
), locked AS (
    SELECT w.delivery_id FROM {schema}.webhook_deliveries AS w
    JOIN o ON o.delivery_id = w.delivery_id
    WHERE w.status = 'pending' AND (o.delivered OR w.attempts = o.attempts)
    ORDER BY w.delivery_id
    FOR NO KEY UPDATE OF w
)
UPDATE {schema}.webhook_deliveries AS d
SET status = CASE WHEN o.delivered THEN 'delivered'
                  WHEN d.created_at + make_interval(secs => %(horizon_seconds)s)
                       < now() + make_interval(secs => o.retry_after) THEN 'failed'
                  ELSE 'pending' END,
    next_attempt_at = CASE WHEN o.delivered THEN d.next_attempt_at
                           ELSE now() + make_interval(secs => o.retry_after) END,
    last_error = o.error, updated_at = now()
FROM o, locked
WHERE d.delivery_id = locked.delivery_id AND o.delivery_id = d.delivery_id
RETURNING d.delivery_id, d.event_id, d.url, d.type, d.response_id, d.attempts, d.status, d.last_error;

-- name: stop_webhook_url
-- A receiver answered 410 Gone: no new deliveries to its URL, and its pending ones are dropped; rows locked in id order; returns how many were dropped.
WITH s AS (
    INSERT INTO {schema}.webhook_stopped_urls (url) VALUES (%(url)s)
    ON CONFLICT (url) DO UPDATE SET stopped_at = now()
), locked AS (
    SELECT w.delivery_id FROM {schema}.webhook_deliveries AS w
    WHERE w.url = %(url)s AND w.status = 'pending'
    ORDER BY w.delivery_id
    FOR NO KEY UPDATE
), dropped AS (
    UPDATE {schema}.webhook_deliveries AS d
    SET status = 'stopped', last_error = %(error)s, updated_at = now()
    FROM locked WHERE d.delivery_id = locked.delivery_id
    RETURNING d.delivery_id
)
SELECT count(*) AS dropped FROM dropped;

-- name: resume_webhook_urls
-- A worker starts: configured receiver URLs that a 410 had stopped get deliveries again; returns them.
DELETE FROM {schema}.webhook_stopped_urls WHERE url = ANY (%(urls)s::text[]) RETURNING url;

-- name: webhook_backlog
-- Deliveries to the configured receivers not made yet: how many, how many have failed at least once, the oldest one's age in seconds; and how many of those receivers a 410 stopped.
SELECT count(*) AS pending,
       count(*) FILTER (WHERE d.last_error IS NOT NULL) AS failing,
       extract(epoch FROM now() - min(d.created_at))::float8 AS oldest_seconds,
       (SELECT count(*) FROM {schema}.webhook_stopped_urls AS s WHERE s.url = ANY (%(urls)s::text[])) AS stopped_urls
FROM {schema}.webhook_deliveries AS d
WHERE d.status = 'pending' AND d.url = ANY (%(urls)s::text[]);

-- name: delete_expired_webhook_deliveries
-- Retention: forget deliveries not updated for a while that ended, or that nobody tried within the retry horizon (their URL is no longer configured).
DELETE FROM {schema}.webhook_deliveries
WHERE updated_at < now() - make_interval(secs => %(retention_seconds)s)
  AND (status <> 'pending' OR created_at < now() - make_interval(secs => %(horizon_seconds)s));

-- ----- Long-term memory (memory/) ---------------------------------------------------

-- name: enable_memory_embeddings
-- Semantic memory search: pgvector and the memories' embeddings (run at start-up only when an embedding endpoint is configured; fails where the extension is missing). The extension goes to public, which every engine schema's search_path includes (created in one engine schema, its type would be invisible to the others in the same database).
CREATE EXTENSION IF NOT EXISTS vector SCHEMA public;
CREATE TABLE IF NOT EXISTS {schema}.memory_embeddings (
    memory_id text PRIMARY KEY REFERENCES {schema}.memories (memory_id) ON DELETE CASCADE,
    -- The endpoint that made it: vectors of another model are not compared, and are replaced.
    model     text NOT NULL,
    embedding vector NOT NULL
);

-- name: lock_memory_owner
-- Serialise one identity's saves for the rest of the transaction, so its count limit holds (the two-key form: a key space of its own).
SELECT pg_advisory_xact_lock(hashtext('agent_server_memories:' || %(schema)s), hashtext(%(owner)s));

-- name: insert_memory
-- Save a memory unless the owner has max_count already; a save key seen before returns that memory instead (created false); no row when over the limit.
WITH earlier AS (
    SELECT m.memory_id, m.owner, m.text, m.created_at, m.response_id FROM {schema}.memories AS m
    WHERE m.owner = %(owner)s AND m.save_key = %(save_key)s
), counted AS (
    SELECT count(*) AS n FROM {schema}.memories WHERE owner = %(owner)s
), inserted AS (
    INSERT INTO {schema}.memories (memory_id, owner, text, response_id, save_key)
    SELECT %(memory_id)s, %(owner)s, %(text)s, %(response_id)s, %(save_key)s
    WHERE NOT EXISTS (SELECT 1 FROM earlier) AND (SELECT n FROM counted) < %(max_count)s
    RETURNING memory_id, owner, text, created_at, response_id
)
SELECT *, true AS created FROM inserted
UNION ALL
SELECT *, false AS created FROM earlier;

-- name: get_memory
-- One memory of an owner's (nothing for anyone else's).
SELECT memory_id, owner, text, created_at, response_id FROM {schema}.memories
WHERE memory_id = %(memory_id)s AND owner = %(owner)s;

-- name: list_memories
-- One owner's memories, newest first, after the cursor memory (keyset paging).
SELECT m.memory_id, m.owner, m.text, m.created_at, m.response_id FROM {schema}.memories AS m
WHERE m.owner = %(owner)s
  AND (%(after)s::text IS NULL OR (m.created_at, m.memory_id) < (
        SELECT c.created_at, c.memory_id FROM {schema}.memories AS c
        WHERE c.memory_id = %(after)s::text AND c.owner = %(owner)s))
ORDER BY m.created_at DESC, m.memory_id DESC
LIMIT %(limit)s;

-- name: search_memories_text
-- Full-text search of one owner's memories: any word of the query (websearch syntax, words joined with "or"), best match first; a query of no words lists the newest.
SELECT m.memory_id, m.owner, m.text, m.created_at, m.response_id
FROM {schema}.memories AS m, websearch_to_tsquery('english', %(query)s) AS q
WHERE m.owner = %(owner)s AND (numnode(q) = 0 OR m.search_terms @@ q)
ORDER BY ts_rank(m.search_terms, q) DESC, m.created_at DESC, m.memory_id DESC
LIMIT %(limit)s;

-- name: search_memories_semantic
-- Semantic search of one owner's memories: nearest by cosine distance to the query's embedding, among embeddings of the same model and size.
SELECT m.memory_id, m.owner, m.text, m.created_at, m.response_id
FROM {schema}.memories AS m
JOIN {schema}.memory_embeddings AS e ON e.memory_id = m.memory_id
WHERE m.owner = %(owner)s AND e.model = %(model)s
  AND vector_dims(e.embedding) = vector_dims(%(embedding)s::vector)
ORDER BY e.embedding <=> %(embedding)s::vector, m.created_at DESC
LIMIT %(limit)s;

-- name: memories_without_embedding
-- One owner's memories that have no embedding of this model yet (saved before the endpoint was set, or while it failed).
SELECT m.memory_id, m.owner, m.text, m.created_at, m.response_id
FROM {schema}.memories AS m
LEFT JOIN {schema}.memory_embeddings AS e ON e.memory_id = m.memory_id AND e.model = %(model)s
WHERE m.owner = %(owner)s AND e.memory_id IS NULL
ORDER BY m.created_at DESC
LIMIT %(limit)s;

-- name: store_memory_embeddings
-- Store memories' embeddings (replacing another model's); memories deleted meanwhile are skipped.
INSERT INTO {schema}.memory_embeddings (memory_id, model, embedding)
SELECT m.memory_id, %(model)s, v.embedding::vector
FROM unnest(%(memory_ids)s::text[], %(embeddings)s::text[]) AS v (memory_id, embedding)
JOIN {schema}.memories AS m ON m.memory_id = v.memory_id
ON CONFLICT (memory_id) DO UPDATE SET model = excluded.model, embedding = excluded.embedding;

-- name: delete_memory
-- Forget one memory of an owner's (nothing for anyone else's); its embedding goes with it.
DELETE FROM {schema}.memories WHERE memory_id = %(memory_id)s AND owner = %(owner)s
RETURNING memory_id;

-- name: delete_memories
-- Forget every memory of an owner's; how many there were.
WITH gone AS (DELETE FROM {schema}.memories WHERE owner = %(owner)s RETURNING 1)
SELECT count(*) AS deleted FROM gone;
