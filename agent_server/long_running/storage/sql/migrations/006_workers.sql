-- Workers that hold a liveness lock: a session-level advisory lock on
-- liveness_key, held by the worker's LISTEN connection for as long as it lives.
-- A run whose owner is registered here and whose lock is free is claimable at
-- once (its process died: Postgres released the lock with its session). Runs of
-- workers not registered here (an older version, or a connection path that
-- keeps no session locks) are taken over only when their heartbeat is stale.
CREATE TABLE IF NOT EXISTS {schema}.workers (
    worker_id     text PRIMARY KEY,
    liveness_key  bigint NOT NULL,
    registered_at timestamptz NOT NULL DEFAULT now()
);
