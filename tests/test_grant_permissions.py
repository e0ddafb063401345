"""grant-lakebase-permissions against the real local Postgres, with a real role:
before the grants the role cannot use the engine's tables, afterwards it can
run the engine (its start-up migration) and read and write its rows."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone

import httpx
import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from agent_server.long_running.storage.database import Database, DatabaseTarget
from agent_server.long_running.storage.queries import Queries
from scripts import grant_lakebase_permissions as grant

from .support import PROJECT_ROOT, ServerProcess, python_argv

pytestmark = pytest.mark.timeout(120)


def run_engine_setup(url: str, schema: str) -> None:
    """Create or migrate the engine's schema exactly as the engine does at start-up."""

    async def setup() -> None:
        db = Database(target=DatabaseTarget("url", url=url), queries=Queries(schema), statement_timeout_ms=5000)
        await db.open()
        await db.close()

    asyncio.run(setup())


def can_use_engine_tables(url: str, schema: str) -> bool:
    """Insert, read, update and delete a response and an event as the connecting role."""
    rid = f"resp_{uuid.uuid4().hex}"
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            with conn.transaction():
                cols = _insertable_columns(conn, schema)
                conn.execute(
                    sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
                        sql.Identifier(schema, "responses"),
                        sql.SQL(", ").join(map(sql.Identifier, cols)),
                        sql.SQL(", ").join(sql.Placeholder() * len(cols)),
                    ),
                    [_sample_value(c, rid) for c in cols],
                )
                conn.execute(
                    sql.SQL("INSERT INTO {} (response_id, sequence_number, attempt_number, type, data) "
                            "VALUES (%s, 0, 1, 'response.created', '{{}}')").format(sql.Identifier(schema, "events"))
                    if _has_column(conn, schema, "events", "attempt_number")
                    else sql.SQL("INSERT INTO {} (response_id, sequence_number, data) VALUES (%s, 0, '{{}}')").format(
                        sql.Identifier(schema, "events")
                    ),
                    (rid,),
                )
                conn.execute(
                    sql.SQL("UPDATE {} SET status = 'completed' WHERE response_id = %s").format(
                        sql.Identifier(schema, "responses")
                    ),
                    (rid,),
                )
                row = conn.execute(
                    sql.SQL("SELECT status FROM {} WHERE response_id = %s").format(sql.Identifier(schema, "responses")),
                    (rid,),
                ).fetchone()
                assert row == ("completed",)
                conn.execute(sql.SQL("DELETE FROM {} WHERE response_id = %s").format(sql.Identifier(schema, "events")), (rid,))
                conn.execute(
                    sql.SQL("DELETE FROM {} WHERE response_id = %s").format(sql.Identifier(schema, "responses")), (rid,)
                )
        return True
    except psycopg.errors.InsufficientPrivilege:
        return False


def _insertable_columns(conn, schema: str) -> list[str]:
    """Columns of ``responses`` that must be given (NOT NULL without default).

    Read from pg_catalog: information_schema hides tables the role may not use.
    """
    rows = conn.execute(
        "SELECT a.attname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = 'responses' "
        "AND a.attnum > 0 AND NOT a.attisdropped AND a.attnotnull AND NOT a.atthasdef ORDER BY a.attnum",
        (schema,),
    ).fetchall()
    return [r[0] for r in rows]


def _has_column(conn, schema: str, table: str, column: str) -> bool:
    return bool(
        conn.execute(
            "SELECT 1 FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s "
            "AND a.attname = %s AND NOT a.attisdropped",
            (schema, table, column),
        ).fetchone()
    )


def _sample_value(column: str, rid: str):
    samples = {"response_id": rid, "status": "in_progress", "owner": "", "model": "m", "request": "{}",
               "created_at": datetime.now(timezone.utc), "attempt_number": 1}
    return samples.get(column, "x")


@pytest.fixture
def role(pg_url):
    """A fresh login role with no privileges, and its connection URL."""
    name = f"app_sp_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(name)))
    yield name, make_conninfo(pg_url, user=name)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


