-- Tool calls waiting for a person's approval: one row per request a paused run asked
-- (an mcp_approval_request output item, id mcpr_...). The run's response completed; nothing
-- runs or is held while the row waits. state is what the agent's SDK adapter needs to resume
-- the paused run (server side only, never sent to a client); thread_id is the LangGraph
-- checkpoint thread it continues on, if any. A new response answers it (approved or rejected,
-- answered_by), or declines it by moving its conversation on; past expires_at it cannot be
-- answered. Deleted with the response that asked.
CREATE TABLE IF NOT EXISTS {schema}.approvals (
    request_id   text PRIMARY KEY,
    response_id  text NOT NULL REFERENCES {schema}.responses (response_id) ON DELETE CASCADE,
    owner        text NOT NULL,
    name         text NOT NULL,
    arguments    text NOT NULL,
    server_label text NOT NULL,
    call_id      text NOT NULL,
    state        text NOT NULL,
    thread_id    text,
    status       text NOT NULL DEFAULT 'pending',
    reason       text,
    answered_by  text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    answered_at  timestamptz
);
CREATE INDEX IF NOT EXISTS approvals_response_idx ON {schema}.approvals (response_id);
CREATE INDEX IF NOT EXISTS approvals_answered_by_idx ON {schema}.approvals (answered_by) WHERE answered_by IS NOT NULL;
CREATE INDEX IF NOT EXISTS approvals_pending_owner_idx ON {schema}.approvals (owner) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS approvals_thread_idx ON {schema}.approvals (thread_id) WHERE thread_id IS NOT NULL;
