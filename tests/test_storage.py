"""The storage layer against the real embedded PostgreSQL: migrations under
concurrency, group commit, the lease check, retention, wake-ups across
processes, and the embedded server shared by several workers."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import psycopg
import pytest

from agent_server.long_running.events.response_object import terminal_event_data
from agent_server.long_running.storage.models import Status
from agent_server.long_running.storage.queries import Queries
from agent_server.long_running.storage.store import Store
from tests.support import (
    ServerProcess,
    insert_response,
    open_database,
    python_argv,
    stream_frames,
    wait_for_status,
)


def test_concurrent_startups_migrate_once(pg_url, db_schema, sql):
    async def main():
        dbs = await asyncio.gather(*[open_database(pg_url, db_schema) for _ in range(4)])
        await asyncio.gather(*[db.close() for db in dbs])

    asyncio.run(main())
    # Each migration exactly once (the list grows with every migration file; 1-5 at least).
    versions = [version for (version,) in sql(f"SELECT version FROM {db_schema}.schema_migrations ORDER BY 1")]
    assert versions == sorted(set(versions)) and {1, 2, 3, 4, 5} <= set(versions)
    assert versions == [m.version for m in Queries(db_schema).migrations()]
    tables = sql("SELECT table_name FROM information_schema.tables WHERE table_schema = %s ORDER BY 1", (db_schema,))
    assert {("events",), ("responses",), ("schema_migrations",), ("conversations",),
            ("conversation_items",), ("tool_calls",), ("workers",), ("webhook_deliveries",),
            ("webhook_stopped_urls",), ("memories",), ("model_calls",), ("approvals",)} <= set(tables)


def test_a_batch_is_stored_only_while_the_attempt_owns_the_response(pg_url, db_schema, sql):
    async def main():
        db = await open_database(pg_url, db_schema)
        store = Store(db)
        rid = "resp_" + "1" * 32
        await insert_response(store, rid)
        owned = (rid, 1) in await store.append_events([(rid, 1, [(1, "x", "{}"), (2, "x", "{}")])])
        # Re-sending the same batch (a commit whose answer was lost) stores nothing twice.
        again = (rid, 1) in await store.append_events([(rid, 1, [(1, "x", "{}"), (2, "x", "{}")])])
        # Another worker claims the run: attempt 1's next batch is refused.
        sql(f"UPDATE {db_schema}.responses SET attempt_number = 2 WHERE response_id = %s", (rid,))
        stale = (rid, 1) in await store.append_events([(rid, 1, [(3, "x", "{}")])])
        await db.close()
        return owned, again, stale

    assert asyncio.run(main()) == (True, True, False)
    assert sql(f"SELECT sequence_number FROM {db_schema}.events ORDER BY 1") == [(0,), (1,), (2,)]


def test_rows_read_fine_after_a_newer_version_adds_a_column(pg_url, db_schema, sql):
    """A rolling deploy: a newer worker migrated the table; this version still reads its rows."""
    async def main():
        db = await open_database(pg_url, db_schema)
        store = Store(db)
        rid = "resp_" + "c" * 32
        await insert_response(store, rid)
        sql(f"ALTER TABLE {db_schema}.responses ADD COLUMN added_by_a_later_version integer DEFAULT 7")
        row = await store.get_response(rid, "")
        claimed = await store.claim_stale("w2", stale_seconds=0, timeout_seconds=3600, limit=5)
        await db.close()
        return row, claimed

    row, claimed = asyncio.run(main())
    assert row.response_id == "resp_" + "c" * 32 and row.status is Status.IN_PROGRESS
    assert [(r.response_id, r.attempt_number) for r in claimed] == [("resp_" + "c" * 32, 2)]


def test_retention_deletes_only_old_finished_responses(pg_url, db_schema, sql):
    async def main():
        db = await open_database(pg_url, db_schema)
        store = Store(db)
        for rid, status in (("resp_" + "a" * 32, Status.IN_PROGRESS), ("resp_" + "b" * 32, Status.IN_PROGRESS)):
            await insert_response(store, rid, status)
        await store.finalize("resp_" + "b" * 32, status=Status.CANCELLED, terminal_event=terminal_event_data)
        sql(f"UPDATE {db_schema}.responses SET updated_at = now() - interval '2 hours'")
        await store.delete_expired(3600)
        await db.close()

    asyncio.run(main())
    assert sql(f"SELECT response_id, status FROM {db_schema}.responses") == [("resp_" + "a" * 32, "in_progress")]
    assert sql(f"SELECT count(*) FROM {db_schema}.events WHERE response_id = %s", ("resp_" + "b" * 32,)) == [(0,)]


def test_group_commit_batches_a_busy_stream(start_server, db_schema, sql):
    server = start_server(db_schema)
    with httpx.Client(base_url=server.base_url, timeout=60) as client:
        body = {"input": "x", "background": True, "custom_inputs": {"deltas": 2000}}
        warm = client.post("/responses", json={**body, "custom_inputs": {"deltas": 1}}).json()["id"]
        wait_for_status(client, f"/responses/{warm}", {"completed"})
        [(before,)] = sql("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
        rid = client.post("/responses", json=body).json()["id"]
        wait_for_status(client, f"/responses/{rid}", {"completed"}, timeout=60)
        [(after,)] = sql("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
    assert sql(f"SELECT count(*) FROM {db_schema}.events WHERE response_id = %s", (rid,)) == [(2008,)]  # 2000 deltas and 8 grammar events
    # One transaction per event would be 2,000+; group commit needs far fewer
    # (the count also includes this test's own queries and the server's loops).
    assert after - before < 400, after - before


def test_a_tail_on_another_process_is_woken_by_notify(start_server, db_schema):
    # With the safety-net poll at 30s, only LISTEN/NOTIFY can deliver these events promptly.
    slow_poll = {"poll_interval_seconds": 30.0}
    runner = start_server(db_schema, **slow_poll)
    watcher = start_server(db_schema, **slow_poll)
    with httpx.Client(base_url=runner.base_url, timeout=60) as a, httpx.Client(base_url=watcher.base_url, timeout=60) as b:
        rid = a.post("/responses", json={"input": "x", "background": True,
                                         "custom_inputs": {"deltas": 10, "pause": 0.2}}).json()["id"]
        started = time.monotonic()
        frames = stream_frames(b, "GET", f"/responses/{rid}", params={"stream": "true"})
        elapsed = time.monotonic() - started
    assert frames[-2]["type"] == "response.completed"
    assert [f["sequence_number"] for f in frames[:-1]] == list(range(18))  # 10 deltas and 8 grammar events
    assert elapsed < 15, f"the tail waited for polls ({elapsed:.1f}s): NOTIFY did not wake it"


def test_writers_notify_only_while_a_tail_elsewhere_watches(start_server, db_schema, pg_url):
    """A run followed only in its own process (or not at all) sends no NOTIFY; once a
    tail in another process waits for it, every batch after the watch does."""
    runner = start_server(db_schema)
    body = {"input": "x", "background": True, "custom_inputs": {"deltas": 10, "pause": 0.05}}
    with psycopg.connect(pg_url, autocommit=True) as listener, \
            httpx.Client(base_url=runner.base_url, timeout=60) as client:
        listener.execute(f'LISTEN "{db_schema}_events"')

        def notified() -> list[str]:
            return [n.payload for n in listener.notifies(timeout=0.5)]

        # Followed on the worker that runs it (POST with stream=true), then polled.
        alone = client.post("/responses", json={**body, "stream": True}).text
        polled = client.post("/responses", json=body).json()["id"]
        wait_for_status(client, f"/responses/{polled}", {"completed"})
        assert "response.completed" in alone
        assert notified() == []

        watcher = start_server(db_schema)
        with httpx.Client(base_url=watcher.base_url, timeout=60) as other:
            rid = client.post("/responses", json={**body, "custom_inputs": {"deltas": 10, "pause": 0.2}}).json()["id"]
            frames = stream_frames(other, "GET", f"/responses/{rid}", params={"stream": "true"})
        assert frames[-2]["type"] == "response.completed"
        payloads = notified()
        assert payloads and all(p.startswith(f"{rid}:") for p in payloads)
        assert payloads[-1] == f"{rid}:{frames[-2]['sequence_number']}"


def test_tails_attaching_mid_stream_from_another_worker_miss_no_wake_up(start_server, db_schema):
    """The watch race: tails in another process attach at scattered moments while the
    owner commits every 10 ms. With a 30 s safety-net poll, a lost wake-up would stall
    a tail for 30 s; every tail must instead follow its stream to the end promptly."""
    slow_poll = {"poll_interval_seconds": 30.0}
    runner = start_server(db_schema, **slow_poll)
    watcher = start_server(db_schema, **slow_poll)
    body = {"input": "x", "background": True, "custom_inputs": {"deltas": 60, "pause": 0.01}}

    def tail(rid: str, delay: float) -> tuple[list, float]:
        time.sleep(delay)
        with httpx.Client(base_url=watcher.base_url, timeout=60) as other:
            started = time.monotonic()
            frames = stream_frames(other, "GET", f"/responses/{rid}", params={"stream": "true"})
            return frames, time.monotonic() - started

    with httpx.Client(base_url=runner.base_url, timeout=60) as client:
        rids = [client.post("/responses", json=body).json()["id"] for _ in range(12)]
    with ThreadPoolExecutor(max_workers=12) as pool:
        results = list(pool.map(tail, rids, [0.05 * i for i in range(12)]))
    for frames, elapsed in results:
        assert frames[-1] == "[DONE]" and frames[-2]["type"] == "response.completed"
        assert [f["sequence_number"] for f in frames[:-1]] == list(range(68))  # 60 deltas and 8 grammar events
        assert elapsed < 10, f"a tail waited {elapsed:.1f}s: a wake-up was lost"


@pytest.mark.slow
def test_embedded_postgres_is_shared_by_workers_and_survives_restart(tmp_path, spawns):
    """`run()` with no database: one embedded server for all workers, stopped on exit, data kept."""
    env = {"EMBEDDED_POSTGRES_DIR": str(tmp_path / "pgdata"), "DATABASE_URL": "",
           "SYNTHETIC_SERVER_KWARGS": json.dumps({"db_schema": "embedded_test"}),
           "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db"}
    argv = python_argv("-m", "harness.synthetic_server", "--workers", "2")
    with ServerProcess(argv, env=env, log_path=tmp_path / "first.log") as server:
        server.wait_for_workers(2)  # a worker still starting would hold the stop up
        with httpx.Client(base_url=server.base_url, timeout=30) as client:
            rid = client.post("/responses", json={"input": "x", "background": True}).json()["id"]
            assert wait_for_status(client, f"/responses/{rid}", {"completed"})["status"] == "completed"
            health = client.get("/health").json()
            assert health["database"] == {"backend": "embedded", "status": "connected"}
        server.stop()  # SIGTERM: uvicorn shuts down, the parent stops PostgreSQL
    assert not (tmp_path / "pgdata" / "postmaster.pid").exists()
    with ServerProcess(argv, env=env, log_path=tmp_path / "second.log") as server:
        server.wait_for_workers(2)
        with httpx.Client(base_url=server.base_url, timeout=30) as client:
            assert client.get(f"/responses/{rid}").json()["status"] == "completed"
        server.stop()  # graceful again, so no PostgreSQL outlives the test
    assert not (tmp_path / "pgdata" / "postmaster.pid").exists()


@pytest.mark.slow
def test_sigterm_to_a_single_worker_server_also_stops_its_embedded_postgres(tmp_path, spawns):
    """`kill <pid>` (SIGTERM, what process managers send) to `start-server` with one worker:
    uvicorn re-raises the signal after its shutdown, which used to end the process before
    run() could stop the embedded PostgreSQL it started, leaving it running."""
    env = {"EMBEDDED_POSTGRES_DIR": str(tmp_path / "pgdata"), "DATABASE_URL": "",
           "SYNTHETIC_SERVER_KWARGS": json.dumps({"db_schema": "embedded_test"}),
           "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db"}
    server = ServerProcess(python_argv("-m", "harness.synthetic_server"), env=env, log_path=tmp_path / "server.log")
    try:
        server.launch().wait_until_healthy(timeout=90, database=True)
        assert (tmp_path / "pgdata" / "postmaster.pid").exists()
        os.kill(server.pid, signal.SIGTERM)  # the server process only, not its process group
        server.proc.wait(timeout=60)
    finally:
        server.kill()
    assert not (tmp_path / "pgdata" / "postmaster.pid").exists(), server.log_tail()


def test_migration_versions_are_unique():
    from agent_server.long_running.storage.queries import Queries

    versions = [m.version for m in Queries("x").migrations()]
    assert versions == sorted(set(versions)), versions