@pytest.fixture
def local_db(monkeypatch, pg_url):
    """Point the script at the local Postgres, with no Lakebase settings around."""
    monkeypatch.setenv("DATABASE_URL", pg_url)
    for name in ("LAKEBASE_AUTOSCALING_ENDPOINT", "LAKEBASE_AUTOSCALING_PROJECT", "LAKEBASE_AUTOSCALING_BRANCH",
                 "LAKEBASE_INSTANCE_NAME", "AGENT_SERVER_DB_SCHEMA"):
        monkeypatch.delenv(name, raising=False)
    # .env of a developer's checkout must not leak into the test.
    monkeypatch.chdir(PROJECT_ROOT / "tests")
    return pg_url


def test_role_can_run_the_engine_only_after_the_grants(local_db, role, db_schema, capsys):
    name, role_url = role
    run_engine_setup(local_db, db_schema)  # created by someone else: the superuser

    assert not can_use_engine_tables(role_url, db_schema)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        run_engine_setup(role_url, db_schema)

    assert grant.main([name, "--schema", db_schema]) == 0
    out = capsys.readouterr().out
    assert f"schema {db_schema}: USAGE, CREATE" in out

    run_engine_setup(role_url, db_schema)  # the engine's start-up now succeeds
    assert can_use_engine_tables(role_url, db_schema)


def test_default_privileges_cover_tables_and_sequences_created_later(local_db, role, db_schema):
    name, role_url = role
    run_engine_setup(local_db, db_schema)
    with psycopg.connect(local_db, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE TABLE {} (id serial PRIMARY KEY)").format(sql.Identifier(db_schema, "before")))
    assert grant.main([name, "--schema", db_schema]) == 0
    with psycopg.connect(local_db, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE TABLE {} (id serial PRIMARY KEY)").format(sql.Identifier(db_schema, "after")))

    with psycopg.connect(role_url, autocommit=True) as conn:
        for table in ("before", "after"):  # both need the sequence for DEFAULT nextval()
            conn.execute(sql.SQL("INSERT INTO {} DEFAULT VALUES").format(sql.Identifier(db_schema, table)))
            assert conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(db_schema, table))).fetchone() == (1,)


def test_grants_are_idempotent_and_cover_several_schemas(local_db, role, db_schema):
    name, role_url = role
    other = f"{db_schema}_mem"
    run_engine_setup(local_db, db_schema)
    run_engine_setup(local_db, other)
    argv = [name, "--schema", db_schema, "--schema", other]
    assert grant.main(argv) == 0
    assert grant.main(argv) == 0
    assert can_use_engine_tables(role_url, db_schema)
    assert can_use_engine_tables(role_url, other)


def test_default_schema_comes_from_the_environment(local_db, role, db_schema, monkeypatch, capsys):
    name, role_url = role
    run_engine_setup(local_db, db_schema)
    monkeypatch.setenv("AGENT_SERVER_DB_SCHEMA", db_schema)
    assert grant.main([name]) == 0
    assert can_use_engine_tables(role_url, db_schema)


def test_missing_schema_is_reported_not_created(local_db, role, db_schema, capsys):
    name, _ = role
    assert grant.main([name, "--schema", db_schema]) == 0
    assert "does not exist yet" in capsys.readouterr().out
    with psycopg.connect(local_db) as conn:
        assert conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (db_schema,)).fetchone() is None


def test_grants_work_on_connections_with_dict_rows(local_db, role, db_schema):
    """Lakebase pools hand out dict-row connections; the grants must not depend on tuples."""
    from psycopg.rows import dict_row

    name, role_url = role
    run_engine_setup(local_db, db_schema)
    with psycopg.connect(local_db, autocommit=True, row_factory=dict_row) as conn:
        grant.grant_all(conn, name, [db_schema], lakebase=False)
    assert can_use_engine_tables(role_url, db_schema)


