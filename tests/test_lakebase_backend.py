"""The Lakebase backend, end to end, with only the workspace faked.

A fake workspace API on 127.0.0.1 answers the three calls the real
``databricks-ai-bridge`` Lakebase pool makes (resolve the instance's host,
mint a database credential, who am I). The "instance host" it returns is the
embedded PostgreSQL's socket folder, so the real pool, the real rotating
credential connection and our engine all run against a real database.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import httpx
import psycopg
import pytest
from psycopg import sql as psql

from harness.scripted_endpoint import send_json
from tests.support import wait_for_status

LAKEBASE_USER = "lakebase-user@example.com"


class FakeWorkspace(BaseHTTPRequestHandler):
    socket_dir = ""
    calls: list[str] = []

    def _answer(self, body: dict, status: int = 200) -> None:
        send_json(self, status, body)

    def do_GET(self):  # noqa: N802 - http.server's naming
        path = urlsplit(self.path).path
        self.calls.append(f"GET {path}")
        if path == "/api/2.0/database/instances/test-instance":
            self._answer({"name": "test-instance", "state": "AVAILABLE", "read_write_dns": self.socket_dir})
        elif path == "/api/2.0/preview/scim/v2/Me":
            self._answer({"id": "1", "userName": LAKEBASE_USER})
        else:
            self._answer({"error_code": "NOT_FOUND", "message": path}, 404)

    def do_POST(self):  # noqa: N802
        path = urlsplit(self.path).path
        self.calls.append(f"POST {path}")
        if path == "/api/2.0/database/credentials":
            self._answer({"token": f"fake-oauth-token-{len(self.calls)}", "expiration_time": "2999-01-01T00:00:00Z"})
        else:
            self._answer({"error_code": "NOT_FOUND", "message": path}, 404)

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_workspace(pg_url):
    FakeWorkspace.socket_dir = parse_qs(urlsplit(pg_url).query)["host"][0]
    FakeWorkspace.calls = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeWorkspace)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture
def lakebase_database(pg_url):
    """The database and role a Lakebase instance would give the app."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = 'databricks_postgres'").fetchone():
            conn.execute("CREATE DATABASE databricks_postgres")
        if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (LAKEBASE_USER,)).fetchone():
            conn.execute(psql.SQL("CREATE ROLE {} LOGIN").format(psql.Identifier(LAKEBASE_USER)))
        conn.execute(psql.SQL("GRANT CREATE, CONNECT ON DATABASE databricks_postgres TO {}")
                     .format(psql.Identifier(LAKEBASE_USER)))
    return pg_url.replace("/postgres?", "/databricks_postgres?")


def test_lakebase_instance_backend_runs_the_engine(start_server, db_schema, fake_workspace, lakebase_database):
    env = {"DATABRICKS_HOST": fake_workspace, "DATABRICKS_TOKEN": "fake-pat", "LAKEBASE_INSTANCE_NAME": "test-instance"}
    server = start_server(db_schema, env=env, database_url=None)
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        health = client.get("/health").json()
        assert health["database"] == {"backend": "lakebase", "status": "connected"}, health
        rid = client.post("/responses", json={"input": "x", "background": True}).json()["id"]
        assert wait_for_status(client, f"/responses/{rid}", {"completed"})["status"] == "completed"
    assert "POST /api/2.0/database/credentials" in FakeWorkspace.calls  # a credential was minted
    assert f"Background runs stored in Lakebase instance test-instance, schema {db_schema}" in server.log_tail(100_000)
    with psycopg.connect(lakebase_database) as conn:
        owner = conn.execute("SELECT tableowner FROM pg_tables WHERE schemaname = %s AND tablename = 'events'",
                             (db_schema,)).fetchone()
    assert owner == (LAKEBASE_USER,)  # the engine connected as the workspace identity
