-- The journal of model calls: one row per finished model call of a response, at its position
-- in the run (0, 1, ...). A resumed attempt replays the recorded results in order, without
-- calling the model, while the digest of each call's input matches; from the first call that
-- is not recorded, or whose input differs, it goes live and records again. result is the exact
-- JSON the adapter stored (its output items and usage); size is its length in bytes, summed
-- against the per-response bound. Deleted with the response.
CREATE TABLE IF NOT EXISTS {schema}.model_calls (
    response_id    text NOT NULL REFERENCES {schema}.responses (response_id) ON DELETE CASCADE,
    position       integer NOT NULL,
    attempt_number integer NOT NULL,
    input_digest   text NOT NULL,
    result         text NOT NULL,
    size           integer NOT NULL,
    recorded_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (response_id, position)
);
