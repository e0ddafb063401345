"""Liveness bound to the database connection: a worker that dies loses its
session-level lock with its connection, and its runs resume at once; a hung
worker (whose connection lives on) is still taken over through the heartbeat;
a live worker whose lock connection drops stops writing once another worker
has claimed its run.

The stale threshold here is 60 s, so a run that resumes within the bounds
below resumed through the lock, not the heartbeat.
"""

from __future__ import annotations

import os
import signal
import time

import httpx

from agent_server.long_running.storage.database import DatabaseTarget
from agent_server.long_running.runs.liveness import pooler_in_path
from tests.support import iter_sse, read_records, stream_frames, wait_for_status

LOCK_PATH = {"heartbeat_interval_seconds": 1.0, "heartbeat_stale_threshold_seconds": 60.0,
             "stale_scan_interval_seconds": 0.5, "poll_interval_seconds": 0.2}
TERMINAL = {"completed", "failed", "cancelled", "incomplete"}


def _start_run(server, record, deltas: int = 30, pause: float = 0.1, seen_until: int = 6) -> tuple[str, list]:
    """A background streamed run on ``server``, followed until event ``seen_until``."""
    body = {"input": [{"role": "user", "content": "go"}], "background": True, "stream": True,
            "custom_inputs": {"deltas": deltas, "pause": pause, "record": str(record)}}
    seen = []
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        with client.stream("POST", "/responses", json=body) as response:
            for frame in iter_sse(response.iter_lines()):
                seen.append(frame)
                if frame["sequence_number"] == seen_until:
                    break
    return seen[0]["response"]["id"], seen


def _attempt(sql, schema: str, rid: str) -> tuple[int, str, str]:
    return sql(f"SELECT attempt_number, worker_id, status FROM {schema}.responses WHERE response_id = %s",
               (rid,))[0]


def _wait_for_attempt(sql, schema: str, rid: str, attempt: int, timeout: float) -> float:
    """Seconds until ``rid`` reaches ``attempt``; fails after ``timeout``."""
    started = time.monotonic()
    while _attempt(sql, schema, rid)[0] < attempt:
        assert time.monotonic() - started < timeout, f"{rid} was not claimed within {timeout:.0f}s"
        time.sleep(0.05)
    return time.monotonic() - started


def _finish_and_check(server, rid: str, seen: list, attempts: int) -> dict:
    """Follow the rest of the run; the log has no gap and no repeat, and ends completed."""
    with httpx.Client(base_url=server.base_url, timeout=60) as client:
        rest = stream_frames(client, "GET", f"/responses/{rid}",
                             params={"stream": "true", "starting_after": seen[-1]["sequence_number"]})
        final = wait_for_status(client, f"/responses/{rid}", TERMINAL, timeout=60)
    events = seen + rest[:-1]
    assert rest[-1] == "[DONE]"
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert sum(e["type"] == "response.resumed" for e in events) == attempts - 1
    assert final["status"] == "completed" and final["attempt_number"] == attempts
    return final


def _worker_id(server) -> str:
    return server.health()["worker"]["id"]


def test_killed_owner_resumes_on_the_other_worker_well_before_the_stale_threshold(
        start_server, db_schema, tmp_path, sql):
    owner = start_server(db_schema, **LOCK_PATH)
    survivor = start_server(db_schema, **LOCK_PATH)
    record = tmp_path / "record.jsonl"
    rid, seen = _start_run(owner, record)
    owner_id = _worker_id(owner)
    assert sql(f"SELECT count(*) FROM {db_schema}.workers WHERE worker_id = %s", (owner_id,)) == [(1,)]
    assert owner.health()["worker"]["liveness_lock"] == "held"

    owner.kill()
    # The heartbeat path would need 60 s; the lock frees the moment the process dies.
    _wait_for_attempt(sql, db_schema, rid, 2, timeout=30)
    assert _attempt(sql, db_schema, rid)[1] == _worker_id(survivor)
    _finish_and_check(survivor, rid, seen, attempts=2)
    pids = {r["pid"] for r in read_records(record) if r["kind"] == "invoke"}
    assert len(pids) == 2


def test_a_restarted_single_worker_resumes_its_runs_at_once(start_server, db_schema, tmp_path, sql):
    first = start_server(db_schema, **LOCK_PATH)
    record = tmp_path / "record.jsonl"
    rid, seen = _start_run(first, record)
    first.kill()
    restarted = start_server(db_schema, **LOCK_PATH)  # returns once /health answers 200
    _wait_for_attempt(sql, db_schema, rid, 2, timeout=20)
    _finish_and_check(restarted, rid, seen, attempts=2)