def test_identifiers_are_quoted(local_db, db_schema, pg_url):
    """A role name that is not a plain identifier is granted, not injected."""
    odd = f'sp "{uuid.uuid4().hex[:6]}"; DROP TABLE x; --'
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(odd)))
    try:
        run_engine_setup(local_db, db_schema)
        assert grant.main([odd, "--schema", db_schema]) == 0
        assert can_use_engine_tables(make_conninfo(pg_url, user=odd), db_schema)
    finally:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(odd)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(odd)))


def test_unknown_role_and_missing_configuration_are_clear_errors(local_db, monkeypatch, capsys):
    assert grant.main(["no_such_role_" + uuid.uuid4().hex[:6]]) == 1
    assert "does not exist" in capsys.readouterr().err
    monkeypatch.delenv("DATABASE_URL")
    assert grant.main(["someone"]) == 1
    assert "no database configured" in capsys.readouterr().err
    # Half a Lakebase autoscaling setting: the server's own message, naming what is missing.
    monkeypatch.setenv("LAKEBASE_AUTOSCALING_PROJECT", "p")
    assert grant.main(["someone"]) == 1
    assert "LAKEBASE_AUTOSCALING_PROJECT is set ('p') but LAKEBASE_AUTOSCALING_BRANCH is missing" in (
        capsys.readouterr().err)


def test_database_url_wins_over_lakebase_settings(local_db, role, db_schema, monkeypatch):
    """As in the server: with DATABASE_URL set, even a half-set Lakebase setting is ignored."""
    name, _ = role
    run_engine_setup(local_db, db_schema)
    monkeypatch.setenv("LAKEBASE_AUTOSCALING_BRANCH", "b")
    assert grant.main([name, "--schema", db_schema]) == 0


def test_rejects_bad_schema_names(capsys):
    with pytest.raises(SystemExit) as exc:
        grant.main(["someone", "--schema", "Bad-Name"])
    assert exc.value.code == 2
    assert "not a lowercase schema name" in capsys.readouterr().err


def test_help():
    out = subprocess.run(
        [sys.executable, "-m", "scripts.grant_lakebase_permissions", "--help"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0
    assert "service-principal-client-id" in out.stdout and "--schema" in out.stdout


def _background_run_completes(base_url: str) -> bool:
    with httpx.Client(base_url=base_url, timeout=30) as http:
        created = http.post("/responses", json={"input": "hi", "background": True})
        if created.status_code != 200:
            return False
        rid = created.json()["id"]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            status = http.get(f"/responses/{rid}").json()["status"]
            if status not in ("queued", "in_progress"):
                return status == "completed"
            time.sleep(0.1)
    return False


@pytest.mark.timeout(240)
def test_a_server_running_as_the_role_works_only_after_the_grants(local_db, role, db_schema, tmp_path, spawns):
    """The whole engine (schema setup, queue, events, LISTEN/NOTIFY) as the app's role."""
    name, role_url = role
    run_engine_setup(local_db, db_schema)  # the tables belong to someone else
    env = {
        "SYNTHETIC_SERVER_KWARGS": json.dumps({"database_url": role_url, "db_schema": db_schema}),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db",
    }
    argv = python_argv("-m", "harness.synthetic_server")
    with ServerProcess(argv, env=env, log_path=tmp_path / "before.log") as server:
        health = httpx.get(f"{server.base_url}/health", timeout=10).json()
        assert health["database"]["status"] != "connected"
        assert not _background_run_completes(server.base_url)

    assert grant.main([name, "--schema", db_schema]) == 0
    with ServerProcess(argv, env=env, log_path=tmp_path / "after.log") as server:
        deadline = time.monotonic() + 30
        while httpx.get(f"{server.base_url}/health", timeout=10).json()["database"]["status"] != "connected":
            assert time.monotonic() < deadline, server.log_tail()
            time.sleep(0.2)
        assert _background_run_completes(server.base_url), server.log_tail()