def test_a_hung_owner_is_taken_over_through_the_heartbeat(start_server, db_schema, tmp_path, sql):
    fast_heartbeat = {**LOCK_PATH, "heartbeat_stale_threshold_seconds": 4.0}
    owner = start_server(db_schema, **fast_heartbeat)
    survivor = start_server(db_schema, **fast_heartbeat)
    record = tmp_path / "record.jsonl"
    rid, seen = _start_run(owner, record, deltas=40)
    os.killpg(owner.pid, signal.SIGSTOP)  # hung: its connections (and lock) live on
    try:
        stopped_at = time.monotonic()
        # Its lock is still held, so nothing claims it before its heartbeat is stale.
        while time.monotonic() - stopped_at < 2.0:
            assert _attempt(sql, db_schema, rid)[0] == 1
            time.sleep(0.1)
        _wait_for_attempt(sql, db_schema, rid, 2, timeout=60)
        assert _attempt(sql, db_schema, rid)[1] == _worker_id(survivor)
        os.killpg(owner.pid, signal.SIGCONT)  # wakes up: its next write finds the lease lost
        _finish_and_check(survivor, rid, seen, attempts=2)
    finally:
        os.killpg(owner.pid, signal.SIGCONT)
        owner.kill()


def test_an_owner_whose_lock_connection_drops_stops_writing_once_claimed(start_server, db_schema, tmp_path, sql):
    owner = start_server(db_schema, **LOCK_PATH)
    survivor = start_server(db_schema, **LOCK_PATH)
    record = tmp_path / "record.jsonl"
    rid, seen = _start_run(owner, record, deltas=60, pause=0.1)
    owner_id = _worker_id(owner)
    holder = (f"SELECT l.pid FROM pg_locks AS l JOIN {db_schema}.workers AS w"
              f" ON l.classid::bigint = (w.liveness_key >> 32) AND l.objid::bigint = (w.liveness_key & 4294967295)"
              f" WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 AND w.worker_id = %s")
    # The owner's process lives and takes its lock again on reconnect (within about 0.1 s):
    # drop its lock connection until the survivor's scan has seen the lock free.
    deadline = time.monotonic() + 60
    while _attempt(sql, db_schema, rid)[0] == 1:
        assert time.monotonic() < deadline, "the survivor never saw the owner's lock free"
        for (pid,) in sql(holder, (owner_id,)):
            sql("SELECT pg_terminate_backend(%s)", (pid,))
        time.sleep(0.05)
    assert _attempt(sql, db_schema, rid)[1] == _worker_id(survivor)
    final = _finish_and_check(survivor, rid, seen, attempts=2)
    assert final["output"][0]["content"][0]["text"].startswith("delta-0 delta-1")

    # The owner is alive and found out at its next write: its attempt stopped, it wrote nothing after.
    assert owner.proc.poll() is None
    records = read_records(record)
    owner_pid = next(r["pid"] for r in records if r["kind"] == "invoke")
    assert any(r["kind"] == "exit" and r["pid"] == owner_pid and r["how"] == "cancelled" for r in records)
    assert owner.health()["worker"]["running"] == 0
    # And it holds its lock again (it re-took it on reconnect).
    deadline = time.monotonic() + 20
    while not sql(holder, (owner_id,)):
        assert time.monotonic() < deadline, "the owner did not take its lock again"
        time.sleep(0.1)


def test_a_url_through_a_pooler_uses_heartbeats_only():
    def target(url: str) -> DatabaseTarget:
        return DatabaseTarget("url", url=url)

    assert "pooler" in pooler_in_path(target("postgresql://u:p@ep-abc-123-pooler.databricks.com/db"))
    assert "PgBouncer" in pooler_in_path(target("postgresql://u:p@db.internal:6432/db"))
    assert pooler_in_path(target("postgresql://u:p@ep-abc-123.databricks.com/db")) is None
    assert pooler_in_path(target("postgresql://postgres:@/postgres?host=/tmp/pg")) is None
    assert pooler_in_path(DatabaseTarget("embedded", embedded_dir="/tmp/pg")) is None


def test_a_worker_without_session_locks_is_taken_over_by_heartbeat(start_server, db_schema, tmp_path, sql, pg_url):
    # libpq connects through the host= parameter (the local socket); the URL's host name says "pooler".
    pooled_url = pg_url.replace("@/", "@db-pooler.example/", 1)
    assert pooled_url != pg_url
    heartbeat = {**LOCK_PATH, "heartbeat_stale_threshold_seconds": 4.0}
    owner = start_server(db_schema, database_url=pooled_url, **heartbeat)
    survivor = start_server(db_schema, **heartbeat)
    record = tmp_path / "record.jsonl"
    rid, seen = _start_run(owner, record, deltas=40)
    owner_id = _worker_id(owner)
    assert sql(f"SELECT count(*) FROM {db_schema}.workers WHERE worker_id = %s", (owner_id,)) == [(0,)]
    assert owner.log_tail(100_000).count("Session-level locks are not usable here") == 1
    assert owner.health()["worker"]["liveness_lock"] == "heartbeat_only"
    owner.kill()
    killed_at = time.monotonic()
    while time.monotonic() - killed_at < 2.0:  # no lock to see free: only the heartbeat tells
        assert _attempt(sql, db_schema, rid)[0] == 1
        time.sleep(0.1)
    _wait_for_attempt(sql, db_schema, rid, 2, timeout=60)
    assert _attempt(sql, db_schema, rid)[1] == _worker_id(survivor)
    _finish_and_check(survivor, rid, seen, attempts=2)
